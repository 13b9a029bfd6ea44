/*
 * The merged-filesystem index: path -> (layer, type, size, mode, owner,
 * mtime, link), built bottom-up with one streaming pass per layer.
 *
 * Each pass collects the layer's entries and its deletions: a whiteout
 * `.wh.NAME` deletes NAME and its subtree, an opaque marker `.wh..wh..opq`
 * deletes everything below its directory, and a non-directory entry hides
 * whatever lower content lay below its path. Deletions and replacements apply
 * to the lower layers only; then the layer's entries merge into the sorted
 * index. The index is kept in Docker's walk order, so a directory's subtree
 * is the contiguous run after it.
 *
 * Cost stays linear in the bytes of the entries' paths on hostile layers:
 * each layer is sorted once, its deletions are applied in one sweep along the
 * walk order, and directories that only appear as parents are never stored:
 * in walk order an ancestor of an entry that is not an ancestor of the entry
 * before it is new, so index_walk derives them on the fly, and index_lookup
 * finds one as a path below which the next stored entry lies. The path and
 * link bytes held at once count against max_path_bytes.
 */
#include <stdlib.h>
#include <string.h>

#include <archive.h>
#include <archive_entry.h>

#include "hash_private.h"
#include "image_private.h"

typedef struct del {
    const char *path; /* own, or an entry's path */
    size_t len;
    char *own;
    int self; /* the path itself goes too, not only what lies below it */
} del;

typedef struct scan {
    pht_image *img;
    int li;
    img_layer *l;
    img_entry **u; /* this layer's entries, in archive order */
    size_t un, ucap;
    size_t *slot; /* open-addressing table of u indexes + 1 */
    size_t nslot;
    del *d;
    size_t dn, dcap;
    uint64_t bytes; /* path and link bytes held by the index and this layer */
    /* this layer's last regular file, whose data ends where the next header starts */
    img_entry *pending;
    uint64_t pending_span; /* its size rounded up to whole 512-byte tar blocks */
} scan;

/*
 * The pending file's bytes start where the next header (or the end) does,
 * less its whole blocks. The offset is kept only when it is consistent: past
 * the file's own header, and inside the blob.
 */
static void resolve_pending(scan *s, uint64_t next)
{
    img_entry *e = s->pending;
    s->pending = NULL;
    if (e == NULL || next == IMG_NO_OFFSET || next < s->pending_span + 512) return;
    uint64_t at = next - s->pending_span;
    if (at + e->size <= s->l->length) e->data_offset = at;
}

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint64_t entry_bytes(const img_entry *e)
{
    return e->plen + 1 + (e->link ? strlen(e->link) + 1 : 0);
}

static void entry_free(img_entry *e)
{
    if (e == NULL) return;
    free(e->path);
    free(e->link);
    free(e->source);
    free(e);
}

/* Free an entry the budget counted. */
static void entry_drop(scan *s, img_entry *e)
{
    s->bytes -= entry_bytes(e);
    entry_free(e);
}

/* Count n more bytes held against max_path_bytes. */
static int charge(scan *s, uint64_t n, const char *entry, pht_error *err)
{
    uint64_t cap = s->img->opts.max_path_bytes;
    if (cap && s->bytes + n > cap)
        return tarsafe_fail(err, PHT_ELIMIT, s->l, entry,
                            "the paths and link targets of the image exceed the cap of %llu "
                            "bytes (max_path_bytes)",
                            (unsigned long long)cap);
    s->bytes += n;
    return 0;
}

static long u_find(const scan *s, const char *path)
{
    if (s->nslot == 0) return -1;
    for (size_t i = hash_str(path) & (s->nslot - 1);; i = (i + 1) & (s->nslot - 1)) {
        if (s->slot[i] == 0) return -1;
        if (strcmp(s->u[s->slot[i] - 1]->path, path) == 0) return (long)(s->slot[i] - 1);
    }
}

static int u_rehash(scan *s)
{
    size_t n = s->nslot ? s->nslot * 2 : 1024;
    size_t *t = calloc(n, sizeof *t);
    if (t == NULL) return PHT_ENOMEM;
    free(s->slot);
    s->slot = t;
    s->nslot = n;
    for (size_t k = 0; k < s->un; k++) {
        size_t i = hash_str(s->u[k]->path) & (n - 1);
        while (t[i])
            i = (i + 1) & (n - 1);
        t[i] = k + 1;
    }
    return 0;
}

