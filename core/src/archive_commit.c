/*
 * The docker-archive transport's commit (archive_private.h): a new archive
 * written beside the old one and renamed over it, holding the new image
 * (its new layer where the writer left it, at the archive's head, when the
 * writer was bound for this archive) and every other image the old archive
 * held, their tags moved as the plan says.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "archive_private.h"
#include "fs_private.h"
#include "hash_private.h"

/*
 * The new archive is written by libarchive without blocking, so each of its
 * writes reaches out_write as it is made. A member copied as stored (a plain
 * layer, a layer of a kept image) gets its header from libarchive and its
 * data from fs_copy_range: libarchive is handed placeholder bytes for it (a
 * calloc'ed buffer no one reads) and out_write copies the same number of
 * bytes of the source in the kernel instead of writing them. libarchive
 * still counts the data and pads the member, so the tar is its own.
 */
#define COPY_CHUNK (8u << 20)
/*
 * The kept layers are copied into the new archive with O_DIRECT, 1 MiB at a
 * time (fs_copy_range_direct): the commit fsyncs the archive and nothing
 * reads it back at once, and a copy through the page cache would make a new
 * page of every byte first.
 */
#define DIRECT_BUF (1u << 20)

typedef struct outw {
    struct archive *a;
    int fd;
    const char *tmp;
    pht_error *err;
    char **names; /* members written, for de-duplication */
    size_t nn;
    unsigned char *placeholder; /* COPY_CHUNK bytes */
    int src_fd;                 /* the member being copied by range */
    uint64_t src_off, src_left;
    const pht_image_opts *opts; /* the plan's: its progress */
    const img_layer *in_place;  /* the new layer, the archive's first member where it lies */
    void *dbuf;                 /* DIRECT_BUF bytes, aligned: members copied past the cache */
} outw;

static la_ssize_t out_write(struct archive *a, void *ud, const void *p, size_t n)
{
    outw *o = ud;
    pht_error e;
    int rc;
    if (o->src_left) {
        uintptr_t at = (uintptr_t)p, ph = (uintptr_t)o->placeholder;
        if (at < ph || at + n > ph + COPY_CHUNK || n > o->src_left) {
            archive_set_error(a, EINVAL, "libarchive did not pass the copied member through");
            return -1;
        }
        rc = fs_copy_range_direct(o->src_fd, o->src_off, n, o->fd, o->dbuf, DIRECT_BUF, o->tmp, &e);
        o->src_off += n;
        o->src_left -= n;
    } else {
        rc = fs_write_all(o->fd, p, n, o->tmp, &e);
    }
    if (rc) {
        archive_set_error(a, EIO, "%s", e.message);
        return -1;
    }
    img_progress(o->opts, n);
    return (la_ssize_t)n;
}

static int out_sink(void *ud, const void *p, size_t n, pht_error *err)
{
    outw *o = ud;
    if (archive_write_data(o->a, p, n) != (la_ssize_t)n)
        return pht_error_set(err, PHT_EIO, "%s: %s", o->tmp, archive_error_string(o->a));
    return 0;
}

static int out_begin(outw *o, const char *name, uint64_t size)
{
    int r = layer_tar_file_header(o->a, name, size);
    if (r == PHT_ENOMEM) return pht_error_set(o->err, PHT_ENOMEM, "out of memory");
    if (r) return pht_error_set(o->err, PHT_EIO, "%s: %s", o->tmp, archive_error_string(o->a));
    return 0;
}

/* The data of the member just begun: len bytes of fd from off, copied in the kernel. */
static int out_copy(outw *o, int fd, uint64_t off, uint64_t len)
{
    o->src_fd = fd;
    o->src_off = off;
    for (uint64_t left = len; left > 0;) {
        size_t n = left < COPY_CHUNK ? (size_t)left : COPY_CHUNK;
        o->src_left = n;
        if (archive_write_data(o->a, o->placeholder, n) != (la_ssize_t)n || o->src_left != 0) {
            o->src_left = 0;
            return pht_error_set(o->err, PHT_EIO, "%s: %s", o->tmp, archive_error_string(o->a));
        }
        left -= n;
    }
    return 0;
}

static int out_bytes(outw *o, const char *name, const void *p, size_t n)
{
    int rc = out_begin(o, name, n);
    return rc ? rc : out_sink(o, p, n, o->err);
}

