/*
 * The oci transport: an OCI image layout directory (oci-layout, index.json,
 * blobs/sha256/...). index.json names images by the
 * org.opencontainers.image.ref.name annotation. Manifest and config blobs
 * are checked against their digests as they are read, layer blobs as the
 * index pass decides (doc/images.md). A commit adds the blobs the layout
 * lacks (each written to a temporary file and renamed), reuses in place those
 * it has, and then replaces index.json atomically; on failure the blobs it
 * added are removed, so the layout is left as it was.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_private.h"
#include "hash_private.h"
#include "oci_private.h"
#include "transport_private.h"

/* DIR/blobs/sha256/HEX for digest "sha256:HEX". */
char *oci_blob_path(const char *dir, const char *digest)
{
    size_t n = strlen(dir) + strlen(digest) + 16;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/blobs/sha256/%s", dir, digest + 7);
    return p;
}

/* A small blob (manifest, config) read whole and checked against its digest. */
int oci_read_json_blob(const char *dir, const char *digest, char **out, size_t *len, pht_error *err)
{
    *out = NULL;
    if (!hash_sha256_valid(digest))
        return pht_error_set(err, PHT_EUNSAFE, "%s: unsupported or malformed digest \"%.80s\"", dir,
                             digest ? digest : "");
    char *p = oci_blob_path(dir, digest), dg[IMG_DIGEST_MAX];
    if (p == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    int rc = fs_read_small(p, IMG_JSON_MAX, out, len, err);
    free(p);
    if (rc == 0 && (rc = hash_sha256_buf(*out, *len, dg, err)) == 0 && strcmp(dg, digest) != 0)
        rc = pht_error_set(err, PHT_EVERIFY, "%s: blob %s does not match its digest", dir, digest);
    if (rc) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* What an oci image remembers of its index.json entry, for an in-place commit. */
typedef struct oci_state {
    char *name; /* its ref name, or NULL */
    char digest[IMG_DIGEST_MAX];
} oci_state;

/* An image index: OCI's or Docker's manifest list. */
int oci_is_index(const char *mt)
{
    return mt && (strcmp(mt, "application/vnd.oci.image.index.v1+json") == 0 ||
                  strcmp(mt, "application/vnd.docker.distribution.manifest.list.v2+json") == 0);
}

/* The manifest descriptor for tag (or the only one) in an index document. */
static cJSON *pick(cJSON *index, const char *tag, const char *dir, pht_error *err)
{
    cJSON *ms = cJSON_GetObjectItemCaseSensitive(index, "manifests"), *it, *hit = NULL;
    int n = 0;
    cJSON_ArrayForEach(it, ms)
    {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(it, "annotations"), REF_NAME));
        if (tag == NULL || (name && strcmp(name, tag) == 0)) {
            hit = hit ? hit : it;
            n++;
        }
    }
    if (hit == NULL)
        pht_error_set(err, PHT_ENOTFOUND, "%s: no image %s in the layout", dir,
                      tag ? tag : "at all");
    else if (tag == NULL && n > 1)
        pht_error_set(err, PHT_EINVAL, "%s holds %d images: name one as oci:DIR:TAG", dir, n),
            hit = NULL;
    return hit;
}