static int u_add(scan *s, img_entry *e)
{
    long at = u_find(s, e->path);
    if (at >= 0) { /* a later entry of the same path wins */
        entry_drop(s, s->u[at]);
        s->u[at] = e;
        return 0;
    }
    if (s->un == s->ucap) {
        size_t cap = s->ucap ? s->ucap * 2 : 256;
        img_entry **v = realloc(s->u, cap * sizeof *v);
        if (v == NULL) return PHT_ENOMEM;
        s->u = v;
        s->ucap = cap;
    }
    s->u[s->un++] = e;
    if (s->un * 2 > s->nslot) return u_rehash(s);
    size_t i = hash_str(e->path) & (s->nslot - 1);
    while (s->slot[i])
        i = (i + 1) & (s->nslot - 1);
    s->slot[i] = s->un;
    return 0;
}

/*
 * Record a deletion of path[0, len). own: path is the caller's malloc'ed copy
 * and passes to the list (freed on failure), else it outlives the layer's scan.
 */
static int d_add(scan *s, const char *path, size_t len, char *own, int self)
{
    if (s->dn == s->dcap) {
        size_t cap = s->dcap ? s->dcap * 2 : 64;
        del *v = realloc(s->d, cap * sizeof *v);
        if (v == NULL) {
            free(own);
            return PHT_ENOMEM;
        }
        s->d = v;
        s->dcap = cap;
    }
    s->d[s->dn++] = (del){path, len, own, self};
    return 0;
}

/* 1 if p[0, pn) lies strictly below dir[0, dn) ("" is the root). */
static int below_n(const char *p, size_t pn, const char *dir, size_t dn)
{
    if (dn == 0) return pn > 0;
    return pn > dn && p[dn] == '/' && memcmp(p, dir, dn) == 0;
}

