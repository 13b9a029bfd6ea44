/*
 * The image handle: opening by reference through a transport, the manifest,
 * config and per-layer history, and the merged filesystem (stat, walk,
 * streamed file content, safe extraction).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "fs_private.h"
#include "transport_private.h"

void pht_image_opts_init(pht_image_opts *o)
{
    o->tmpdir = NULL;
    o->max_entries = 1000000;
    o->max_entry_bytes = 64ull << 30;
    o->max_layer_bytes = 64ull << 30;
    o->max_name = 4096;
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
    if (img->tmpdir == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    else if ((rc = tp->open(img, r, err)) == 0 && (rc = img_apply_history(img, err)) == 0 &&
             img->landed == IMG_LANDED_ALL)
        rc = index_build(img, err);
    if (rc) {
        pht_error_prefix(err, "%.200s", ref);
        pht_image_free(img);
        return rc;
    }
    *out = img;
    return 0;
}

void pht_image_free(pht_image *img)
{
    if (img == NULL || --img->refs > 0) return;
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
                             .comment = l->comment};
    return 0;
}

int img_land(pht_image *img, int want, pht_error *err)
{
    if (img->landed == IMG_LANDED_ALL || img->landed == want) return 0;
    if (img->tp->land == NULL)
        return pht_error_set(err, PHT_ESTATE, "%.200s: the image's layers were not read",
                             pht_image_ref_string(img->ref));
    return img->tp->land(img, want, err);
}

/* The layer an index entry names: -1 is the view. */
static const img_layer *layer_at(const pht_image *img, int i)
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
    long at = index_find(&img->index, *norm);
    if (at < 0) {
        rc = pht_error_set(err, PHT_ENOTFOUND, "/%.300s: no such file or directory in %.200s",
                           *norm, pht_image_ref_string(img->ref));
        free(*norm);
        *norm = NULL;
        return rc;
    }
    *e = img->index.v[at];
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
    size_t start = 0, skip = strlen(norm) + (norm[0] ? 1 : 0);
    if (e) start = (size_t)index_find(&img->index, norm) + 1;
    for (size_t i = start; i < img->index.n && rc == 0; i++) {
        const img_entry *x = img->index.v[i];
        if (!tarsafe_below(x->path, norm)) break;
        const char *rel = x->path + skip;
        if (!recursive && strchr(rel, '/')) continue;
        pht_image_stat st;
        fill_stat(x, &st);
        rc = cb(ud, rel, &st);
    }
    free(norm);
    return rc;
}

/* ---- streamed content ------------------------------------------------------- */

struct pht_image_reader {
    pht_image *img;
    struct archive *a;
    void *state;
    uint64_t left;
    char *path;
    int layer;
};