/* 1 if name was written already, else records it. -1 on allocation failure. */
static int out_seen(outw *o, const char *name)
{
    for (size_t i = 0; i < o->nn; i++)
        if (strcmp(o->names[i], name) == 0) return 1;
    char **v = realloc(o->names, (o->nn + 1) * sizeof *v);
    if (v == NULL) return -1;
    o->names = v;
    if ((v[o->nn] = strdup(name)) == NULL) return -1;
    o->nn++;
    return 0;
}

static int has_tag(const img_plan *p, const char *t)
{
    for (size_t i = 0; i < p->ntags; i++)
        if (archive_tag_eq(p->tags[i], t)) return 1;
    return 0;
}

/* Copy one image of the existing archive, minus the tags that move. */
static int keep_image(outw *o, const catalog *c, cJSON *it, const img_plan *p, cJSON *out)
{
    cJSON *tags = cJSON_GetObjectItemCaseSensitive(it, "RepoTags"), *t;
    cJSON *ntags = cJSON_CreateArray();
    int had = cJSON_GetArraySize(tags), rc = 0;
    cJSON_ArrayForEach(t, tags) if (cJSON_IsString(t) && !has_tag(p, t->valuestring))
        cJSON_AddItemToArray(ntags, cJSON_CreateString(t->valuestring));
    int untagged = cJSON_GetArraySize(ntags) == 0;
    if (had > 0 && untagged) { /* every tag moved: drop the image */
        cJSON_Delete(ntags);
        return 0;
    }
    cJSON *cfgname = cJSON_GetObjectItemCaseSensitive(it, "Config");
    cJSON *layers = cJSON_GetObjectItemCaseSensitive(it, "Layers");
    const member *m =
        cJSON_IsString(cfgname) ? archive_catalog_find(c, cfgname->valuestring, o->err) : NULL;
    char *cfgtext = NULL, dg[IMG_DIGEST_MAX], name[96];
    cJSON *cfg = NULL, *entry = cJSON_CreateObject(), *nl = cJSON_CreateArray();
    if (m == NULL || !cJSON_IsArray(layers)) {
        rc = pht_error_set(o->err, PHT_EFORMAT, "%s: an image in manifest.json is incomplete",
                           c->path);
        goto done;
    }
    if ((rc = fs_pread_all(c->fd, m->off, m->size, IMG_JSON_MAX, &cfgtext, "image config",
                           o->err)) ||
        (rc = hash_sha256_buf(cfgtext, m->size, dg, o->err)))
        goto done;
    if (untagged && p->replaces && strcmp(dg, p->replaces) == 0) /* the new image replaces it */
        goto done;
    if ((cfg = json_parse(cfgtext, "image config", o->err)) == NULL) {
        rc = PHT_EFORMAT;
        goto done;
    }
    if (p->drop_plaintext && img_config_pre_run(cfg)) /* a pre-run's plaintext: not kept */
        goto done;
    snprintf(name, sizeof name, "%s.json", dg + 7);
    int seen = out_seen(o, name);
    if (seen < 0 || (seen == 0 && (rc = out_bytes(o, name, cfgtext, m->size)))) {
        rc = rc ? rc : pht_error_set(o->err, PHT_ENOMEM, "out of memory");
        goto done;
    }
    cJSON_AddItemToObject(entry, "Config", cJSON_CreateString(name));
    cJSON_AddItemToObject(entry, "RepoTags", ntags);
    ntags = NULL;
    cJSON *diffs = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cfg, "rootfs"),
                                                    "diff_ids");
    if (cJSON_GetArraySize(diffs) != cJSON_GetArraySize(layers)) {
        rc = pht_error_set(o->err, PHT_EFORMAT, "%s: an image's config and layers disagree",
                           c->path);
        goto done;
    }
    for (int i = 0; rc == 0 && i < cJSON_GetArraySize(layers); i++) {
        const char *d = cJSON_GetStringValue(cJSON_GetArrayItem(diffs, i));
        const char *ln = cJSON_GetStringValue(cJSON_GetArrayItem(layers, i));
        const member *lm = ln ? archive_catalog_find(c, ln, o->err) : NULL;
        if (!hash_sha256_valid(d) || lm == NULL) {
            rc = pht_error_set(o->err, PHT_EFORMAT, "%s: layer %d of a kept image is missing",
                               c->path, i);
            break;
        }
        snprintf(name, sizeof name, "%s.tar", d + 7);
        cJSON_AddItemToArray(nl, cJSON_CreateString(name));
        if ((seen = out_seen(o, name)) != 0) {
            if (seen < 0) rc = pht_error_set(o->err, PHT_ENOMEM, "out of memory");
            continue;
        }
        if ((rc = out_begin(o, name, lm->size)) == 0) rc = out_copy(o, c->fd, lm->off, lm->size);
    }
    cJSON_AddItemToObject(entry, "Layers", nl);
    nl = NULL;
    if (rc == 0) {
        cJSON_AddItemToArray(out, entry);
        entry = NULL;
    }
