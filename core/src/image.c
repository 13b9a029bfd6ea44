/*
 * The image handle: opening by reference through a transport, the manifest,
 * config and per-layer history, and the merged filesystem (stat, walk,
 * streamed file content). Extraction is image_extract.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "fs_private.h"
#include "pht/docker.h"
#include "pht/util.h"
#include "transport_private.h"

void pht_image_opts_init(pht_image_opts *o)
{
    o->tmpdir = NULL;
    o->max_entries = 1000000;
    o->max_entry_bytes = 64ull << 30;
    o->max_layer_bytes = 64ull << 30;
    o->max_name = 4096;
    o->max_path_bytes = 32u << 20;
    o->verify_layers = 0;
    o->cache_dir = NULL;
    o->registry_creds = o->registry_auth_file = o->registry_cert_dir = o->platform = NULL;
    o->registry_tls_insecure = 0;
    o->docker_timeout = NULL;
    o->no_index = 0;
    o->verify_behind = 0;
    o->progress = NULL;
    o->progress_ud = NULL;
}

/* The registry options' strings, copied into the handle (a commit reads them later). */
static int dup_registry_opts(pht_image *img)
{
    const char **f[] = {&img->opts.registry_creds, &img->opts.registry_auth_file,
                        &img->opts.registry_cert_dir, &img->opts.platform};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (*f[i] && (*f[i] = img->registry_strs[i] = strdup(*f[i])) == NULL) return -1;
    return 0;
}

void img_retain(pht_image *img)
{
    img->refs++;
}

int img_apply_history(pht_image *img, pht_error *err)
{
    cJSON *cfg = json_parse(img->config, "image config", err);
    if (cfg == NULL) return PHT_EFORMAT;
    cJSON *h = cJSON_GetObjectItemCaseSensitive(cfg, "history"), *it;
    size_t li = 0;
    cJSON_ArrayForEach(it, h)
    {
        if (li >= img->nlayers) break;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "empty_layer"))) continue;
        const char *cb = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "created_by"));
        const char *cm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "comment"));
        img_layer *l = &img->layers[li++];
        if ((cb && (l->created_by = strdup(cb)) == NULL) ||
            (cm && (l->comment = strdup(cm)) == NULL)) {
            cJSON_Delete(cfg);
            return pht_error_set(err, PHT_ENOMEM, "out of memory");
        }
    }
    cJSON_Delete(cfg);
    return 0;
}

/*
 * Digest-check the layers whose bytes the protocol reads (doc/images.md,
 * "What an open verifies"): with verify_layers all of them; else those that
 * hold or delete /opt, and those an entry under /opt takes its bytes from (a
 * hard link into a lower layer), image_verify.c (with verify_behind, on a
 * thread). Compressed layers were hashed as they were scanned. The others
 * were checked header by header and stay unhashed.
 */