static int oci_open(pht_image *img, const pht_image_ref *ref, pht_error *err)
{
    const char *dir = pht_image_ref_path(ref), *tag = pht_image_ref_tag(ref);
    char *text = NULL, *path = NULL;
    size_t len;
    int rc = 0;
    cJSON *index = NULL, *nested = NULL, *man = NULL, *cfg = NULL;
    size_t n = strlen(dir) + 16;
    if ((path = malloc(n)) == NULL) {
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(path, n, "%s/index.json", dir);
    if ((rc = fs_read_small(path, IMG_JSON_MAX, &text, &len, err))) goto out;
    if ((index = json_parse(text, "index.json", err)) == NULL) {
        rc = PHT_EFORMAT;
        goto out;
    }
    free(text);
    text = NULL;
    cJSON *d = pick(index, tag, dir, err);
    if (d) {
        oci_state *st = calloc(1, sizeof *st);
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(d, "annotations"), REF_NAME));
        const char *dg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "digest"));
        img->tpdata = st;
        if (st == NULL || (name && (st->name = strdup(name)) == NULL)) {
            rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
            goto out;
        }
        snprintf(st->digest, sizeof st->digest, "%s", hash_sha256_valid(dg) ? dg : "");
    }
    if (d && oci_is_index(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "mediaType")))) {
        /* one level of image index: take its only (or first linux) manifest */
        const char *dg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "digest"));
        if ((rc = oci_read_json_blob(dir, dg, &text, &len, err))) goto out;
        nested = json_parse(text, "image index", err);
        free(text);
        text = NULL;
        d = nested ? pick(nested, NULL, dir, err) : NULL;
    }
    if (d == NULL) {
        rc = err ? err->code : PHT_ENOTFOUND;
        goto out;
    }
    const char *mdg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "digest"));
    if ((rc = oci_read_json_blob(dir, mdg, &img->manifest, &len, err))) goto out;
    if ((man = json_parse(img->manifest, "manifest", err)) == NULL) {
        rc = PHT_EFORMAT;
        goto out;
    }
    const char *cdg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(man, "config"), "digest"));
    if ((rc = oci_read_json_blob(dir, cdg, &img->config, &img->config_len, err))) goto out;
    if ((cfg = json_parse(img->config, "image config", err)) == NULL) {
        rc = PHT_EFORMAT;
        goto out;
    }
    cJSON *layers = cJSON_GetObjectItemCaseSensitive(man, "layers");
    cJSON *diffs = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cfg, "rootfs"),
                                                    "diff_ids");
    int nl = cJSON_GetArraySize(layers);
    if (cJSON_GetArraySize(diffs) != nl) {
        rc = pht_error_set(err, PHT_EFORMAT, "%s: config lists %d diff_ids for %d layers", dir,
                           cJSON_GetArraySize(diffs), nl);
        goto out;
    }
    if ((img->layers = calloc((size_t)nl + 1, sizeof *img->layers)) == NULL) {
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < nl; i++) {
        cJSON *ld = cJSON_GetArrayItem(layers, i);
        const char *dg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ld, "digest"));
        const char *mt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ld, "mediaType"));
        const char *di = cJSON_GetStringValue(cJSON_GetArrayItem(diffs, i));
        double sz = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(ld, "size"));
        img_layer *l = &img->layers[i];
        l->fd = -1;
        img->nlayers++;
        if (!hash_sha256_valid(dg) || !hash_sha256_valid(di)) {
            rc = pht_error_set(err, PHT_EUNSAFE, "%s: layer %d: unsupported or malformed digest",
                               dir, i);
            goto out;
        }
        strcpy(l->digest, dg);
        strcpy(l->diff_id, di);
        l->digest_known = 1;
        snprintf(l->media_type, sizeof l->media_type, "%s", mt ? mt : "");
        char *bp = oci_blob_path(dir, dg);
        l->fd = bp ? open(bp, O_RDONLY | O_CLOEXEC | O_NONBLOCK) : -1; /* FIFOs refused below */
        struct stat st;
        if (l->fd < 0 || fstat(l->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            rc = pht_error_set(err, PHT_ENOTFOUND, "%s: layer blob %s is missing", dir, dg);
            free(bp);
            goto out;
        }
        free(bp);
        l->length = (uint64_t)st.st_size;
        if (!(sz >= 0) || (uint64_t)sz != l->length) {
            rc = pht_error_set(err, PHT_EFORMAT,
                               "%s: layer blob %s has %llu bytes, the manifest says %.0f", dir, dg,
                               (unsigned long long)l->length, sz);
            goto out;
        }
    }
out:
    cJSON_Delete(index);
    cJSON_Delete(nested);
    cJSON_Delete(man);
    cJSON_Delete(cfg);
    free(text);
    free(path);
    return rc;
}

static void oci_close(pht_image *img)
{
    oci_state *st = img->tpdata;
    if (st) free(st->name);
    free(st);
    img->tpdata = NULL;
}

