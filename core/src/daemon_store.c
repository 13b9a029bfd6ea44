/*
 * A Docker engine's overlay2 layer store, read where it lies, for the
 * master-image check on docker-daemon images (image_master.c): the Engine API
 * has no call that gives one layer, and saving the image to read the headers
 * of the few layers above the master costs a tar of every layer below; and
 * for the merged /opt a docker-daemon read lands (daemon_store_view), which
 * the engine would otherwise tar through a scratch container: the view is a
 * tar of its entries' headers, and every regular file is read later where
 * the layer directory holds it, so no byte of /opt is copied.
 *
 * The engine keeps each layer it has imported as a directory,
 * ROOT/overlay2/CACHE-ID/diff, made by applying the layer's tar (whiteouts
 * as character devices 0:0, opaque directories marked by the xattr
 * trusted.overlay.opaque or, rootless, user.overlay.opaque), and binds it to
 * the layer in ROOT/image/overlay2/layerdb/sha256/CHAIN-ID/ (the files
 * "diff": the layer's diff_id, and "cache-id"). A layer is read only through
 * that binding: its chain id is computed from the image's diff_ids, and its
 * "diff" must name the diff_id the engine reported, so a directory of some
 * other engine or layer is never taken for it. Each directory is walked with
 * libarchive's disk reader (no symlink followed, no file data read), and
 * every entry, a whiteout or opaque marker restored to its tar form, goes
 * through the same rule as an entry of the layer's tar (layer_note_outside).
 *
 * The store is used only when it can be read as the engine wrote it: the
 * engine's driver is overlay2, its data root is on this machine (the binding
 * files are there and agree), and the process runs as root (the trusted.*
 * xattrs are invisible to others, and without them an opaque directory
 * would pass unseen). Otherwise, or with PHT_DOCKER_STORE=0 in the
 * environment, the check saves the image as before.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "fs_private.h"
#include "hash_private.h"
#include "transport_private.h"
#include "pht/interrupt.h"

/* Cut tail off the end of path ("/a/b/c" less "/c" is "/a/b"); -1 if path does not end so. */
static int strip_tail(char *path, const char *tail)
{
    size_t n = strlen(path), t = strlen(tail);
    if (n <= t || strcmp(path + n - t, tail) != 0) return -1;
    path[n - t] = '\0';
    return 0;
}

char *daemon_store_root(const cJSON *graph)
{
    const char *off = getenv("PHT_DOCKER_STORE");
    if (off && (strcmp(off, "0") == 0 || strcmp(off, "off") == 0 || strcmp(off, "no") == 0))
        return NULL;
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(graph, "Name"));
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(graph, "Data");
    const char *upper = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "UpperDir"));
    if (name == NULL || strcmp(name, "overlay2") != 0 || upper == NULL || upper[0] != '/')
        return NULL;
    /* UpperDir is ROOT/overlay2/CACHE-ID/diff */
    char *root = strdup(upper);
    if (root == NULL) return NULL;
    char *slash;
    if (strip_tail(root, "/diff") != 0 || (slash = strrchr(root, '/')) == NULL || slash == root) {
        free(root);
        return NULL;
    }
    *slash = '\0';
    if (strip_tail(root, "/overlay2") != 0 || root[0] == '\0') {
        free(root);
        return NULL;
    }
    return root;
}

/* Read ROOT/image/overlay2/layerdb/sha256/HEX/file into buf (trailing space trimmed); 1 if
   absent or unreadable. */
static int layerdb_read(const char *root, const char *chain, const char *file, char *buf,
                        size_t cap)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/image/overlay2/layerdb/sha256/%s/%s", root,
                 chain + strlen("sha256:"), file) >= (int)sizeof path)
        return 1;
    char *text = NULL;
    size_t len = 0;
    pht_error e;
    if (fs_read_small(path, cap - 1, &text, &len, &e) != 0) return 1;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        len--;
    memcpy(buf, text, len);
    buf[len] = '\0';
    free(text);
    return 0;
}

/* A cache id names one directory under ROOT/overlay2: letters and digits only. */
static int cache_id_valid(const char *s)
{
    if (s[0] == '\0') return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return 0;
    return 1;
}