done:
    cJSON_Delete(ntags);
    cJSON_Delete(nl);
    cJSON_Delete(entry);
    cJSON_Delete(cfg);
    free(cfgtext);
    return rc;
}

/* ---- the new layer in place ----------------------------------------------------- */

/* Capture what libarchive writes into a buffer of IMG_ARCHIVE_HEAD bytes; more fails. */
typedef struct capture {
    unsigned char buf[IMG_ARCHIVE_HEAD];
    size_t len;
    int full;
} capture;

static la_ssize_t capture_write(struct archive *a, void *ud, const void *p, size_t n)
{
    capture *c = ud;
    if (c->full || n > sizeof c->buf - c->len) {
        c->full = 1; /* the header is out: what follows (libarchive's padding) is not wanted */
        archive_set_error(a, ENOSPC, "header captured");
        return -1;
    }
    memcpy(c->buf + c->len, p, n);
    c->len += n;
    return (la_ssize_t)n;
}

/*
 * The tar header libarchive writes for a member name of size bytes, in one
 * 512-byte block: 0, or -1. The archive's own format (restricted pax) first;
 * a size of 8 GiB or more needs pax records there, so GNU's format, whose
 * base-256 size field fits one block, is tried next (Docker's and
 * containers/image's readers take both).
 */
static int member_header(const char *name, uint64_t size, capture *c)
{
    for (int gnu = 0; gnu < 2; gnu++) {
        memset(c, 0, sizeof *c);
        struct archive *a = archive_write_new();
        if (a == NULL) return -1;
        if (gnu)
            archive_write_set_format_gnutar(a);
        else
            archive_write_set_format_pax_restricted(a);
        archive_write_set_bytes_per_block(a, 0);
        int ok = archive_write_open2(a, c, NULL, capture_write, NULL, NULL) == ARCHIVE_OK &&
                 layer_tar_file_header(a, name, size) == 0;
        c->full = 1;
        archive_write_free(a);
        if (ok && c->len == IMG_ARCHIVE_HEAD) return 0;
    }
    return -1;
}

/*
 * The writer's new layer (the plan's top layer) can be the archive's first
 * member where it lies: a nameless file beside the archive (same file
 * system as out_fd, itself nameless), with IMG_ARCHIVE_HEAD bytes before
 * the layer for its header, and no other layer of the plan of its diff_id. Then the archive is that
 * file: the other members follow the layer, the header goes in front, and the layer is never
 * copied.
 */