/* The first position whose entry is not before path[0, len) in walk order. */
static size_t lower_bound(const img_index *ix, const char *path, size_t len)
{
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (hash_path_walk_cmpn(ix->v[mid]->path, ix->v[mid]->plen, path, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

long index_find(const img_index *ix, const char *path)
{
    size_t len = strlen(path), at = lower_bound(ix, path, len);
    if (at < ix->n && ix->v[at]->plen == len && memcmp(ix->v[at]->path, path, len) == 0)
        return (long)at;
    return -1;
}

static void implicit_entry(img_entry *d, char *path, size_t len, const img_entry *first)
{
    *d = (img_entry){.path = path,
                     .plen = len,
                     .type = PHT_IMAGE_DIR,
                     .mode = 0755,
                     .layer = first->layer,
                     .data_layer = first->layer};
}

int index_lookup(img_index *ix, const char *path, const img_entry **out)
{
    *out = NULL;
    size_t len = strlen(path), at = lower_bound(ix, path, len);
    if (at == ix->n) return PHT_ENOTFOUND;
    const img_entry *e = ix->v[at];
    if (e->plen == len && memcmp(e->path, path, len) == 0) {
        *out = e;
        return 0;
    }
    if (!below_n(e->path, e->plen, path, len)) return PHT_ENOTFOUND;
    char *p = strdup(path); /* a parent no layer named; e is its first entry */
    if (p == NULL) return PHT_ENOMEM;
    free(ix->implicit.path);
    implicit_entry(&ix->implicit, p, len, e);
    *out = &ix->implicit;
    return 0;
}

int index_walk(const img_index *ix, const char *dir, int recursive, index_visit visit, void *ud,
               pht_error *err)
{
    size_t dl = strlen(dir), skip = dl ? dl + 1 : 0;
    size_t i = dl ? lower_bound(ix, dir, dl) : 0;
    if (i < ix->n && ix->v[i]->plen == dl && memcmp(ix->v[i]->path, dir, dl) == 0) i++;
    char *buf = NULL; /* an entry's path, cut at one of its parents in turn */
    size_t bcap = 0;
    const img_entry *prev = NULL;
    int rc = 0;
    for (; i < ix->n && rc == 0; i++) {
        const img_entry *e = ix->v[i];
        if (!below_n(e->path, e->plen, dir, dl)) break;
        /* Parents up to the end of the prefix shared with prev (a parent of
           prev, or prev itself) were visited with it; the rest are new. */
        size_t from = skip;
        if (prev) {
            size_t m =
                hash_path_common(prev->path, e->path, prev->plen < e->plen ? prev->plen : e->plen);
            if (m == prev->plen) m++;
            if (m > from) from = m;
        }
        const char *first_slash = memchr(e->path + skip, '/', e->plen - skip);
        int copied = 0;
        for (const char *c = memchr(e->path + from, '/', from < e->plen ? e->plen - from : 0);
             c && rc == 0; c = memchr(c + 1, '/', e->plen - (size_t)(c + 1 - e->path))) {
            if (!recursive && c != first_slash) break;
            if (!copied) {
                if (bcap < e->plen + 1) {
                    char *b = realloc(buf, e->plen + 1);
                    if (b == NULL) {
                        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
                        break;
                    }
                    buf = b;
                    bcap = e->plen + 1;
                }
                memcpy(buf, e->path, e->plen + 1);
                copied = 1;
            }
            size_t k = (size_t)(c - e->path);
            buf[k] = '\0';
            img_entry parent;
            implicit_entry(&parent, buf, k, e);
            rc = visit(ud, buf + skip, &parent);
            buf[k] = '/';
        }
        if (rc == 0 && (recursive || first_slash == NULL)) rc = visit(ud, e->path + skip, e);
        prev = e;
    }
    free(buf);
    return rc;
}

/* A hard link's target must already be in the image: this layer or below. */
static int resolve_hardlink(scan *s, img_entry *e, const char *raw, pht_error *err)
{
    char *t = NULL;
    const char *why;
    if (raw[0] == '/')
        return tarsafe_fail(err, PHT_EUNSAFE, s->l, e->path,
                            "hard link target \"%.300s\" is absolute", raw);
    int rc = tarsafe_path(raw, s->img->opts.max_name, &t, &why);
    if (rc) return tarsafe_fail(err, rc, s->l, e->path, "hard link target: %s", why);
    const img_entry *to = NULL;
    long at = u_find(s, t);
    if (at >= 0)
        to = s->u[at];
    else if ((at = index_find(&s->img->index, t)) >= 0)
        to = s->img->index.v[at];
    if (to == NULL || (to->type != PHT_IMAGE_FILE && to->type != PHT_IMAGE_HARDLINK)) {
        rc = tarsafe_fail(err, PHT_EUNSAFE, s->l, e->path,
                          to ? "hard link target \"%.300s\" is not a regular file"
                             : "hard link target \"%.300s\" is not in the image",
                          t);
        free(t);
        return rc;
    }
    e->link = t;
    e->size = to->size;
    e->data_layer = to->data_layer;
    e->data_ordinal = to->data_ordinal;
    e->data_offset = to->data_offset;
    return 0;
}

static int on_entry(void *ud, struct archive_entry *ae, uint64_t ordinal, pht_error *err)
{
    scan *s = ud;
    resolve_pending(s, s->l->scan_pos);
    const char *name = archive_entry_pathname(ae), *why;
    char *path = NULL;
    int rc = tarsafe_path(name, s->img->opts.max_name, &path, &why);
    if (rc) return tarsafe_fail(err, rc, s->l, name ? name : "", "%s", why);
    if (path[0] == '\0') { /* the root itself */
        free(path);
        return 0;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t plen = slash ? (size_t)(slash - path) : 0;
    if (strncmp(base, ".wh.", 4) == 0) {
        if (strcmp(base, ".wh..wh..opq") == 0) {
            /* A marker at the root deletes nothing, as it always has here. */
            if (plen && (rc = charge(s, plen + 1, name, err)) != 0) {
                free(path);
                return rc;
            }
            if (plen) {
                rc = d_add(s, path, plen, path, 0);
                path = NULL;
            }
        } else if (strncmp(base, ".wh..wh.", 8) == 0)
            rc = 0; /* aufs bookkeeping */
        else if (strcmp(base + 4, "") == 0 || strcmp(base + 4, ".") == 0 ||
                 strcmp(base + 4, "..") == 0) {
            /* Docker would remove the directory itself or its parent: refuse */
            rc = tarsafe_fail(err, PHT_EUNSAFE, s->l, name,
                              "whiteout names its own directory or a parent");
            free(path);
            return rc;
        } else {
            /* ".wh.NAME" deletes parent/NAME: path minus the ".wh." */
            size_t n = plen + (plen ? 1 : 0);
            memmove(path + n, base + 4, strlen(base + 4) + 1);
            size_t len = strlen(path);
            if ((rc = charge(s, len + 1, name, err)) != 0) {
                free(path);
                return rc;
            }
            rc = d_add(s, path, len, path, 1);
            path = NULL;
        }
        free(path);
        return rc ? pht_error_set(err, rc, "out of memory") : 0;
    }
    img_entry *e = calloc(1, sizeof *e);
    if (e == NULL) {
        free(path);
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    e->path = path;
    e->plen = strlen(path);
    e->mode = (uint32_t)archive_entry_perm(ae) & 07777;
    e->uid = archive_entry_uid(ae);
    e->gid = archive_entry_gid(ae);
    e->mtime = archive_entry_mtime(ae);
    e->layer = e->data_layer = s->li;
    e->ordinal = e->data_ordinal = ordinal;
    e->data_offset = IMG_NO_OFFSET;
    const char *hl = archive_entry_hardlink(ae);
    switch (archive_entry_filetype(ae)) {
    case AE_IFREG:
        e->type = PHT_IMAGE_FILE;
        break;
    case AE_IFDIR:
        e->type = PHT_IMAGE_DIR;
        break;
    case AE_IFLNK:
        e->type = PHT_IMAGE_SYMLINK;
        break;
    default:
        e->type = PHT_IMAGE_OTHER;
        break;
    }
    if (hl) {
        e->type = PHT_IMAGE_HARDLINK;
        rc = resolve_hardlink(s, e, hl, err);
    } else if (e->type == PHT_IMAGE_SYMLINK) {
        const char *t = archive_entry_symlink(ae);
        if (tarsafe_symlink(path, t, &why))
            rc = tarsafe_fail(err, PHT_EUNSAFE, s->l, path, "%s (target \"%.300s\")", why,
                              t ? t : "");
        else if ((e->link = strdup(t)) == NULL)
            rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    } else if (e->type == PHT_IMAGE_FILE) {
        e->size = (uint64_t)(archive_entry_size(ae) > 0 ? archive_entry_size(ae) : 0);
    }
    if (rc == 0 && (rc = charge(s, entry_bytes(e), path, err)) == 0 && u_add(s, e) != 0) {
        s->bytes -= entry_bytes(e);
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    if (rc) {
        entry_free(e);
        return rc;
    }
    /* a plain, non-sparse file with bytes: its offset is known at the next header */
    if (e->type == PHT_IMAGE_FILE && e->size > 0 && s->l->scan_pos != IMG_NO_OFFSET &&
        archive_entry_sparse_count(ae) == 0 && (uint64_t)archive_entry_size(ae) == e->size) {
        s->pending = e;
        s->pending_span = (e->size + 511) / 512 * 512;
    }
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    const img_entry *x = *(img_entry *const *)a, *y = *(img_entry *const *)b;
    return hash_path_walk_cmpn(x->path, x->plen, y->path, y->plen);
}

static int cmp_del(const void *a, const void *b)
{
    const del *x = a, *y = b;
    return hash_path_walk_cmpn(x->path, x->len, y->path, y->len);
}

static int same_n(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && memcmp(a, b, an) == 0;
}

/*
 * Apply the layer's deletions to the lower index and merge its entries in.
 * With the deletions in walk order, the ones that cover a lower entry are its
 * ancestors (and itself), all at or before it; the outermost deletion seen so
 * far whose subtree the sweep is still in decides. One pass over both lists.
 */
static int merge_layer(scan *s, pht_error *err)
{
    img_index *ix = &s->img->index;
    for (size_t i = 0; i < s->un; i++)
        if (s->u[i]->type != PHT_IMAGE_DIR && d_add(s, s->u[i]->path, s->u[i]->plen, NULL, 0))
            return pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (s->dn > 1) qsort(s->d, s->dn, sizeof *s->d, cmp_del);
    for (size_t i = 1; i < s->dn; i++) /* one flag per path: self wins */
        if (same_n(s->d[i].path, s->d[i].len, s->d[i - 1].path, s->d[i - 1].len))
            s->d[i].self = s->d[i - 1].self = s->d[i].self | s->d[i - 1].self;
    img_entry **out = malloc((ix->n + s->un + 1) * sizeof *out);
    if (out == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    size_t keep = 0, j = 0;
    const del *cover = NULL;
    for (size_t i = 0; i < ix->n; i++) {
        img_entry *e = ix->v[i];
        for (; j < s->dn && hash_path_walk_cmpn(s->d[j].path, s->d[j].len, e->path, e->plen) <= 0;
             j++) {
            const del *d = &s->d[j];
            if (cover == NULL || !(same_n(d->path, d->len, cover->path, cover->len) ||
                                   below_n(d->path, d->len, cover->path, cover->len)))
                cover = d;
        }
        int gone = cover && (below_n(e->path, e->plen, cover->path, cover->len) ||
                             (cover->self && same_n(e->path, e->plen, cover->path, cover->len)));
        if (gone || u_find(s, e->path) >= 0)
            entry_drop(s, e);
        else
            ix->v[keep++] = e;
    }
    img_entry **u = s->u;
    if (s->un > 1) qsort(u, s->un, sizeof *u, cmp_entry);
    size_t a = 0, b = 0, n = 0;
    while (a < keep || b < s->un) {
        if (b == s->un || (a < keep && hash_path_walk_cmpn(ix->v[a]->path, ix->v[a]->plen,
                                                           u[b]->path, u[b]->plen) < 0))
            out[n++] = ix->v[a++];
        else
            out[n++] = u[b++];
    }
    free(ix->v);
    ix->v = out;
    ix->n = n;
    s->un = 0; /* entries now belong to the index */
    return 0;
}

static void scan_reset(scan *s)
{
    for (size_t i = 0; i < s->un; i++)
        entry_drop(s, s->u[i]);
    for (size_t i = 0; i < s->dn; i++) {
        if (s->d[i].own) s->bytes -= s->d[i].len + 1;
        free(s->d[i].own);
    }
    s->un = s->dn = 0;
    if (s->slot) memset(s->slot, 0, s->nslot * sizeof *s->slot);
}

/* Index layers [from, to) of img (-1: its view), bottom first; defer: see index_build. */
static int build(pht_image *img, int from, int to, int defer, pht_error *err)
{
    scan s = {.img = img};
    int rc = 0, config_below = 0;
    for (int i = from; i < to && rc == 0; i++) {
        s.li = i;
        s.l = i < 0 ? &img->view : &img->layers[i];
        s.l->defer_hash = defer && config_below && s.l->digest_known;
        /* its blob digest is hashed on a thread from now on, beside this scan */
        if (s.l->defer_hash) img_verify_early(img, (size_t)i);
        rc = layer_scan(s.l, &img->opts, on_entry, &s, err);
        config_below |= s.l->holds_config;
        if (rc == 0) resolve_pending(&s, s.l->scan_end);
        s.pending = NULL;
        if (rc == 0) rc = merge_layer(&s, err);
        scan_reset(&s);
    }
    free(s.u);
    free(s.slot);
    free(s.d);
    return rc;
}

int index_build(pht_image *img, int defer, pht_error *err)
{
    return build(img, 0, (int)img->nlayers, defer, err);
}

int index_build_view(pht_image *img, pht_error *err)
{
    const char *root = img->view_root ? img->view_root : "";
    int rc = build(img, -1, 0, 0, err);
    for (size_t i = 0; rc == 0 && i < img->index.n; i++) {
        const char *p = img->index.v[i]->path;
        if (strcmp(p, root) != 0 && !tarsafe_below(p, root))
            rc = pht_error_set(err, PHT_EFORMAT, "the tree of /%s holds \"%.300s\", outside /%s",
                               root, p, root);
    }
    if (rc) index_free(&img->index);
    return rc;
}

void index_free(img_index *ix)
{
    for (size_t i = 0; i < ix->n; i++)
        entry_free(ix->v[i]);
    free(ix->v);
    free(ix->implicit.path);
    *ix = (img_index){0};
}