/* An untagged commit into src's own layout: src's ref name moves, its entry is replaced. */
static int oci_own_names(const pht_image *src, const char *where, char ***names, size_t *n,
                         char *id, pht_error *err)
{
    const oci_state *st = src->tpdata;
    *names = NULL;
    *n = 0;
    id[0] = '\0';
    if (st == NULL || !fs_same_file(pht_image_ref_path(src->ref), where)) return 0;
    if (st->name) {
        if ((*names = calloc(2, sizeof **names)) == NULL ||
            ((*names)[0] = strdup(st->name)) == NULL)
            return pht_error_set(err, PHT_ENOMEM, "out of memory");
        *n = 1;
    }
    strcpy(id, st->digest);
    return 0;
}

static int oci_dest_tag(const pht_image_ref *ref, char **where, char **tag, pht_error *err)
{
    const char *t = pht_image_ref_tag(ref);
    *where = strdup(pht_image_ref_path(ref));
    *tag = t ? strdup(t) : NULL;
    if (*where == NULL || (t && *tag == NULL)) {
        free(*where);
        free(*tag);
        *where = *tag = NULL;
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    return 0;
}

/* ---- commit ----------------------------------------------------------------- */

typedef struct ocw {
    const char *dir;
    char **created;
    size_t nc;
    pht_error *err;
} ocw;

typedef struct fdsink {
    int fd;
    const char *what;
    const pht_image_opts *o; /* its progress */
} fdsink;

static int fd_sink(void *ud, const void *p, size_t n, pht_error *err)
{
    fdsink *s = ud;
    int rc = fs_write_all(s->fd, p, n, s->what, err);
    if (rc == 0) img_progress(s->o, n);
    return rc;
}

/* Pieces of a kernel copy between two progress reports. */
#define COPY_PIECE (32u << 20)

/* The blob of l as stored into fd, in the kernel; in pieces when someone counts them. */
static int copy_blob(const img_layer *l, int fd, const char *what, const pht_image_opts *o,
                     pht_error *err)
{
    if (o->progress == NULL) return fs_copy_range(l->fd, l->offset, l->length, fd, what, err);
    int rc = 0;
    for (uint64_t at = 0; rc == 0 && at < l->length; at += COPY_PIECE) {
        uint64_t n = l->length - at < COPY_PIECE ? l->length - at : COPY_PIECE;
        if ((rc = fs_copy_range(l->fd, l->offset + at, n, fd, what, err)) == 0) img_progress(o, n);
    }
    return rc;
}

/*
 * Name the layer's file instead of copying it, when it is all of an
 * O_TMPFILE file on the layout's file system (the image writer's new
 * layer). fd is the file fs_tmp_beside made for the blob: when it is
 * unnamed too, fs_commit_file(l->fd, tmp, ...) links the layer's file in
 * itself; when it is named tmp, tmp is replaced by a link to the layer's
 * file. 1 when the caller commits l->fd; 0 when it cannot be done (tmp and
 * fd are then as they were, and the caller copies into fd).
 */
static int link_whole(const img_layer *l, const char *tmp, int fd)
{
    struct stat st, ts;
    /* nlink 0: a nameless file, never a blob or archive of another image */
    if (l->offset != 0 || fstat(l->fd, &st) != 0 || st.st_nlink != 0 ||
        (uint64_t)st.st_size != l->length || fstat(fd, &ts) != 0 || ts.st_dev != st.st_dev)
        return 0;
    if (ts.st_nlink == 0) {
        fchmod(l->fd, 0644);
        return 1;
    }
    if (unlink(tmp) != 0) return 0;
    if (fs_link_anon(l->fd, tmp) == 0) {
        chmod(tmp, 0644);
        return 1;
    }
    /* Put back an empty file for the copy. */
    int again = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (again < 0) return 0;
    dup2(again, fd);
    close(again);
    return 0;
}

/* Record path as created once rc says it was committed. */
static int add_created(ocw *w, char **path, int rc)
{
    if (rc) return rc;
    char **v = realloc(w->created, (w->nc + 1) * sizeof *v);
    if (v == NULL) return pht_error_set(w->err, PHT_ENOMEM, "out of memory");
    w->created = v;
    v[w->nc++] = *path;
    *path = NULL;
    return 0;
}

/*
 * Write blob digest unless the layout has it. Content comes from layer l
 * (raw or decompressed) or from buf.
 */
static int put_blob(ocw *w, const char *digest, uint64_t size, const img_layer *l, int diff,
                    const void *buf, const pht_image_opts *o)
{
    char *path = oci_blob_path(w->dir, digest), *tmp = NULL;
    struct stat st;
    int fd = -1, rc = 0;
    if (path == NULL) return pht_error_set(w->err, PHT_ENOMEM, "out of memory");
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size) goto done;
    if ((rc = fs_tmp_beside(path, &tmp, &fd, w->err))) goto done;
    if (l != NULL && !diff && link_whole(l, tmp, fd)) {
        /* The writer's new layer is the blob: named in place, not copied. */
        close(fd);
        fd = -1;
        rc = add_created(w, &path, fs_commit_file(l->fd, tmp, path, w->err));
        if (rc == 0) img_progress(o, size);
        goto done;
    }
    fdsink s = {fd, tmp, o};
    if (l == NULL) {
        if ((rc = fs_write_all(fd, buf, (size_t)size, tmp, w->err)) == 0) img_progress(o, size);
    } else if (diff) {
        rc = layer_copy_diff(l, o, fd_sink, &s, w->err);
    } else { /* as stored, in the kernel (sharing blocks where the file system can) */
        rc = copy_blob(l, fd, tmp, o, w->err);
    }
    char **v = rc ? NULL : realloc(w->created, (w->nc + 1) * sizeof *v);
    if (rc == 0 && v == NULL) rc = pht_error_set(w->err, PHT_ENOMEM, "out of memory");
    if (rc == 0 && (rc = fs_commit_file(fd, tmp, path, w->err)) == 0) {
        w->created = v;
        v[w->nc++] = path;
        path = NULL;
    } else if (v) {
        w->created = v;
    }
done:
    if (fd >= 0) close(fd);
    if (rc && tmp) unlink(tmp);
    free(tmp);
    free(path);
    return rc;
}