/* 1 if the directory at path carries the overlay opaque mark "y". */
static int opaque(const char *path)
{
    static const char *const names[] = {"trusted.overlay.opaque", "user.overlay.opaque"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char v[4];
        ssize_t n = lgetxattr(path, names[i], v, sizeof v);
        if (n == 1 && v[0] == 'y') return 1;
    }
    return 0;
}

/* 1 if the directory at path carries an overlay mark the engine's layers never hold. */
static int foreign_mark(const char *path)
{
    static const char *const names[] = {"trusted.overlay.redirect", "user.overlay.redirect",
                                        "trusted.overlay.metacopy", "user.overlay.metacopy"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (lgetxattr(path, names[i], NULL, 0) >= 0) return 1;
    return 0;
}

/* Give entry e (named name in the layer) to the master rule; *count against the cap. */
static int note(img_layer *l, struct archive_entry *e, const char *name, uint64_t *count,
                const pht_image_opts *o, pht_error *err)
{
    if (++*count > o->max_entries)
        return tarsafe_fail(err, PHT_ELIMIT, l, NULL, "more than the cap of %llu entries",
                            (unsigned long long)o->max_entries);
    archive_entry_copy_pathname(e, name);
    return layer_note_outside(l, e, err);
}

/* A disk reader as the store is read: no symlink followed, no xattr, ACL or flag read, no
   other mount entered. */
static void disk_reader_setup(struct archive *a)
{
    archive_read_disk_set_symlink_physical(a);
    archive_read_disk_set_behavior(a, ARCHIVE_READDISK_NO_XATTR | ARCHIVE_READDISK_NO_ACL |
                                          ARCHIVE_READDISK_NO_FFLAGS |
                                          ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
}

/*
 * Walk the layer directory dir: every entry as its tar would hold it. 0; 1 if the directory
 * holds what this reader does not know (the store is not read then); PHT_E* with err set.
 */
static int walk_layer(img_layer *l, const char *dir, const pht_image_opts *o, pht_error *err)
{
    struct archive *a = archive_read_disk_new();
    struct archive_entry *e = archive_entry_new(), *mark = archive_entry_new();
    int rc = 0;
    uint64_t count = 0;
    char *name = NULL;
    if (a == NULL || e == NULL || mark == NULL) {
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        goto done;
    }
    disk_reader_setup(a);
    if (archive_read_disk_open(a, dir) != ARCHIVE_OK) {
        rc = pht_error_set(err, PHT_EIO, "the engine's layer directory %.300s: %s", dir,
                           archive_error_string(a));
        goto done;
    }
    size_t dlen = strlen(dir);
    int r;
    while ((r = archive_read_next_header2(a, e)) == ARCHIVE_OK) {
        if ((rc = pht_interrupt_check(err))) goto done;
        const char *full = archive_entry_sourcepath(e);
        if (full == NULL) full = archive_entry_pathname(e);
        if (full == NULL || strncmp(full, dir, dlen) != 0 || (full[dlen] && full[dlen] != '/')) {
            rc = pht_error_set(err, PHT_EIO,
                               "the engine's layer directory %.300s: an entry "
                               "outside it",
                               dir);
            goto done;
        }
        const char *rel = full[dlen] ? full + dlen + 1 : "";
        free(name);
        /* room for "./", ".wh." and "/.wh..wh..opq" around rel */
        size_t cap = strlen(rel) + 24;
        if ((name = malloc(cap)) == NULL) {
            rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
            goto done;
        }
        unsigned ft = (unsigned)archive_entry_filetype(e);
        if (ft == AE_IFCHR && archive_entry_rdev(e) == 0) {
            /* a whiteout: ".wh.NAME" in its directory */
            const char *slash = strrchr(rel, '/');
            size_t dl = slash ? (size_t)(slash - rel) + 1 : 0;
            snprintf(name, cap, "%.*s.wh.%s", (int)dl, rel, rel + dl);
            archive_entry_clear(mark);
            archive_entry_set_filetype(mark, AE_IFREG);
            archive_entry_set_perm(mark, 0);
            archive_entry_set_size(mark, 0);
            if ((rc = note(l, mark, name, &count, o, err))) goto done;
            continue;
        }
        snprintf(name, cap, "%s", rel[0] ? rel : "./");
        if ((rc = note(l, e, name, &count, o, err))) goto done;
        if (ft == AE_IFDIR) {
            if (foreign_mark(full)) {
                rc = 1;
                goto done;
            }
            if (opaque(full)) {
                snprintf(name, cap, "%s%s.wh..wh..opq", rel, rel[0] ? "/" : "");
                archive_entry_clear(mark);
                archive_entry_set_filetype(mark, AE_IFREG);
                archive_entry_set_perm(mark, 0);
                archive_entry_set_size(mark, 0);
                if ((rc = note(l, mark, name, &count, o, err))) goto done;
            }
            if (archive_read_disk_descend(a) != ARCHIVE_OK) {
                rc = pht_error_set(err, PHT_EIO, "the engine's layer directory %.300s: %s", dir,
                                   archive_error_string(a));
                goto done;
            }
        }
    }
    if (r != ARCHIVE_EOF)
        rc = pht_error_set(err, PHT_EIO, "the engine's layer directory %.300s: %s", dir,
                           archive_error_string(a));
done:
    free(name);
    if (e) archive_entry_free(e);
    if (mark) archive_entry_free(mark);
    if (a) archive_read_free(a);
    return rc;
}

/*
 * The directories of layers [from, to) of img in the store at root, dirs[i - from] each
 * (PATH_MAX bytes): 0; 1 if the store cannot be read as this engine's for one of them
 * (not root, a layer not bound to its diff_id by the engine's records); PHT_E* with err set.
 */
static int bind_dirs(const pht_image *img, const char *root, size_t from, size_t to,
                     char (*dirs)[PATH_MAX], pht_error *err)
{
    /* not overlay2, or PHT_DOCKER_STORE=0; or not root: the trusted.* marks are hidden */
    if (root == NULL || geteuid() != 0) return 1;
    char chain[HASH_SHA256_TEXT];
    int rc = 0;
    for (size_t i = 0; i < to && rc == 0; i++) {
        const char *diff = img->layers[i].diff_id;
        if (!hash_sha256_valid(diff)) return 1; /* the engine names layers by sha256 only */
        if (i == 0) {
            memcpy(chain, diff, HASH_SHA256_TEXT - 1); /* valid: 71 characters */
            chain[HASH_SHA256_TEXT - 1] = '\0';
        } else {
            char text[2 * IMG_DIGEST_MAX + 2];
            int n = snprintf(text, sizeof text, "%s %s", chain, diff);
            if ((rc = hash_sha256_buf(text, (size_t)n, chain, err))) break;
        }
        if (i < from) continue;
        /* bound to the layer by the engine's own records, or the store is not this engine's */
        char got[HASH_SHA256_TEXT + 8], cache[128], *dir = dirs[i - from];
        struct stat sb;
        if (layerdb_read(root, chain, "diff", got, sizeof got) != 0 || strcmp(got, diff) != 0 ||
            layerdb_read(root, chain, "cache-id", cache, sizeof cache) != 0 ||
            !cache_id_valid(cache) ||
            snprintf(dir, PATH_MAX, "%s/overlay2/%s/diff", root, cache) >= PATH_MAX ||
            lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return 1;
    }
    return rc;
}

int daemon_store_scan(pht_image *img, const char *root, size_t from, size_t to, pht_error *err)
{
    if (to <= from) return 0;
    char(*dirs)[PATH_MAX] = malloc((to - from) * sizeof *dirs);
    if (dirs == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    int rc = bind_dirs(img, root, from, to, dirs, err);
    for (size_t i = from; i < to && rc == 0; i++) {
        layer_forget_outside(&img->layers[i]);
        rc = walk_layer(&img->layers[i], dirs[i - from], &img->opts, err);
    }
    /* read for every layer or for none: the caller lands them all instead */
    if (rc == 1)
        for (size_t i = from; i < to; i++)
            layer_forget_outside(&img->layers[i]);
    free(dirs);
    return rc;
}

/* ---- the merged /opt (daemon_store_view) ------------------------------------------- */

/*
 * What the view knows of a path so far, the layers read from the top down: whether it shows
 * (a layer above gave its entry), and the layer where overlay's merge of it stops (its entry
 * there is a whiteout, a non-directory or an opaque directory): nothing at or below that path
 * in the layers under it shows. NO_STOP: the merge goes on down.
 */
#define NO_STOP ((size_t)-1)

typedef struct rec {
    char *path; /* "opt/..." */
    int shown;
    size_t stop;
} rec;

typedef struct view {
    rec *slots; /* open addressing, cap a power of two */
    size_t cap, n;
    struct archive *out;
    const pht_image_opts *o;
    daemon_store_src *src; /* where the regular files' bytes lie */
    size_t nsrc, srccap;
    uint64_t entries;
    pht_error *err;
} view;

static size_t path_hash(const char *p, size_t n)
{
    size_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211u;
    return h;
}

/* The record of p[0, n), or NULL. */
static rec *rec_find(const view *v, const char *p, size_t n)
{
    if (v->cap == 0) return NULL;
    for (size_t i = path_hash(p, n) & (v->cap - 1);; i = (i + 1) & (v->cap - 1)) {
        rec *r = &v->slots[i];
        if (r->path == NULL) return NULL;
        if (strncmp(r->path, p, n) == 0 && r->path[n] == '\0') return r;
    }
}

/* The record of p, made (not shown, no stop) if there is none; NULL when out of memory. */
static rec *rec_get(view *v, const char *p)
{
    rec *r = rec_find(v, p, strlen(p));
    if (r) return r;
    if (2 * (v->n + 1) > v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 1024;
        rec *s = calloc(cap, sizeof *s);
        if (s == NULL) return NULL;
        for (size_t k = 0; k < v->cap; k++) {
            if (v->slots[k].path == NULL) continue;
            size_t i = path_hash(v->slots[k].path, strlen(v->slots[k].path)) & (cap - 1);
            while (s[i].path)
                i = (i + 1) & (cap - 1);
            s[i] = v->slots[k];
        }
        free(v->slots);
        v->slots = s;
        v->cap = cap;
    }
    size_t i = path_hash(p, strlen(p)) & (v->cap - 1);
    while (v->slots[i].path)
        i = (i + 1) & (v->cap - 1);
    if ((v->slots[i].path = strdup(p)) == NULL) return NULL;
    v->slots[i].shown = 0;
    v->slots[i].stop = NO_STOP;
    v->n++;
    return &v->slots[i];
}

/*
 * Whether path, met in layer l, shows in the view: 1 it does; 0 a layer above gave it already
 * (a directory's lower contents still may show); -1 hidden, with all below it (the merge of it
 * or of a directory above it stopped in a layer above).
 */
static int visible(const view *v, const char *path, size_t l)
{
    for (const char *s = strchr(path, '/'); s; s = strchr(s + 1, '/')) {
        const rec *r = rec_find(v, path, (size_t)(s - path));
        if (r && r->stop != NO_STOP && r->stop > l) return -1;
    }
    const rec *r = rec_find(v, path, strlen(path));
    if (r == NULL) return 1;
    if (r->stop != NO_STOP && r->stop > l) return -1;
    return r->shown ? 0 : 1;
}

/* Note path as shown (show) and, if stops, its merge stopping at layer l. */
static int mark(view *v, const char *path, size_t l, int show, int stops)
{
    rec *r = rec_get(v, path);
    if (r == NULL) return pht_error_set(v->err, PHT_ENOMEM, "out of memory");
    if (show) r->shown = 1;
    if (stops && r->stop == NO_STOP) r->stop = l;
    return 0;
}

/* Record that the view's regular file name (size bytes) is read from full. */
static int note_src(view *v, const char *name, const char *full, uint64_t size)
{
    if (size > v->o->max_entry_bytes)
        return pht_error_set(v->err, PHT_ELIMIT, "/%.300s: size %llu exceeds the cap of %llu bytes",
                             name, (unsigned long long)size,
                             (unsigned long long)v->o->max_entry_bytes);
    if (v->nsrc == v->srccap) {
        size_t cap = v->srccap ? 2 * v->srccap : 64;
        daemon_store_src *p = realloc(v->src, cap * sizeof *p);
        if (p == NULL) return pht_error_set(v->err, PHT_ENOMEM, "out of memory");
        v->src = p;
        v->srccap = cap;
    }
    daemon_store_src *s = &v->src[v->nsrc];
    s->name = strdup(name);
    s->full = strdup(full);
    s->size = size;
    if (s->name == NULL || s->full == NULL) {
        free(s->name);
        free(s->full);
        return pht_error_set(v->err, PHT_ENOMEM, "out of memory");
    }
    v->nsrc++;
    return 0;
}

void daemon_store_srcs_free(daemon_store_src *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) {
        free(s[i].name);
        free(s[i].full);
    }
    free(s);
}

/* Write the entry e of the store (path in the view: name) to the view's archive. */
static int emit(view *v, struct archive_entry *e, const char *name, const char *full)
{
    if (++v->entries > v->o->max_entries)
        return pht_error_set(v->err, PHT_ELIMIT, "/opt: more than the cap of %llu entries",
                             (unsigned long long)v->o->max_entries);
    unsigned ft = (unsigned)archive_entry_filetype(e);
    if (ft == AE_IFSOCK) return 0; /* a tar holds no sockets */
    struct archive_entry *out = archive_entry_new();
    if (out == NULL) return pht_error_set(v->err, PHT_ENOMEM, "out of memory");
    archive_entry_set_pathname(out, name);
    archive_entry_set_filetype(out, ft);
    archive_entry_set_perm(out, archive_entry_perm(e));
    archive_entry_set_uid(out, archive_entry_uid(e));
    archive_entry_set_gid(out, archive_entry_gid(e));
    archive_entry_set_mtime(out, archive_entry_mtime(e), archive_entry_mtime_nsec(e));
    if (ft == AE_IFLNK) archive_entry_copy_symlink(out, archive_entry_symlink(e));
    if (ft == AE_IFCHR || ft == AE_IFBLK) archive_entry_set_rdev(out, archive_entry_rdev(e));
    /* a regular file's bytes stay in the store: the view's entry has none */
    archive_entry_set_size(out, 0);
    int rc = ft == AE_IFREG ? note_src(v, name, full, (uint64_t)archive_entry_size(e)) : 0;
    if (rc == 0 && archive_write_header(v->out, out) != ARCHIVE_OK)
        rc = pht_error_set(v->err, PHT_EIO, "temporary file: %s", archive_error_string(v->out));
    archive_entry_free(out);
    if (rc == 0 && archive_write_finish_entry(v->out) != ARCHIVE_OK)
        rc = pht_error_set(v->err, PHT_EIO, "temporary file: %s", archive_error_string(v->out));
    return rc;
}

/* Add layer l's /opt (the directory opt under dir) to the view: 0, 1 (not readable here), PHT_E*.
 */
static int view_layer(view *v, const char *dir, size_t l)
{
    char top[PATH_MAX];
    struct stat sb;
    if (snprintf(top, sizeof top, "%s/opt", dir) >= (int)sizeof top) return 1;
    if (lstat(top, &sb) != 0) return errno == ENOENT ? 0 : 1;
    if (S_ISCHR(sb.st_mode) && sb.st_rdev == 0) /* /opt whited out */
        return visible(v, "opt", l) >= 0 ? mark(v, "opt", l, 0, 1) : 0;
    if (!S_ISDIR(sb.st_mode)) return 1; /* /opt a file or link: as the engine has it */
    struct archive *a = archive_read_disk_new();
    struct archive_entry *e = archive_entry_new();
    char *name = NULL;
    int rc = 0, r;
    if (a == NULL || e == NULL) {
        rc = pht_error_set(v->err, PHT_ENOMEM, "out of memory");
        goto done;
    }
    disk_reader_setup(a);
    if (archive_read_disk_open(a, top) != ARCHIVE_OK) {
        rc = 1;
        goto done;
    }
    size_t tlen = strlen(top);
    while ((r = archive_read_next_header2(a, e)) == ARCHIVE_OK) {
        if ((rc = pht_interrupt_check(v->err))) goto done;
        const char *full = archive_entry_sourcepath(e);
        if (full == NULL) full = archive_entry_pathname(e);
        if (full == NULL || strncmp(full, top, tlen) != 0 || (full[tlen] && full[tlen] != '/')) {
            rc = 1;
            goto done;
        }
        const char *rel = full[tlen] ? full + tlen + 1 : "";
        free(name);
        size_t cap = strlen(rel) + 8;
        if ((name = malloc(cap)) == NULL) {
            rc = pht_error_set(v->err, PHT_ENOMEM, "out of memory");
            goto done;
        }
        snprintf(name, cap, "opt%s%s", rel[0] ? "/" : "", rel);
        unsigned ft = (unsigned)archive_entry_filetype(e);
        int whiteout = ft == AE_IFCHR && archive_entry_rdev(e) == 0;
        int dir_opaque = ft == AE_IFDIR && opaque(full);
        if (ft == AE_IFDIR && foreign_mark(full)) {
            rc = 1; /* redirects, metacopy: not a layer as the engine imports them */
            goto done;
        }
        int vis = visible(v, name, l);
        if (vis >= 0) {
            /* a whiteout, a non-directory or an opaque directory ends the merge here */
            int stops = whiteout || ft != AE_IFDIR || dir_opaque;
            int show = !whiteout && vis == 1;
            rc = mark(v, name, l, show, stops);
            if (rc == 0 && show) rc = emit(v, e, name, full);
        }
        if (rc) goto done;
        /* a hidden directory hides all below it: not walked */
        if (ft == AE_IFDIR && vis >= 0 && archive_read_disk_descend(a) != ARCHIVE_OK) {
            rc = 1;
            goto done;
        }
    }
    if (r != ARCHIVE_EOF) rc = 1;
done:
    free(name);
    if (e) archive_entry_free(e);
    if (a) archive_read_free(a);
    return rc;
}

static la_ssize_t view_write(struct archive *a, void *ud, const void *p, size_t n)
{
    pht_error e;
    if (fs_write_all(*(int *)ud, p, n, "temporary file", &e) != 0) {
        archive_set_error(a, EIO, "%s", e.message);
        return -1;
    }
    return (la_ssize_t)n;
}

int daemon_store_view(const pht_image *img, const char *root, int fd, daemon_store_src **srcs,
                      size_t *nsrcs, pht_error *err)
{
    *srcs = NULL;
    *nsrcs = 0;
    size_t n = img->nlayers;
    if (n == 0) return 1;
    char(*dirs)[PATH_MAX] = malloc(n * sizeof *dirs);
    view v = {.o = &img->opts, .err = err};
    int rc = dirs ? bind_dirs(img, root, 0, n, dirs, err)
                  : pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc == 0 && (v.out = archive_write_new()) == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc == 0) {
        archive_write_set_format_pax_restricted(v.out);
        archive_write_set_bytes_per_block(v.out, 0);
        if (archive_write_open2(v.out, &fd, NULL, view_write, NULL, NULL) != ARCHIVE_OK)
            rc = pht_error_set(err, PHT_EIO, "temporary file: %s", archive_error_string(v.out));
    }
    /* the top layer first: what it holds hides the same paths below */
    for (size_t i = n; rc == 0 && i-- > 0;)
        rc = view_layer(&v, dirs[i], i);
    if (rc == 0) {
        const rec *top = rec_find(&v, "opt", 3);
        if (top == NULL || !top->shown)
            rc = pht_error_set(err, PHT_ENOTFOUND, "no /opt in the engine's store");
    }
    if (rc == 0 && archive_write_close(v.out) != ARCHIVE_OK)
        rc = pht_error_set(err, PHT_EIO, "temporary file: %s", archive_error_string(v.out));
    if (v.out) archive_write_free(v.out);
    if (rc == 0) {
        *srcs = v.src;
        *nsrcs = v.nsrc;
    } else {
        daemon_store_srcs_free(v.src, v.nsrc);
    }
    for (size_t k = 0; k < v.cap; k++)
        free(v.slots[k].path);
    free(v.slots);
    free(dirs);
    return rc;
}
