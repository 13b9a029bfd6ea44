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
 */
#include <stdlib.h>
#include <string.h>

#include <archive.h>
#include <archive_entry.h>

#include "image_private.h"

typedef struct del {
    char *path;
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
} scan;

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void entry_free(img_entry *e)
{
    if (e == NULL) return;
    free(e->path);
    free(e->link);
    free(e);
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
        entry_free(s->u[at]);
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

static int d_add(scan *s, const char *path, size_t len, int self)
{
    if (s->dn == s->dcap) {
        size_t cap = s->dcap ? s->dcap * 2 : 64;
        del *v = realloc(s->d, cap * sizeof *v);
        if (v == NULL) return PHT_ENOMEM;
        s->d = v;
        s->dcap = cap;
    }
    char *p = strndup(path, len);
    if (p == NULL) return PHT_ENOMEM;
    s->d[s->dn++] = (del){p, self};
    return 0;
}

long index_find(const img_index *ix, const char *path)
{
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = pht_path_walk_cmp(ix->v[mid]->path, path);
        if (c == 0) return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
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
    return 0;
}

static int on_entry(void *ud, struct archive_entry *ae, uint64_t ordinal, pht_error *err)
{
    scan *s = ud;
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
        if (strcmp(base, ".wh..wh..opq") == 0)
            rc = d_add(s, path, plen, 0);
        else if (strncmp(base, ".wh..wh.", 8) == 0)
            rc = 0; /* aufs bookkeeping */
        else if (strcmp(base + 4, "") == 0 || strcmp(base + 4, ".") == 0 ||
                 strcmp(base + 4, "..") == 0) {
            /* Docker would remove the directory itself or its parent: refuse */
            rc = tarsafe_fail(err, PHT_EUNSAFE, s->l, name,
                              "whiteout names its own directory or a parent");
            free(path);
            return rc;
        } else {
            /* ".wh.NAME" deletes parent/NAME */
            size_t n = plen + (plen ? 1 : 0);
            char *victim = malloc(n + strlen(base + 4) + 1);
            if (victim == NULL)
                rc = PHT_ENOMEM;
            else {
                memcpy(victim, path, n);
                strcpy(victim + n, base + 4);
                rc = d_add(s, victim, strlen(victim), 1);
                free(victim);
            }
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
    e->mode = (uint32_t)archive_entry_perm(ae) & 07777;
    e->uid = archive_entry_uid(ae);
    e->gid = archive_entry_gid(ae);
    e->mtime = archive_entry_mtime(ae);
    e->layer = e->data_layer = s->li;
    e->ordinal = e->data_ordinal = ordinal;
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
    if (rc == 0 && u_add(s, e) != 0) rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc) entry_free(e);
    return rc;
}

static int cmp_entry(const void *a, const void *b)
{
    return pht_path_walk_cmp((*(img_entry *const *)a)->path, (*(img_entry *const *)b)->path);
}

static int cmp_del(const void *a, const void *b)
{
    return strcmp(((const del *)a)->path, ((const del *)b)->path);
}

/* Deletion flag of the first len bytes of path: -1 none, else self. */
static int d_lookup(const scan *s, const char *path, size_t len)
{
    size_t lo = 0, hi = s->dn;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strncmp(s->d[mid].path, path, len);
        if (c == 0 && s->d[mid].path[len] != '\0') c = 1;
        if (c == 0) return s->d[mid].self;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static int deleted(const scan *s, const char *p)
{
    if (d_lookup(s, p, strlen(p)) == 1) return 1;
    for (const char *c = p; *c; c++)
        if (*c == '/' && d_lookup(s, p, (size_t)(c - p)) >= 0) return 1;
    return 0;
}

static int u_has(const scan *s, const char *p)
{
    return u_find(s, p) >= 0;
}

/* Apply the layer's deletions to the lower index and merge its entries in. */
static int merge_layer(scan *s, pht_error *err)
{
    img_index *ix = &s->img->index;
    for (size_t i = 0; i < s->un; i++)
        if (s->u[i]->type != PHT_IMAGE_DIR && d_add(s, s->u[i]->path, strlen(s->u[i]->path), 0))
            return pht_error_set(err, PHT_ENOMEM, "out of memory");
    qsort(s->d, s->dn, sizeof *s->d, cmp_del);
    for (size_t i = 1; i < s->dn; i++) /* one flag per path: self wins */
        if (strcmp(s->d[i].path, s->d[i - 1].path) == 0)
            s->d[i].self = s->d[i - 1].self = s->d[i].self | s->d[i - 1].self;
    img_entry **out = malloc((ix->n + s->un + 1) * sizeof *out);
    if (out == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    size_t keep = 0;
    for (size_t i = 0; i < ix->n; i++) {
        img_entry *e = ix->v[i];
        if (u_has(s, e->path) || deleted(s, e->path))
            entry_free(e);
        else
            ix->v[keep++] = e;
    }
    img_entry **u = s->u;
    qsort(u, s->un, sizeof *u, cmp_entry);
    size_t a = 0, b = 0, n = 0;
    while (a < keep || b < s->un) {
        if (b == s->un || (a < keep && pht_path_walk_cmp(ix->v[a]->path, u[b]->path) < 0))
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

/*
 * Directories that only appear as parents of entries get a default entry. In
 * walk order a subtree is contiguous, so an ancestor shared with the previous
 * entry has been handled already.
 */
static int add_implicit_parents(img_index *ix, pht_error *err)
{
    img_entry **extra = NULL;
    size_t en = 0, ecap = 0;
    for (size_t i = 0; i < ix->n; i++) {
        const char *p = ix->v[i]->path, *prev = i ? ix->v[i - 1]->path : "";
        for (const char *c = p; *c; c++) {
            if (*c != '/') continue;
            size_t k = (size_t)(c - p);
            if (strncmp(prev, p, k) == 0 && (prev[k] == '/' || prev[k] == '\0')) continue;
            char *parent = strndup(p, k);
            if (parent == NULL) goto oom;
            if (index_find(ix, parent) >= 0) {
                free(parent);
                continue;
            }
            if (en == ecap) {
                size_t nc = ecap ? ecap * 2 : 16;
                img_entry **v = realloc(extra, nc * sizeof *v);
                if (v == NULL) {
                    free(parent);
                    goto oom;
                }
                extra = v;
                ecap = nc;
            }
            img_entry *e = calloc(1, sizeof *e);
            if (e == NULL) {
                free(parent);
                goto oom;
            }
            *e = (img_entry){.path = parent,
                             .type = PHT_IMAGE_DIR,
                             .mode = 0755,
                             .layer = ix->v[i]->layer,
                             .data_layer = ix->v[i]->layer,
                             .implicit = 1};
            extra[en++] = e;
        }
    }
    if (en) {
        img_entry **v = realloc(ix->v, (ix->n + en) * sizeof *v);
        if (v == NULL) goto oom;
        memcpy(v + ix->n, extra, en * sizeof *v);
        ix->v = v;
        ix->n += en;
        qsort(ix->v, ix->n, sizeof *ix->v, cmp_entry);
    }
    free(extra);
    return 0;
oom:
    for (size_t k = 0; k < en; k++)
        entry_free(extra[k]);
    free(extra);
    return pht_error_set(err, PHT_ENOMEM, "out of memory");
}

static void scan_reset(scan *s)
{
    for (size_t i = 0; i < s->un; i++)
        entry_free(s->u[i]);
    for (size_t i = 0; i < s->dn; i++)
        free(s->d[i].path);
    s->un = s->dn = 0;
    if (s->slot) memset(s->slot, 0, s->nslot * sizeof *s->slot);
}

/* Index layers [from, to) of img (-1: its view), bottom first. */
static int build(pht_image *img, int from, int to, pht_error *err)
{
    scan s = {.img = img};
    int rc = 0;
    for (int i = from; i < to && rc == 0; i++) {
        s.li = i;
        s.l = i < 0 ? &img->view : &img->layers[i];
        rc = layer_scan(s.l, &img->opts, on_entry, &s, err);
        if (rc == 0) rc = merge_layer(&s, err);
        scan_reset(&s);
    }
    if (rc == 0) rc = add_implicit_parents(&img->index, err);
    free(s.u);
    free(s.slot);
    free(s.d);
    return rc;
}

int index_build(pht_image *img, pht_error *err)
{
    return build(img, 0, (int)img->nlayers, err);
}

int index_build_view(pht_image *img, pht_error *err)
{
    const char *root = img->view_root ? img->view_root : "";
    int rc = build(img, -1, 0, err);
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
    ix->v = NULL;
    ix->n = 0;
}