static int mkdir_p(const char *dir, pht_error *err)
{
    const char *parts[] = {"", "/blobs", "/blobs/sha256"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(dir) + 16;
        char p[4096 + 16];
        if (n > sizeof p) return pht_error_set(err, PHT_EINVAL, "%s: path too long", dir);
        snprintf(p, sizeof p, "%s%s", dir, parts[i]);
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return pht_error_set(err, PHT_EIO, "%s: %s", p, strerror(errno));
    }
    return 0;
}

/* path written atomically: beside it, fsync, rename. */
int oci_write_small(const char *path, const char *text, pht_error *err)
{
    char *tmp;
    int fd;
    int rc = fs_tmp_beside(path, &tmp, &fd, err);
    if (rc) return rc;
    rc = fs_write_all(fd, text, strlen(text), tmp, err);
    if (rc == 0) rc = fs_commit_file(fd, tmp, path, err);
    close(fd);
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

static cJSON *descriptor(const char *mt, const char *digest, uint64_t size)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "mediaType", mt);
    cJSON_AddStringToObject(d, "digest", digest);
    cJSON_AddNumberToObject(d, "size", (double)size);
    return d;
}

/* index.json with the tags moved to the new manifest; other entries kept. */
static int write_index(ocw *w, const img_plan *p, const char *mdg, size_t mlen)
{
    char path[4096 + 32], *text = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/index.json", w->dir);
    cJSON *index = NULL;
    int rc = fs_read_small(path, IMG_JSON_MAX, &text, &len, w->err);
    if (rc == 0)
        index = json_parse(text, "index.json", w->err);
    else if (rc == PHT_ENOTFOUND)
        index = cJSON_CreateObject();
    free(text);
    if (index == NULL) return w->err && w->err->code ? w->err->code : PHT_EFORMAT;
    cJSON *ms = cJSON_GetObjectItemCaseSensitive(index, "manifests");
    if (!cJSON_IsArray(ms)) {
        cJSON_DeleteItemFromObjectCaseSensitive(index, "manifests");
        ms = cJSON_AddArrayToObject(index, "manifests");
    }
    if (!cJSON_GetObjectItemCaseSensitive(index, "schemaVersion"))
        cJSON_AddNumberToObject(index, "schemaVersion", 2);
    for (int i = cJSON_GetArraySize(ms) - 1; i >= 0; i--) {
        cJSON *d = cJSON_GetArrayItem(ms, i);
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(d, "annotations"), REF_NAME));
        const char *dg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "digest"));
        int drop = name == NULL && p->replaces && dg && strcmp(dg, p->replaces) == 0;
        for (size_t k = 0; name && !drop && k < p->ntags; k++)
            drop = strcmp(name, p->tags[k]) == 0;
        if (drop) cJSON_DeleteItemFromArray(ms, i);
    }
    for (size_t k = 0; k < (p->ntags ? p->ntags : 1); k++) {
        cJSON *d = descriptor(MT_MANIFEST, mdg, mlen);
        if (p->ntags)
            cJSON_AddStringToObject(cJSON_AddObjectToObject(d, "annotations"), REF_NAME,
                                    p->tags[k]);
        cJSON_AddItemToArray(ms, d);
    }
    text = cJSON_PrintUnformatted(index);
    cJSON_Delete(index);
    if (text == NULL) return pht_error_set(w->err, PHT_ENOMEM, "out of memory");
    rc = oci_write_small(path, text, w->err);
    free(text);
    return rc;
}