static int reader_fail(pht_image_reader *r, int code, const char *why, pht_error *err)
{
    return tarsafe_fail(err, code, layer_at(r->img, r->layer), r->path, "%s",
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
    r->left = e->size;
    r->layer = e->data_layer;
    const img_layer *l = layer_at(img, e->data_layer);
    r->a = layer_tar_open(l, &r->state, err);
    if (r->a == NULL) {
        pht_image_reader_free(r);
        return err ? err->code : PHT_EFORMAT;
    }
    struct archive_entry *ae = NULL;
    for (uint64_t k = 0; k < e->data_ordinal; k++) {
        int x = archive_read_next_header(r->a, &ae);
        if (x != ARCHIVE_OK && x != ARCHIVE_WARN) {
            rc = tarsafe_fail(err, PHT_EFORMAT, l, norm, "layer changed since it was indexed: %s",
                              archive_error_string(r->a) ? archive_error_string(r->a)
                                                         : "end of layer");
            pht_image_reader_free(r);
            return rc;
        }
    }
    if (ae == NULL || archive_entry_filetype(ae) != AE_IFREG ||
        (uint64_t)archive_entry_size(ae) != e->size) {
        rc = tarsafe_fail(err, PHT_EFORMAT, l, norm, "layer changed since it was indexed");
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
    la_ssize_t n = archive_read_data(r->a, buf, want);
    if (n < 0) return reader_fail(r, PHT_EFORMAT, archive_error_string(r->a), err);
    if (n == 0) return reader_fail(r, PHT_EFORMAT, "content ends early", err);
    r->left -= (uint64_t)n;
    *got = (size_t)n;
    return 0;
}

void pht_image_reader_free(pht_image_reader *r)
{
    if (r == NULL) return;
    layer_tar_close(r->a, r->state);
    free(r->path);
    pht_image_free(r->img);
    free(r);
}

/* ---- extraction ------------------------------------------------------------- */

typedef struct xctx {
    pht_image *img;
    struct archive *disk;
    const char *dest;
    const char *dir;
    unsigned char *buf;
    pht_error *err;
} xctx;

static int x_fail(xctx *x, const char *rel)
{
    return pht_error_set(x->err, PHT_EIO, "extract %s/%s: %s", x->dest, rel,
                         archive_error_string(x->disk) ? archive_error_string(x->disk) : "failed");
}

static int x_entry(void *ud, const char *rel, const pht_image_stat *st)
{
    xctx *x = ud;
    if (st->type == PHT_IMAGE_OTHER) return 0;
    size_t n = strlen(x->dest) + strlen(rel) + 2;
    char *to = malloc(n);
    struct archive_entry *ae = archive_entry_new();
    int rc = 0;
    if (to == NULL || ae == NULL) {
        rc = pht_error_set(x->err, PHT_ENOMEM, "out of memory");
        goto done;
    }
    snprintf(to, n, "%s/%s", x->dest, rel);
    archive_entry_set_pathname(ae, to);
    archive_entry_set_perm(ae, st->mode);
    archive_entry_set_uid(ae, st->uid);
    archive_entry_set_gid(ae, st->gid);
    archive_entry_set_mtime(ae, st->mtime, 0);
    if (st->type == PHT_IMAGE_DIR) {
        archive_entry_set_filetype(ae, AE_IFDIR);
    } else if (st->type == PHT_IMAGE_SYMLINK) {
        archive_entry_set_filetype(ae, AE_IFLNK);
        archive_entry_set_symlink(ae, st->link);
    } else { /* files and hard links are written as regular files */
        archive_entry_set_filetype(ae, AE_IFREG);
        archive_entry_set_size(ae, (la_int64_t)st->size);
    }
    if (archive_write_header(x->disk, ae) < ARCHIVE_WARN) {
        rc = x_fail(x, rel);
        goto done;
    }
    if (st->type == PHT_IMAGE_FILE || st->type == PHT_IMAGE_HARDLINK) {
        pht_image_reader *r;
        if ((rc = pht_image_open_file(x->img, st->path, &r, x->err))) goto done;
        size_t got;
        while ((rc = pht_image_reader_read(r, x->buf, PHT_CHUNK_SIZE, &got, x->err)) == 0 && got) {
            if (archive_write_data(x->disk, x->buf, got) != (la_ssize_t)got) {
                rc = x_fail(x, rel);
                break;
            }
        }
        pht_image_reader_free(r);
    }
    if (rc == 0 && archive_write_finish_entry(x->disk) < ARCHIVE_WARN) rc = x_fail(x, rel);
done:
    free(to);
    if (ae) archive_entry_free(ae);
    return rc;
}

int pht_image_extract(pht_image *img, const char *dir, const char *dest_dir, pht_error *err)
{
    if (mkdir(dest_dir, 0755) != 0 && errno != EEXIST)
        return pht_error_set(err, PHT_EIO, "%s: %s", dest_dir, strerror(errno));
    xctx x = {.img = img, .dest = dest_dir, .dir = dir, .err = err};
    x.disk = archive_write_disk_new();
    x.buf = malloc(PHT_CHUNK_SIZE);
    if (x.disk == NULL || x.buf == NULL) {
        if (x.disk) archive_write_free(x.disk);
        free(x.buf);
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    int flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_UNLINK;
    if (geteuid() == 0) flags |= ARCHIVE_EXTRACT_OWNER;
    archive_write_disk_set_options(x.disk, flags);
    archive_write_disk_set_standard_lookup(x.disk);
    int rc = pht_image_walk(img, dir, 1, x_entry, &x, err);
    if (archive_write_close(x.disk) != ARCHIVE_OK && rc == 0)
        rc = pht_error_set(err, PHT_EIO, "extract %s: %s", dest_dir, archive_error_string(x.disk));
    archive_write_free(x.disk);
    free(x.buf);
    return rc;
}