static const img_layer *in_place_layer(const img_plan *p, int out_fd)
{
    if (p->nlayers == 0) return NULL;
    const img_layer *l = p->layers[p->nlayers - 1];
    struct stat st, ts;
    if (l->fd < 0 || l->offset != IMG_ARCHIVE_HEAD || l->compression != IMG_COMP_NONE ||
        fstat(l->fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 0 ||
        fstat(out_fd, &ts) != 0 || ts.st_dev != st.st_dev || ts.st_nlink != 0)
        return NULL;
    for (size_t i = 0; i + 1 < p->nlayers; i++) /* its member name must be its own */
        if (strcmp(p->layers[i]->diff_id, l->diff_id) == 0) return NULL;
    return l;
}

static int write_new(outw *o, const img_plan *p, cJSON *out)
{
    char name[96];
    cJSON *entry = cJSON_CreateObject(), *tags = cJSON_CreateArray(), *layers = cJSON_CreateArray();
    int rc = 0;
    snprintf(name, sizeof name, "%s.json", p->config_digest + 7);
    cJSON_AddItemToObject(entry, "Config", cJSON_CreateString(name));
    for (size_t i = 0; i < p->ntags; i++) {
        size_t j = 0;
        while (j < i && !archive_tag_eq(p->tags[j], p->tags[i]))
            j++;
        if (j == i) cJSON_AddItemToArray(tags, cJSON_CreateString(p->tags[i]));
    }
    cJSON_AddItemToObject(entry, "RepoTags", tags);
    cJSON_AddItemToObject(entry, "Layers", layers);
    cJSON_AddItemToArray(out, entry);
    if (out_seen(o, name) == 0) rc = out_bytes(o, name, p->config, p->config_len);
    for (size_t i = 0; rc == 0 && i < p->nlayers; i++) {
        const img_layer *l = p->layers[i];
        snprintf(name, sizeof name, "%s.tar", l->diff_id + 7);
        cJSON_AddItemToArray(layers, cJSON_CreateString(name));
        int seen = out_seen(o, name);
        if (seen < 0)
            rc = pht_error_set(o->err, PHT_ENOMEM, "out of memory");
        else if (seen == 0 && l == o->in_place)
            img_progress(p->opts, l->length); /* it is already where it belongs */
        else if (seen == 0 && (rc = out_begin(o, name, l->diff_size)) == 0)
            /* a plain layer is its diff: copied as stored; others are decompressed */
            rc = l->compression == IMG_COMP_NONE ? out_copy(o, l->fd, l->offset, l->length)
                                                 : layer_copy_diff(l, p->opts, out_sink, o, o->err);
    }
    return rc;
}

int archive_commit(const char *where, const img_plan *p, pht_error *err)
{
    catalog old = {.fd = -1};
    int rc = 0;
    struct stat st;
    if (stat(where, &st) == 0 && (rc = archive_catalog_open(where, p->opts, &old, err))) {
        return pht_error_prefix(err, "cannot keep the images of the existing archive");
    }
    outw o = {.fd = -1, .err = err, .opts = p->opts};
    char *tmp = NULL;
    cJSON *manifest = cJSON_CreateArray();
    if ((rc = fs_tmp_beside(where, &tmp, &o.fd, err))) goto done;
    o.tmp = tmp;
    capture head;
    const img_layer *lay = in_place_layer(p, o.fd);
    char hname[96];
    if (lay) snprintf(hname, sizeof hname, "%s.tar", lay->diff_id + 7);
    if (lay && member_header(hname, lay->length, &head) == 0) {
        /* the archive is the layer's file: what a failed commit appended before goes */
        int fd = dup(lay->fd);
        uint64_t end = IMG_ARCHIVE_HEAD + lay->length;
        /* with the mode fs_tmp_beside gives an archive (the layer's file was made 0600) */
        if (fd >= 0 && ftruncate(fd, (off_t)end) == 0 &&
            lseek(fd, (off_t)end, SEEK_SET) == (off_t)end && fchmod(fd, 0644) == 0) {
            close(o.fd);
            o.fd = fd;
            o.in_place = lay;
        } else if (fd >= 0) {
            close(fd);
        }
    }
    o.a = archive_write_new();
    o.placeholder = calloc(1, COPY_CHUNK); /* never read: its pages are never touched */
    if (posix_memalign(&o.dbuf, FS_DIRECT_ALIGN, DIRECT_BUF) != 0) o.dbuf = NULL;
    if (o.a == NULL || manifest == NULL || o.placeholder == NULL) {
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        goto done;
    }
    archive_write_set_format_pax_restricted(o.a);
    archive_write_set_bytes_per_block(o.a, 0); /* no blocking: see out_write */
    if (archive_write_open2(o.a, &o, NULL, out_write, NULL, NULL) != ARCHIVE_OK) {
        rc = pht_error_set(err, PHT_EIO, "%s: %s", tmp, archive_error_string(o.a));
        goto done;
    }
    rc = write_new(&o, p, manifest);
    cJSON *it;
    if (old.manifest) cJSON_ArrayForEach(it, old.manifest)
        {
            if (rc == 0) rc = keep_image(&o, &old, it, p, manifest);
        }
    char *text = rc ? NULL : cJSON_PrintUnformatted(manifest);
    if (rc == 0 && text == NULL) rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc == 0) rc = out_bytes(&o, "manifest.json", text, strlen(text));
    free(text);
    if (rc == 0 && archive_write_close(o.a) != ARCHIVE_OK)
        rc = pht_error_set(err, PHT_EIO, "%s: %s", tmp, archive_error_string(o.a));
    if (rc == 0 && o.in_place && pwrite(o.fd, head.buf, IMG_ARCHIVE_HEAD, 0) != IMG_ARCHIVE_HEAD)
        rc = pht_error_set(err, PHT_EIO, "%s: cannot write the new layer's header: %s", tmp,
                           strerror(errno));
    if (rc == 0) rc = fs_commit_file(o.fd, tmp, where, err);
done:
    if (o.a) archive_write_free(o.a);
    if (o.fd >= 0) close(o.fd);
    if (rc && tmp) unlink(tmp);
    free(tmp);
    for (size_t i = 0; i < o.nn; i++)
        free(o.names[i]);
    free(o.names);
    free(o.placeholder);
    free(o.dbuf);
    cJSON_Delete(manifest);
    if (old.fd >= 0) archive_catalog_free(&old);
    return rc;
}