static int oci_commit(const char *where, const img_plan *p, pht_error *err)
{
    ocw w = {.dir = where, .err = err};
    char mdg[IMG_DIGEST_MAX], path[4096 + 32];
    struct stat st;
    cJSON *man = cJSON_CreateObject(), *layers;
    char *text = NULL;
    int lock = -1, rc = mkdir_p(where, err);
    if (rc == 0) rc = oci_lock_layout(where, &lock, err);
    snprintf(path, sizeof path, "%s/oci-layout", where);
    if (rc == 0 && stat(path, &st) != 0)
        rc = oci_write_small(path, "{\"imageLayoutVersion\":\"1.0.0\"}", err);
    cJSON_AddNumberToObject(man, "schemaVersion", 2);
    cJSON_AddStringToObject(man, "mediaType", MT_MANIFEST);
    cJSON_AddItemToObject(man, "config", descriptor(MT_CONFIG, p->config_digest, p->config_len));
    layers = cJSON_AddArrayToObject(man, "layers");
    for (size_t i = 0; rc == 0 && i < p->nlayers; i++) {
        const img_layer *l = p->layers[i];
        /* gzip, zstd and plain tar blobs are kept as stored; others become plain tar */
        int asis = l->compression != IMG_COMP_OTHER;
        const char *dg = asis ? l->digest : l->diff_id;
        uint64_t size = asis ? l->length : l->diff_size;
        rc = put_blob(&w, dg, size, l, !asis, NULL, p->opts);
        cJSON_AddItemToArray(
            layers, descriptor(layer_media_type(asis ? l->compression : IMG_COMP_NONE), dg, size));
    }
    if (rc == 0) rc = put_blob(&w, p->config_digest, p->config_len, NULL, 0, p->config, p->opts);
    if (rc == 0 && (text = cJSON_PrintUnformatted(man)) == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc == 0) rc = hash_sha256_buf(text, strlen(text), mdg, err);
    if (rc == 0) rc = put_blob(&w, mdg, strlen(text), NULL, 0, text, p->opts);
    if (rc == 0) rc = write_index(&w, p, mdg, strlen(text));
    for (size_t i = 0; i < w.nc; i++) {
        if (rc) unlink(w.created[i]);
        free(w.created[i]);
    }
    /* the image is committed; what no manifest references any more can go */
    if (rc == 0 && !p->keep_unreferenced && (rc = oci_gc(where, NULL, err)))
        pht_error_prefix(err, "the image is committed, but removing unreferenced blobs failed");
    if (lock >= 0) close(lock);
    free(w.created);
    free(text);
    cJSON_Delete(man);
    return rc;
}

const img_transport img_oci = {
    .open = oci_open,
    .close = oci_close,
    .dest_tag = oci_dest_tag,
    .commit = oci_commit,
    .own_names = oci_own_names,
};
