/*
 * make-hostile-image: write a small docker-archive whose one gzip layer is
 * built to make an image reader do as much work as the caps allow. The
 * shapes:
 *
 *   deep-files N   N empty files, each at its own ~DEPTH-byte path ("dK/a/a/.../f",
 *                  about DEPTH/2 levels), so every file brings its own chain of
 *                  implicit parent directories
 *   deep-dir N     N empty files in one ~DEPTH-byte-deep directory
 *   dirs-only N    N directories and nothing else
 *
 * usage: make-hostile-image OUT SHAPE N [DEPTH]   (DEPTH defaults to 4000 bytes)
 *
 * The layer is streamed through libarchive (pax headers for the long names,
 * then gzip) into memory, hashing the uncompressed tar for the diff_id; a
 * 100 000-file deep layer is ~500 MB as a tar and a few MB as gzip.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>

#include "image_wrap.h"

typedef struct sink {
    struct archive *gz; /* raw format + gzip filter, fed the tar */
    EVP_MD_CTX *md;     /* over the tar: the diff_id */
    FILE *mem;          /* the gzip blob, in buf[0, n) once closed */
    char *buf;
    size_t n;
} sink;

static la_ssize_t to_mem(struct archive *a, void *ud, const void *p, size_t n)
{
    sink *s = ud;
    if (fwrite(p, 1, n, s->mem) != n) {
        archive_set_error(a, ENOMEM, "out of memory");
        return -1;
    }
    return (la_ssize_t)n;
}

static la_ssize_t to_gzip(struct archive *a, void *ud, const void *p, size_t n)
{
    sink *s = ud;
    EVP_DigestUpdate(s->md, p, n);
    if (archive_write_data(s->gz, p, n) != (la_ssize_t)n) {
        archive_set_error(a, EIO, "gzip: %s", archive_error_string(s->gz));
        return -1;
    }
    return (la_ssize_t)n;
}

static int add(struct archive *tar, struct archive_entry *e, const char *path, int dir)
{
    archive_entry_clear(e);
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, dir ? AE_IFDIR : AE_IFREG);
    archive_entry_set_perm(e, dir ? 0755 : 0644);
    archive_entry_set_mtime(e, 1700000000, 0);
    if (!dir) archive_entry_set_size(e, 0);
    if (archive_write_header(tar, e) != ARCHIVE_OK) {
        fprintf(stderr, "make-hostile-image: %s\n", archive_error_string(tar));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: make-hostile-image OUT deep-files|deep-dir|dirs-only N [DEPTH]\n");
        return 2;
    }
    const char *out = argv[1], *shape = argv[2];
    long count = strtol(argv[3], NULL, 10);
    long depth = argc == 5 ? strtol(argv[4], NULL, 10) : 4000;
    int deep_files = strcmp(shape, "deep-files") == 0, deep_dir = strcmp(shape, "deep-dir") == 0;
    if ((!deep_files && !deep_dir && strcmp(shape, "dirs-only") != 0) || count < 0 || depth < 16 ||
        depth > 65536) {
        fprintf(stderr, "make-hostile-image: bad shape, count or depth\n");
        return 2;
    }
    /* "a/a/.../a/" of about depth - 16 bytes, leaving room for the name parts */
    size_t chain = (size_t)(depth - 16) & ~(size_t)1;
    char *path = malloc(chain + 128);
    sink s = {0};
    s.md = EVP_MD_CTX_new();
    s.gz = archive_write_new();
    s.mem = open_memstream(&s.buf, &s.n);
    struct archive *tar = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    if (path == NULL || s.md == NULL || s.gz == NULL || s.mem == NULL || tar == NULL || e == NULL ||
        EVP_DigestInit_ex(s.md, EVP_sha256(), NULL) != 1) {
        fprintf(stderr, "make-hostile-image: out of memory\n");
        return 1;
    }
    archive_write_set_format_raw(s.gz);
    archive_write_add_filter_gzip(s.gz);
    archive_write_set_filter_option(s.gz, "gzip", "compression-level", "1");
    archive_write_set_bytes_per_block(s.gz, 0);
    archive_write_set_format_pax_restricted(tar);
    archive_write_set_bytes_per_block(tar, 0);
    int rc = archive_write_open(s.gz, &s, NULL, to_mem, NULL) == ARCHIVE_OK ? 0 : -1;
    struct archive_entry *raw = archive_entry_new();
    if (rc == 0 && raw) {
        archive_entry_set_pathname(raw, "layer");
        archive_entry_set_filetype(raw, AE_IFREG);
        rc = archive_write_header(s.gz, raw) == ARCHIVE_OK ? 0 : -1;
    }
    archive_entry_free(raw);
    if (rc == 0) rc = archive_write_open(tar, &s, NULL, to_gzip, NULL) == ARCHIVE_OK ? 0 : -1;
    for (long k = 0; rc == 0 && k < count; k++) {
        int n = deep_files ? snprintf(path, 64, "d%ld/", k) : 0;
        if (deep_files || deep_dir) {
            for (size_t i = 0; i < chain; i += 2)
                memcpy(path + n + i, "a/", 2);
            snprintf(path + n + chain, 64, deep_files ? "f" : "f%ld", k);
        } else {
            snprintf(path, 64, "d%ld", k);
        }
        rc = add(tar, e, path, !deep_files && !deep_dir);
    }
    if (rc == 0 &&
        (archive_write_close(tar) != ARCHIVE_OK || archive_write_close(s.gz) != ARCHIVE_OK))
        rc = -1;
    if (rc) fprintf(stderr, "make-hostile-image: %s\n", archive_error_string(tar));
    archive_write_free(tar); /* both write nothing more to s.mem */
    archive_write_free(s.gz);
    unsigned char md[32];
    unsigned int len = 0;
    char diff_id[80] = "sha256:";
    if (fclose(s.mem) != 0) rc = -1;
    if (rc == 0 && EVP_DigestFinal_ex(s.md, md, &len) == 1) {
        for (int i = 0; i < 32; i++)
            snprintf(diff_id + 7 + 2 * i, 3, "%02x", md[i]);
        rc = wrap_write_archive(out, s.buf, s.n, diff_id, "hostile/image:latest", NULL, NULL);
    }
    archive_entry_free(e);
    EVP_MD_CTX_free(s.md);
    free(s.buf);
    free(path);
    return rc ? 1 : 0;
}
