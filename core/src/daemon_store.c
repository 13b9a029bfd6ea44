/*
 * A Docker engine's overlay2 layer store, read where it lies, for the
 * master-image check on docker-daemon images (image_master.c): the Engine API
 * has no call that gives one layer, and saving the image to read the headers
 * of the few layers above the master costs a tar of every layer below.
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
    archive_read_disk_set_symlink_physical(a);
    archive_read_disk_set_behavior(a, ARCHIVE_READDISK_NO_XATTR | ARCHIVE_READDISK_NO_ACL |
                                          ARCHIVE_READDISK_NO_FFLAGS |
                                          ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
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

int daemon_store_scan(pht_image *img, const char *root, size_t from, size_t to, pht_error *err)
{
    /* not overlay2, or PHT_DOCKER_STORE=0; or not root: the trusted.* marks are hidden */
    if (root == NULL || geteuid() != 0) return 1;
    char chain[HASH_SHA256_TEXT], dir[PATH_MAX];
    int rc = 0;
    for (size_t i = 0; i < to && rc == 0; i++) {
        const char *diff = img->layers[i].diff_id;
        if (!hash_sha256_valid(diff)) {
            rc = 1; /* the engine names layers by sha256 only */
            break;
        }
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
        char got[HASH_SHA256_TEXT + 8], cache[128];
        struct stat sb;
        if (layerdb_read(root, chain, "diff", got, sizeof got) != 0 || strcmp(got, diff) != 0 ||
            layerdb_read(root, chain, "cache-id", cache, sizeof cache) != 0 ||
            !cache_id_valid(cache) ||
            snprintf(dir, sizeof dir, "%s/overlay2/%s/diff", root, cache) >= (int)sizeof dir ||
            lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            rc = 1;
            break;
        }
        layer_forget_outside(&img->layers[i]);
        rc = walk_layer(&img->layers[i], dir, &img->opts, err);
    }
    /* read for every layer or for none: the caller lands them all instead */
    if (rc == 1)
        for (size_t i = from; i < to; i++)
            layer_forget_outside(&img->layers[i]);
    return rc;
}
