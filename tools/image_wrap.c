/*
 * A one-image docker-archive around a given layer blob; see image_wrap.h.
 * libarchive writes the tars and removes the layer's compression, OpenSSL
 * EVP computes the digests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>

#include "image_wrap.h"

static void hex_digest(const unsigned char *md, char out[80])
{
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
}

static int sha256(const void *p, size_t n, char out[80])
{
    unsigned char md[32];
    unsigned int len = 0;
    if (EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32) return -1;
    hex_digest(md, out);
    return 0;
}

int wrap_diff_id(const void *blob, size_t n, size_t cap, char out[80])
{
    struct archive *a = archive_read_new();
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = -1;
    if (a == NULL || md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) goto done;
    archive_read_support_filter_all(a);
    archive_read_support_format_raw(a);
    archive_read_support_format_empty(a);
    struct archive_entry *e;
    if (archive_read_open_memory(a, blob, n) != ARCHIVE_OK) goto done;
    int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_OK) {
        char buf[65536];
        size_t total = 0;
        la_ssize_t got;
        while ((got = archive_read_data(a, buf, sizeof buf)) > 0) {
            if ((total += (size_t)got) > cap) goto done;
            EVP_DigestUpdate(md, buf, (size_t)got);
        }
        if (got < 0) goto done;
    } else if (r != ARCHIVE_EOF) {
        goto done;
    }
    unsigned char d[32];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(md, d, &len) != 1) goto done;
    hex_digest(d, out);
    rc = 0;
done:
    EVP_MD_CTX_free(md);
    if (a) archive_read_free(a);
    return rc;
}

static int add_member(struct archive *a, const char *name, const void *p, size_t n)
{
    struct archive_entry *e = archive_entry_new();
    if (e == NULL) return -1;
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)n);
    int rc = archive_write_header(a, e) == ARCHIVE_OK &&
                     (n == 0 || archive_write_data(a, p, n) == (la_ssize_t)n)
                 ? 0
                 : -1;
    archive_entry_free(e);
    return rc;
}

int wrap_write_archive(const char *out, const void *blob, size_t n, const char *diff_id,
                       const char *tag, const char *config_json, const char *manifest_json)
{
    char blob_digest[80], cfg_digest[80], layer_name[80], cfg_name[80];
    char *cfg = NULL, *man = NULL;
    int rc = -1;
    if (sha256(blob, n, blob_digest)) goto done;
    snprintf(layer_name, sizeof layer_name, "%s.tar",
             manifest_json ? WRAP_LAYER_MEMBER : blob_digest + 7);
    if (config_json == NULL) {
        const char *fmt =
            "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"/bin/"
            "sh\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]},"
            "\"history\":[{\"created_by\":\"hostile layer\"}]}";
        size_t len = strlen(fmt) + strlen(diff_id) + 1;
        if ((cfg = malloc(len)) == NULL) goto done;
        snprintf(cfg, len, fmt, diff_id);
        config_json = cfg;
    }
    if (sha256(config_json, strlen(config_json), cfg_digest)) goto done;
    snprintf(cfg_name, sizeof cfg_name, "%s.json",
             manifest_json ? WRAP_CONFIG_MEMBER : cfg_digest + 7);
    if (manifest_json == NULL) {
        const char *fmt = "[{\"Config\":\"%s\",\"RepoTags\":[\"%s\"],\"Layers\":[\"%s\"]}]";
        size_t len = strlen(fmt) + strlen(cfg_name) + strlen(tag) + strlen(layer_name) + 1;
        if ((man = malloc(len)) == NULL) goto done;
        snprintf(man, len, fmt, cfg_name, tag, layer_name);
        manifest_json = man;
    }
    struct archive *a = archive_write_new();
    if (a == NULL) goto done;
    archive_write_set_format_ustar(a);
    if (archive_write_open_filename(a, out) == ARCHIVE_OK &&
        add_member(a, layer_name, blob, n) == 0 &&
        add_member(a, cfg_name, config_json, strlen(config_json)) == 0 &&
        add_member(a, "manifest.json", manifest_json, strlen(manifest_json)) == 0 &&
        archive_write_close(a) == ARCHIVE_OK)
        rc = 0;
    else
        fprintf(stderr, "%s: %s\n", out, archive_error_string(a));
    archive_write_free(a);
done:
    free(cfg);
    free(man);
    return rc;
}

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    int rc = (n == 0 || fwrite(p, 1, n, f) == n) ? 0 : -1;
    if (fclose(f) != 0) rc = -1;
    return rc;
}

/* Write blob as dir/blobs/sha256/<hex>; its digest into digest. */
static int put_blob(const char *dir, const void *p, size_t n, char digest[80])
{
    char path[4200];
    if (sha256(p, n, digest)) return -1;
    snprintf(path, sizeof path, "%s/blobs/sha256/%s", dir, digest + 7);
    return write_file(path, p, n);
}

int wrap_write_oci(const char *dir, const void *blob, size_t n, const char *diff_id,
                   const char *ref_name)
{
    const unsigned char *b = blob;
    const char *media = "application/vnd.oci.image.layer.v1.tar";
    if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) media = "application/vnd.oci.image.layer.v1.tar+gzip";
    if (n >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd)
        media = "application/vnd.oci.image.layer.v1.tar+zstd";
    char path[4200], layer_d[80], cfg_d[80], man_d[80];
    char cfg[600], man[1200], idx[600];
    snprintf(path, sizeof path, "mkdir -p '%s/blobs/sha256'", dir);
    if (strchr(dir, '\'') || system(path) != 0) return -1;
    snprintf(path, sizeof path, "%s/oci-layout", dir);
    const char *layout = "{\"imageLayoutVersion\":\"1.0.0\"}";
    if (write_file(path, layout, strlen(layout)) || put_blob(dir, blob, n, layer_d)) return -1;
    snprintf(cfg, sizeof cfg,
             "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{},\"rootfs\":{\"type\":"
             "\"layers\",\"diff_ids\":[\"%s\"]},\"history\":[{\"created_by\":\"wrapped layer\"}]}",
             diff_id);
    if (put_blob(dir, cfg, strlen(cfg), cfg_d)) return -1;
    snprintf(man, sizeof man,
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":"
             "\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}]}",
             cfg_d, strlen(cfg), media, layer_d, n);
    if (put_blob(dir, man, strlen(man), man_d)) return -1;
    snprintf(idx, sizeof idx,
             "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image."
             "manifest.v1+json\",\"digest\":\"%s\",\"size\":%zu,\"annotations\":{\"org.opencontainers."
             "image.ref.name\":\"%s\"}}]}",
             man_d, strlen(man), ref_name);
    snprintf(path, sizeof path, "%s/index.json", dir);
    return write_file(path, idx, strlen(idx));
}