static int verify_used_layers(pht_image *img, pht_error *err)
{
    unsigned char *need = calloc(img->nlayers + 1, 1);
    if (need == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    for (size_t i = 0; i < img->nlayers; i++)
        need[i] = img->opts.verify_layers || img->layers[i].holds_opt;
    for (size_t i = 0; i < img->index.n; i++) {
        const img_entry *e = img->index.v[i];
        if (e->data_layer != e->layer &&
            (strcmp(e->path, IMG_PROTOCOL_DIR) == 0 || tarsafe_below(e->path, IMG_PROTOCOL_DIR)))
            need[e->data_layer] = 1;
    }
    int rc = img_verify_used(img, need, err);
    free(need);
    return rc;
}

int pht_image_open(pht_image **out, const char *ref, const pht_image_opts *opts, pht_error *err)
{
    *out = NULL;
    pht_image_ref *r;
    int rc = pht_image_ref_parse(ref, 0, &r, err);
    if (rc) return rc;
    const img_transport *tp = img_ref_transport(r, err);
    if (tp == NULL) {
        pht_image_ref_free(r);
        return PHT_EINVAL;
    }
    pht_image *img = calloc(1, sizeof *img);
    if (img == NULL) {
        pht_image_ref_free(r);
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    img->refs = 1;
    img->tp = tp;
    img->ref = r;
    img->view.fd = -1;
    if (opts)
        img->opts = *opts;
    else
        pht_image_opts_init(&img->opts);
    img->tmpdir = strdup(fs_tmpdir(img->opts.tmpdir));
    img->opts.tmpdir = img->tmpdir;
    if (img->opts.cache_dir) img->opts.cache_dir = img->cache_dir = strdup(img->opts.cache_dir);
    if (img->opts.docker_timeout)
        img->opts.docker_timeout = img->docker_timeout = strdup(img->opts.docker_timeout);
    pht_docker_timeouts dt;
    pht_docker_timeouts_init(&dt);
    if (img->tmpdir == NULL || (opts && opts->cache_dir && img->cache_dir == NULL) ||
        (opts && opts->docker_timeout && img->docker_timeout == NULL) ||
        dup_registry_opts(img) != 0)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    else if (img->docker_timeout &&
             (rc = pht_docker_timeouts_parse(&dt, img->docker_timeout, err)) != 0)
        pht_error_prefix(err, "docker_timeout");
    else if ((rc = tp->open(img, r, err)) == 0 && (rc = img_apply_history(img, err)) == 0 &&
             img->landed == IMG_LANDED_ALL) {
        if (img->opts.no_index)
            img->landed = IMG_LANDED_NONE; /* nothing lands later: img_land says so */
        else if ((rc = index_build(img, img->opts.verify_behind && !img->opts.verify_layers,
                                   err)) == 0)
            rc = verify_used_layers(img, err);
    }
    if (rc) {
        pht_error_prefix(err, "%.200s", ref);
        pht_image_free(img);
        return rc;
    }
    pht_image_set_progress(img, NULL, NULL); /* opts.progress was the open's */
    *out = img;
    return 0;
}

void pht_image_set_progress(pht_image *img, pht_progress_fn fn, void *ud)
{
    img->opts.progress = fn;
    img->opts.progress_ud = fn ? ud : NULL;
}

/* Forget the reading place kept in a layer (before its bytes can move). */
static void cursor_drop(pht_image *img)
{
    if (img->cursor.a) layer_tar_close(img->cursor.a, img->cursor.state);
    img->cursor.a = NULL;
    img->cursor.state = NULL;
}

void pht_image_free(pht_image *img)
{
    if (img == NULL || --img->refs > 0) return;
    img_verify_end(img); /* before the layers' files close */
    cursor_drop(img);
    if (img->tp && img->tp->close) img->tp->close(img);
    index_free(&img->index);
    for (size_t i = 0; i < img->nlayers; i++)
        layer_clear(&img->layers[i]);
    layer_clear(&img->view);
    free(img->layers);
    free(img->manifest);
    free(img->config);
    pht_image_ref_free(img->ref);
    free(img->tmpdir);
    free(img->cache_dir);
    for (size_t i = 0; i < sizeof img->registry_strs / sizeof *img->registry_strs; i++) {
        if (img->registry_strs[i])
            pht_secret_free(img->registry_strs[i], strlen(img->registry_strs[i]));
    }
    free(img->docker_timeout);
    free(img);
}

const char *pht_image_reference(const pht_image *img)
{
    return pht_image_ref_string(img->ref);
}

const char *pht_image_transport(const pht_image *img)
{
    return pht_image_ref_transport(img->ref);
}

const char *pht_image_manifest(const pht_image *img)
{
    return img->manifest;
}

const char *pht_image_config(const pht_image *img)
{
    return img->config;
}

size_t pht_image_layer_count(const pht_image *img)
{
    return img->nlayers;
}

int pht_image_layer_info(const pht_image *img, size_t i, pht_image_layer *out, pht_error *err)
{
    if (i >= img->nlayers)
        return pht_error_set(err, PHT_EINVAL, "layer %zu: the image has %zu layers", i,
                             img->nlayers);
    const img_layer *l = &img->layers[i];
    *out = (pht_image_layer){.digest = l->digest,
                             .diff_id = l->diff_id,
                             .media_type = l->media_type[0] ? l->media_type
                                                            : layer_media_type(l->compression),
                             .size = l->length,
                             .diff_size = l->diff_size,
                             .created_by = l->created_by,
                             .comment = l->comment,
                             .verified = l->verified && !l->diff_pending};
    return 0;
}

size_t pht_image_protocol_top(const pht_image *img)
{
    /* a layer not read (a docker-daemon image's) was not scanned: it stays */
    size_t n = img->nlayers, top = n, cfg = n;
    for (size_t i = 0; i < n && cfg == n; i++)
        if (img->layers[i].holds_config) cfg = i;
    /* down from the top while a layer holds the train's paths only, never into its master's */
    while (top > cfg && img->layers[top - 1].scanned && img->layers[top - 1].outside == NULL)
        top--;
    return top;
}

int img_land(pht_image *img, int want, pht_error *err)
{
    if (img->landed == IMG_LANDED_ALL || img->landed == want) return 0;
    cursor_drop(img);
    if (img->tp->land == NULL)
        return pht_error_set(err, PHT_ESTATE, "%.200s: the image's layers were not read",
                             pht_image_ref_string(img->ref));
    return img->tp->land(img, want, err);
}

const img_layer *img_layer_at(const pht_image *img, int i)
{
    return i < 0 ? &img->view : &img->layers[i];
}

/* A caller's path ("/opt/x", "opt/x/") in index form; "" is the root. */
static int norm_user_path(const pht_image *img, const char *path, char **out, pht_error *err)
{
    const char *why;
    while (path && *path == '/')
        path++;
    int rc = tarsafe_path(path, img->opts.max_name, out, &why);
    if (rc) return pht_error_set(err, rc, "path \"%.300s\": %s", path ? path : "", why);
    return 0;
}

static void fill_stat(const img_entry *e, pht_image_stat *st)
{
    *st = (pht_image_stat){.type = e->type,
                           .size = e->size,
                           .mode = e->mode,
                           .uid = e->uid,
                           .gid = e->gid,
                           .mtime = e->mtime,
                           .link = e->link,
                           .path = e->path};
}

static const pht_image_stat root_stat = {.type = PHT_IMAGE_DIR, .mode = 0755, .path = ""};

/*
 * The entry at path (NULL for the root) or PHT_ENOTFOUND, with what it needs
 * landed: the view for a path in the view's tree, else every layer (for the
 * root only when subtree, the caller walks it).
 */
static int lookup(pht_image *img, const char *path, int subtree, const img_entry **e, char **norm,
                  pht_error *err)
{
    int rc = norm_user_path(img, path, norm, err);
    if (rc) return rc;
    *e = NULL;
    if (img->landed != IMG_LANDED_ALL && ((*norm)[0] || subtree)) {
        const char *root = img->view_root;
        int in_view = root && (strcmp(*norm, root) == 0 || tarsafe_below(*norm, root));
        if ((rc = img_land(img, in_view ? IMG_LANDED_VIEW : IMG_LANDED_ALL, err))) {
            free(*norm);
            *norm = NULL;
            return rc;
        }
    }
    if ((*norm)[0] == '\0') return 0;
    if ((rc = index_lookup(&img->index, *norm, e)) != 0) {
        rc = rc == PHT_ENOTFOUND
                 ? pht_error_set(err, PHT_ENOTFOUND, "/%.300s: no such file or directory in %.200s",
                                 *norm, pht_image_ref_string(img->ref))
                 : pht_error_set(err, rc, "out of memory");
        free(*norm);
        *norm = NULL;
        return rc;
    }
    return 0;
}

int pht_image_stat_path(pht_image *img, const char *path, pht_image_stat *st, pht_error *err)
{
    const img_entry *e;
    char *norm;
    int rc = lookup(img, path, 0, &e, &norm, err);
    if (rc) return rc;
    if (e)
        fill_stat(e, st);
    else
        *st = root_stat;
    free(norm);
    return 0;
}

typedef struct walk_ctx {
    pht_image_walk_cb cb;
    void *ud;
} walk_ctx;

static int walk_visit(void *ud, const char *rel, const img_entry *e)
{
    walk_ctx *w = ud;
    pht_image_stat st;
    fill_stat(e, &st);
    return w->cb(w->ud, rel, &st);
}

int pht_image_walk(pht_image *img, const char *dir, int recursive, pht_image_walk_cb cb, void *ud,
                   pht_error *err)
{
    const img_entry *e;
    char *norm;
    int rc = lookup(img, dir, 1, &e, &norm, err);
    if (rc) return rc;
    if (e && e->type != PHT_IMAGE_DIR) {
        rc = pht_error_set(err, PHT_ENOTFOUND, "/%.300s: not a directory", norm);
        free(norm);
        return rc;
    }
    walk_ctx w = {cb, ud};
    rc = index_walk(&img->index, norm, recursive, walk_visit, &w, err);
    free(norm);
    return rc;
}

/* ---- streamed content ------------------------------------------------------- */

struct pht_image_reader {
    pht_image *img;
    struct archive *a; /* NULL: read in place */
    void *state;
    uint64_t left, size;
    char *path;
    int layer;
    uint64_t ordinal; /* of the entry read, in its data layer */
    int failed;       /* a read failed */
    int fd;           /* in place: the layer's file (the image owns it), else -1 */
    int own_fd;       /* fd is the reader's: an entry's source file */
    uint64_t at;      /* in place: where the next byte is in fd */
};

int img_open_source(const pht_image *img, const img_entry *e, pht_error *err)
{
    struct stat sb;
    int fd = open(e->source, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == e->size)
        return fd;
    int rc = tarsafe_fail(err, PHT_EIO, img_layer_at(img, e->data_layer), e->path,
                          "the engine's layer file %.300s %s", e->source,
                          fd < 0 ? strerror(errno) : "changed since it was listed");
    if (fd >= 0) close(fd);
    return -rc;
}

/* 1 if e's bytes are a byte range of a landed plain tar (or it has none). */
static int in_place(const pht_image *img, const img_entry *e)
{
    if (e->size == 0 || e->source) return 1;
    if (e->data_offset == IMG_NO_OFFSET) return 0;
    const img_layer *l = img_layer_at(img, e->data_layer);
    return l != NULL && l->fd >= 0 && l->compression == IMG_COMP_NONE &&
           e->data_offset + e->size <= l->length;
}

typedef struct in_place_walk {
    const pht_image *img;
    int all;
} in_place_walk;

static int in_place_visit(void *ud, const char *rel, const img_entry *e)
{
    (void)rel;
    in_place_walk *w = ud;
    if ((e->type == PHT_IMAGE_FILE || e->type == PHT_IMAGE_HARDLINK) && !in_place(w->img, e)) {
        w->all = 0;
        return -1; /* enough: stop the walk */
    }
    return 0;
}

typedef struct in_order_walk {
    const pht_image *img;
    int ok;
    int layer; /* the layer of the last file not in place; INT_MIN: none yet */
    uint64_t ordinal;
    unsigned char *done; /* layers (view first) the walk left: not to come back to */
} in_order_walk;

static int in_order_visit(void *ud, const char *rel, const img_entry *e)
{
    (void)rel;
    in_order_walk *w = ud;
    if ((e->type != PHT_IMAGE_FILE && e->type != PHT_IMAGE_HARDLINK) || in_place(w->img, e))
        return 0;
    if (e->data_layer == w->layer) {
        if (e->data_ordinal <= w->ordinal) w->ok = 0;
    } else {
        if (w->layer != INT_MIN) w->done[w->layer + 1] = 1;
        if (w->done[e->data_layer + 1]) w->ok = 0;
        w->layer = e->data_layer;
    }
    w->ordinal = e->data_ordinal;
    return w->ok ? 0 : -1;
}

/*
 * Visit the regular files at or below path (path itself when it is one) in
 * walk order; a visit returning -1 stops the walk early, which is no error.
 */
static int visit_files(pht_image *img, const char *path, index_visit visit, void *ud,
                       pht_error *err)
{
    const img_entry *e;
    char *norm;
    int rc = lookup(img, path, 1, &e, &norm, err);
    if (rc) return rc;
    if (e && e->type != PHT_IMAGE_DIR)
        visit(ud, norm, e);
    else if ((rc = index_walk(&img->index, norm, 1, visit, ud, err)) == -1)
        rc = 0;
    free(norm);
    return rc;
}

int pht_image_in_order(pht_image *img, const char *path, int *yes, pht_error *err)
{
    *yes = 0;
    in_order_walk w = {img, 1, INT_MIN, 0, calloc(img->nlayers + 1, 1)};
    if (w.done == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    int rc = visit_files(img, path, in_order_visit, &w, err);
    free(w.done);
    if (rc == 0) *yes = w.ok;
    return rc;
}

int pht_image_in_place(pht_image *img, const char *path, int *yes, pht_error *err)
{
    *yes = 0;
    in_place_walk w = {img, 1};
    int rc = visit_files(img, path, in_place_visit, &w, err);
    if (rc == 0) *yes = w.all;
    return rc;
}

static int reader_fail(pht_image_reader *r, int code, const char *why, pht_error *err)
{
    r->failed = 1; /* its stream is not kept for a later reader */
    return tarsafe_fail(err, code, img_layer_at(r->img, r->layer), r->path, "%s",
                        why ? why : "read failed");
}

int pht_image_open_file(pht_image *img, const char *path, pht_image_reader **out, pht_error *err)
{
    *out = NULL;
    const img_entry *e;
    char *norm;
    int rc = lookup(img, path, 0, &e, &norm, err);
    if (rc) return rc;
    if (e == NULL || (e->type != PHT_IMAGE_FILE && e->type != PHT_IMAGE_HARDLINK)) {
        rc = pht_error_set(err, PHT_ENOTFOUND, "/%.300s: not a regular file", norm);
        free(norm);
        return rc;
    }
    pht_image_reader *r = calloc(1, sizeof *r);
    if (r == NULL) {
        free(norm);
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    r->img = img;
    img_retain(img);
    r->path = norm;
    r->left = r->size = e->size;
    r->layer = e->data_layer;
    r->fd = -1;
    const img_layer *l = img_layer_at(img, e->data_layer);
    if (e->source) { /* a view's file, read where the engine's store holds it */
        if ((r->fd = img_open_source(img, e, err)) < 0) {
            rc = -r->fd;
            pht_image_reader_free(r);
            return rc;
        }
        r->own_fd = 1;
        *out = r;
        return 0;
    }
    if (in_place(img, e)) {
        /* a plain tar: the bytes are read where they are, no header is read again */
        r->fd = l->fd;
        r->at = l->offset + (e->size ? e->data_offset : 0);
        *out = r;
        return 0;
    }
    r->ordinal = e->data_ordinal;
    uint64_t k = 0;
    if (img->cursor.a && img->cursor.layer == e->data_layer && img->cursor.fd == l->fd &&
        img->cursor.ordinal < e->data_ordinal) {
        /* a later entry of the layer a reader finished in: go on from there */
        r->a = img->cursor.a;
        r->state = img->cursor.state;
        k = img->cursor.ordinal;
        img->cursor.a = NULL;
        img->cursor.state = NULL;
    } else if ((r->a = layer_tar_open(l, &r->state, err)) == NULL) {
        pht_image_reader_free(r);
        return err ? err->code : PHT_EFORMAT;
    }
    struct archive_entry *ae = NULL;
    for (; k < e->data_ordinal; k++) {
        int x = archive_read_next_header(r->a, &ae);
        if (x != ARCHIVE_OK && x != ARCHIVE_WARN) {
            rc = tarsafe_fail(err, PHT_EFORMAT, l, norm, "layer changed since it was indexed: %s",
                              archive_error_string(r->a) ? archive_error_string(r->a)
                                                         : "end of layer");
            r->failed = 1;
            pht_image_reader_free(r);
            return rc;
        }
    }
    if (ae == NULL || archive_entry_filetype(ae) != AE_IFREG ||
        (uint64_t)archive_entry_size(ae) != e->size) {
        rc = tarsafe_fail(err, PHT_EFORMAT, l, norm, "layer changed since it was indexed");
        r->failed = 1;
        pht_image_reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int pht_image_reader_read(pht_image_reader *r, void *buf, size_t cap, size_t *got, pht_error *err)
{
    *got = 0;
    if (r->left == 0 || cap == 0) return 0;
    size_t want = r->left < cap ? (size_t)r->left : cap;
    if (r->a == NULL) {
        ssize_t k;
        do
            k = pread(r->fd, buf, want, (off_t)r->at);
        while (k < 0 && errno == EINTR);
        if (k < 0) return reader_fail(r, PHT_EIO, strerror(errno), err);
        if (k == 0) return reader_fail(r, PHT_EFORMAT, "content ends early", err);
        r->at += (uint64_t)k;
        r->left -= (uint64_t)k;
        *got = (size_t)k;
        return 0;
    }
    la_ssize_t n = archive_read_data(r->a, buf, want);
    if (n < 0) return reader_fail(r, PHT_EFORMAT, archive_error_string(r->a), err);
    if (n == 0) return reader_fail(r, PHT_EFORMAT, "content ends early", err);
    r->left -= (uint64_t)n;
    *got = (size_t)n;
    return 0;
}

uint64_t pht_image_reader_size(const pht_image_reader *r)
{
    return r->size;
}

int img_reader_pread(pht_image_reader *r, void *buf, size_t len, uint64_t off, pht_error *err)
{
    if (r->a != NULL || off > r->size || len > r->size - off)
        return pht_error_set(err, PHT_EINVAL, "/%.300s: not read in place", r->path);
    uint64_t at = r->at - (r->size - r->left) + off; /* the file's first byte, plus off */
    return fs_pread_exact(r->fd, buf, len, at, r->path, err);
}

void pht_image_reader_free(pht_image_reader *r)
{
    if (r == NULL) return;
    const img_layer *l = r->a ? img_layer_at(r->img, r->layer) : NULL;
    if (r->a && !r->failed) {
        /* keep its place (the last reader's wins): files read in the layer's order cost one
           pass over it */
        cursor_drop(r->img);
        r->img->cursor.a = r->a;
        r->img->cursor.state = r->state;
        r->img->cursor.layer = r->layer;
        r->img->cursor.fd = l->fd;
        r->img->cursor.ordinal = r->ordinal;
    } else {
        layer_tar_close(r->a, r->state);
    }
    if (r->own_fd) close(r->fd);
    free(r->path);
    pht_image_free(r->img);
    free(r);
}
