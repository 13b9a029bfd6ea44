/*
 * The docker-archive transport: the tar that `docker save` writes and
 * `docker load` reads. manifest.json lists the images (Config, RepoTags,
 * Layers); each layer is a member of the outer tar. The outer tar is read
 * once to find each member's data offset, and layer blobs are then read as
 * byte ranges of the one file. An archive may hold several images; a commit
 * keeps the other images and moves only the tags it writes.
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
#include "hash_private.h"
#include "transport_private.h"

typedef struct member {
    char *name;
    char *link; /* symlink target */
    int type;
    uint64_t off, size;
} member;

typedef struct catalog {
    int fd;
    member *m;
    size_t n;
    cJSON *manifest;
    const char *path;
} catalog;

static void catalog_free(catalog *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->m[i].name);
        free(c->m[i].link);
    }
    free(c->m);
    cJSON_Delete(c->manifest);
    if (c->fd >= 0) close(c->fd);
    *c = (catalog){.fd = -1};
}

/*
 * Join a link target to the directory of the member holding it, resolving "."
 * and ".." lexically. PHT_EUNSAFE if ".." would climb above the archive root.
 * *out is malloc'ed.
 */
static int resolve_member_link(const char *holder, const char *link, char **out)
{
    *out = NULL;
    const char *slash = strrchr(holder, '/');
    size_t dl = slash ? (size_t)(slash - holder) + 1 : 0;
    size_t cap = dl + strlen(link) + 2;
    char *path = malloc(cap);
    if (path == NULL) return PHT_ENOMEM;
    memcpy(path, holder, dl);
    strcpy(path + dl, link);
    char *res = calloc(cap, 1);
    if (res == NULL) {
        free(path);
        return PHT_ENOMEM;
    }
    size_t len = 0;
    char *save = NULL;
    for (char *c = strtok_r(path, "/", &save); c != NULL; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0) continue;
        if (strcmp(c, "..") == 0) {
            if (len == 0) {
                free(path);
                free(res);
                return PHT_EUNSAFE;
            }
            while (len > 0 && res[len - 1] != '/')
                len--;
            if (len > 0) len--; /* the slash before the dropped component */
            res[len] = '\0';
            continue;
        }
        if (len > 0) res[len++] = '/';
        size_t cl = strlen(c);
        memcpy(res + len, c, cl);
        len += cl;
        res[len] = '\0';
    }
    free(path);
    *out = res;
    return 0;
}

static const member *catalog_find(const catalog *c, const char *name, pht_error *err)
{
    char *cur = NULL;
    const char *why;
    if (tarsafe_path(name, 4096, &cur, &why))
        return pht_error_set(err, PHT_EUNSAFE, "%s: member \"%.200s\": %s", c->path, name, why),
               NULL;
    for (int depth = 0; depth < 8; depth++) {
        const member *hit = NULL;
        for (size_t i = 0; i < c->n && !hit; i++)
            if (strcmp(c->m[i].name, cur) == 0) hit = &c->m[i];
        if (hit == NULL || hit->type != AE_IFLNK) {
            if (hit == NULL || hit->type != AE_IFREG)
                pht_error_set(err, hit ? PHT_EFORMAT : PHT_ENOTFOUND, "%s: member \"%.200s\" %s",
                              c->path, cur, hit ? "is not a regular file" : "is missing");
            free(cur);
            return hit && hit->type == AE_IFREG ? hit : NULL;
        }
        /*
         * A symlink member: `docker save` stores a layer shared by two saved
         * images once and links the other copy to it ("../<id>/layer.tar");
         * skopeo's legacy layout does the same. Resolve it inside the archive.
         */
        char *resolved = NULL, *next = NULL;
        int rc = hit->link[0] == '/' ? PHT_EUNSAFE
                                     : resolve_member_link(hit->name, hit->link, &resolved);
        if (rc == 0 && tarsafe_path(resolved, 4096, &next, &why) != 0) rc = PHT_EUNSAFE;
        free(resolved);
        free(cur);
        cur = NULL;
        if (rc != 0) {
            free(next);
            if (rc == PHT_ENOMEM) return pht_error_set(err, rc, "%s: out of memory", c->path), NULL;
            pht_error_set(err, PHT_EUNSAFE, "%s: member link \"%.200s\" leaves the archive",
                          c->path, hit->name);
            return NULL;
        }
        cur = next;
    }
    free(cur);
    pht_error_set(err, PHT_EFORMAT, "%s: member \"%.200s\": too many link levels", c->path, name);
    return NULL;
}

static int catalog_open(const char *path, const pht_image_opts *o, catalog *c, pht_error *err)
{
    *c = (catalog){.fd = -1, .path = path};
    /* O_NONBLOCK: a FIFO must not block the open before S_ISREG refuses it. */
    c->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (c->fd < 0)
        return pht_error_set(err, errno == ENOENT ? PHT_ENOTFOUND : PHT_EIO, "%s: %s", path,
                             strerror(errno));
    struct stat st;
    if (fstat(c->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        catalog_free(c);
        return pht_error_set(err, PHT_EFORMAT, "%s: not a regular file", path);
    }
    img_layer whole = {.fd = c->fd, .length = (uint64_t)st.st_size, .digest = "archive"};
    void *state;
    struct archive *a = layer_tar_open(&whole, &state, err);
    int rc = a ? 0 : PHT_EFORMAT;
    size_t cap = 0;
    while (rc == 0) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = pht_error_set(err, PHT_EFORMAT, "%s: not a docker-archive tar: %s", path,
                               archive_error_string(a));
            break;
        }
        if (archive_filter_code(a, 0) != ARCHIVE_FILTER_NONE) {
            rc = pht_error_set(err, PHT_EFORMAT,
                               "%s: a compressed docker-archive; decompress it first", path);
            break;
        }
        if (c->n >= o->max_entries) {
            rc = pht_error_set(err, PHT_ELIMIT, "%s: more than the cap of %llu members", path,
                               (unsigned long long)o->max_entries);
            break;
        }
        if (c->n == cap) {
            cap = cap ? cap * 2 : 32;
            member *v = realloc(c->m, cap * sizeof *v);
            if (v == NULL) {
                rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
                break;
            }
            c->m = v;
        }
        member *m = &c->m[c->n];
        const char *why;
        *m = (member){0};
        if ((rc = tarsafe_path(archive_entry_pathname(e), o->max_name, &m->name, &why))) {
            rc = pht_error_set(err, rc, "%s: member \"%.200s\": %s", path,
                               archive_entry_pathname(e) ? archive_entry_pathname(e) : "", why);
            break;
        }
        c->n++;
        m->type = archive_entry_filetype(e);
        m->size = (uint64_t)(archive_entry_size(e) > 0 ? archive_entry_size(e) : 0);
        m->off = (uint64_t)archive_filter_bytes(a, 0);
        if (archive_entry_symlink(e) && (m->link = strdup(archive_entry_symlink(e))) == NULL)
            rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        if (archive_entry_sparse_count(e) > 0)
            rc = pht_error_set(err, PHT_EFORMAT, "%s: sparse member \"%.200s\"", path, m->name);
        if (m->off + m->size > (uint64_t)st.st_size)
            rc = pht_error_set(err, PHT_EFORMAT, "%s: member \"%.200s\" is truncated", path,
                               m->name);
    }
    layer_tar_close(a, a ? state : NULL);
    const member *mf = rc ? NULL : catalog_find(c, "manifest.json", err);
    char *text = NULL;
    if (rc == 0 && mf == NULL)
        rc = pht_error_set(err, PHT_EFORMAT, "%s: not a docker-archive (no manifest.json)", path);
    if (rc == 0)
        rc = fs_pread_all(c->fd, mf->off, mf->size, IMG_JSON_MAX, &text, "manifest.json", err);
    if (rc == 0 && (c->manifest = json_parse(text, "manifest.json", err)) == NULL) rc = PHT_EFORMAT;
    if (rc == 0 && !cJSON_IsArray(c->manifest))
        rc = pht_error_set(err, PHT_EFORMAT, "%s: manifest.json is not an array", path);
    free(text);
    if (rc) catalog_free(c);
    return rc;
}

static const char *strip_default(const char *t)
{
    if (strncmp(t, "docker.io/library/", 18) == 0) return t + 18;
    if (strncmp(t, "docker.io/", 10) == 0) return t + 10;
    return t;
}

static int tag_eq(const char *a, const char *b)
{
    return strcmp(strip_default(a), strip_default(b)) == 0;
}

static int arc_dest_tag(const pht_image_ref *ref, char **where, char **tag, pht_error *err)
{
    *tag = NULL;
    if (pht_image_ref_index(ref) >= 0)
        return pht_error_set(err, PHT_EINVAL, "docker-archive: write to a NAME:TAG, not an index");
    if ((*where = strdup(pht_image_ref_path(ref))) == NULL)
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    int rc = pht_image_ref_name(ref) ? img_ref_image_name(ref, tag, err) : 0;
    if (rc) {
        free(*where);
        *where = NULL;
    }
    return rc;
}

/* Whether entry e has a tag "REPO:X" with X not "base" (rlen = strlen(REPO)). */
static int has_train_tag(const cJSON *e, const char *repo, size_t rlen)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(e, "RepoTags"))
    {
        const char *v = cJSON_IsString(t) ? strip_default(t->valuestring) : "";
        if (strncmp(v, repo, rlen) == 0 && v[rlen] == ':' && strcmp(v + rlen, ":base") != 0)
            return 1;
    }
    return 0;
}

/*
 * The train of a two-image archive whose other image is the train's own
 * REPO:base (what pht build and `docker save REPO:latest REPO:base` write),
 * or NULL.
 */
static cJSON *train_beside_base(const cJSON *manifest)
{
    if (cJSON_GetArraySize(manifest) != 2) return NULL;
    for (int i = 0; i < 2; i++) {
        cJSON *train = cJSON_GetArrayItem(manifest, i), *base = cJSON_GetArrayItem(manifest, 1 - i);
        const cJSON *b;
        cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(base, "RepoTags"))
        {
            const char *v = cJSON_IsString(b) ? strip_default(b->valuestring) : "";
            size_t len = strlen(v);
            if (len > 5 && strcmp(v + len - 5, ":base") == 0 && has_train_tag(train, v, len - 5))
                return train;
        }
    }
    return NULL;
}

/* The manifest.json entry ref names: by NAME:TAG, by @N, or the only one. */
static cJSON *select_image(const catalog *c, const pht_image_ref *ref, pht_error *err)
{
    int n = cJSON_GetArraySize(c->manifest);
    long at = pht_image_ref_index(ref);
    char *tag = NULL;
    if (at < 0 && pht_image_ref_name(ref) == NULL) {
        if (n == 1) return cJSON_GetArrayItem(c->manifest, 0);
        cJSON *train = train_beside_base(c->manifest);
        if (train) return train;
        pht_error_set(err, n ? PHT_EINVAL : PHT_ENOTFOUND,
                      "%s holds %d images: name one as docker-archive:PATH:NAME:TAG", c->path, n);
        return NULL;
    }
    if (at >= 0) {
        if (at < n) return cJSON_GetArrayItem(c->manifest, (int)at);
        pht_error_set(err, PHT_ENOTFOUND, "%s: no image @%ld in the archive", c->path, at);
        return NULL;
    }
    if (img_ref_image_name(ref, &tag, err)) return NULL;
    cJSON *it, *t;
    cJSON_ArrayForEach(it, c->manifest)
    {
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(it, "RepoTags"))
        {
            if (cJSON_IsString(t) && tag_eq(t->valuestring, tag)) {
                free(tag);
                return it;
            }
        }
    }
    pht_error_set(err, PHT_ENOTFOUND, "%s: no image %s in the archive", c->path, tag);
    free(tag);
    return NULL;
}

static int arc_open(pht_image *img, const pht_image_ref *ref, pht_error *err)
{
    const char *path = pht_image_ref_path(ref);
    catalog c;
    int rc = catalog_open(path, &img->opts, &c, err);
    if (rc) return rc;
    cJSON *it = select_image(&c, ref, err);
    cJSON *cfgname = it ? cJSON_GetObjectItemCaseSensitive(it, "Config") : NULL;
    cJSON *layers = it ? cJSON_GetObjectItemCaseSensitive(it, "Layers") : NULL;
    if (it == NULL) {
        rc = err ? err->code : PHT_ENOTFOUND;
        goto out;
    }
    if (!cJSON_IsString(cfgname) || !cJSON_IsArray(layers)) {
        rc =
            pht_error_set(err, PHT_EFORMAT, "%s: manifest.json entry lacks Config or Layers", path);
        goto out;
    }
    const member *m = catalog_find(&c, cfgname->valuestring, err);
    if (m == NULL) {
        rc = err ? err->code : PHT_EFORMAT;
        goto out;
    }
    if ((rc = fs_pread_all(c.fd, m->off, m->size, IMG_JSON_MAX, &img->config, "image config", err)))
        goto out;
    img->config_len = m->size;
    img->manifest = cJSON_PrintUnformatted(it);
    cJSON *cfg = json_parse(img->config, "image config", err);
    cJSON *diffs = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cfg, "rootfs"),
                                                    "diff_ids");
    int nl = cJSON_GetArraySize(layers);
    if (cfg == NULL || img->manifest == NULL) {
        rc = cfg ? pht_error_set(err, PHT_ENOMEM, "out of memory") : PHT_EFORMAT;
    } else if (cJSON_GetArraySize(diffs) != nl) {
        rc = pht_error_set(err, PHT_EFORMAT, "%s: config lists %d diff_ids for %d layers", path,
                           cJSON_GetArraySize(diffs), nl);
    } else if ((img->layers = calloc((size_t)nl + 1, sizeof *img->layers)) == NULL) {
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    for (int i = 0; rc == 0 && i < nl; i++) {
        cJSON *ln = cJSON_GetArrayItem(layers, i), *d = cJSON_GetArrayItem(diffs, i);
        img_layer *l = &img->layers[i];
        l->fd = -1;
        img->nlayers++;
        if (!cJSON_IsString(ln) || !hash_sha256_valid(cJSON_GetStringValue(d))) {
            rc = pht_error_set(err, PHT_EFORMAT, "%s: layer %d: bad name or diff_id", path, i);
            break;
        }
        strcpy(l->diff_id, d->valuestring);
        if ((m = catalog_find(&c, ln->valuestring, err)) == NULL) {
            rc = err ? err->code : PHT_EFORMAT;
            break;
        }
        l->offset = m->off;
        l->length = m->size;
        if ((l->fd = dup(c.fd)) < 0)
            rc = pht_error_set(err, PHT_EIO, "%s: dup failed: %s", path, strerror(errno));
    }
    cJSON_Delete(cfg);
out:
    catalog_free(&c);
    return rc;
}

/* ---- commit ----------------------------------------------------------------- */

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
        if (tag_eq(p->tags[i], t)) return 1;
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
        cJSON_IsString(cfgname) ? catalog_find(c, cfgname->valuestring, o->err) : NULL;
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
        const member *lm = ln ? catalog_find(c, ln, o->err) : NULL;
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
        while (j < i && !tag_eq(p->tags[j], p->tags[i]))
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

static int arc_commit(const char *where, const img_plan *p, pht_error *err)
{
    catalog old = {.fd = -1};
    int rc = 0;
    struct stat st;
    if (stat(where, &st) == 0 && (rc = catalog_open(where, p->opts, &old, err))) {
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
    if (old.fd >= 0) catalog_free(&old);
    return rc;
}

static void arc_close(pht_image *img)
{
    (void)img;
}

/* An untagged commit into src's own archive: src's RepoTags move, its entry is replaced. */
static int arc_own_names(const pht_image *src, const char *where, char ***names, size_t *n,
                         char *id, pht_error *err)
{
    *names = NULL;
    *n = 0;
    id[0] = '\0';
    if (!fs_same_file(pht_image_ref_path(src->ref), where)) return 0;
    int rc = 0;
    cJSON *entry = json_parse(src->manifest, "manifest.json entry", err), *t;
    if (entry == NULL) return PHT_EFORMAT;
    cJSON *tags = cJSON_GetObjectItemCaseSensitive(entry, "RepoTags");
    if ((*names = calloc((size_t)cJSON_GetArraySize(tags) + 1, sizeof **names)) == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    cJSON_ArrayForEach(t, tags)
    {
        if (rc || !cJSON_IsString(t)) continue;
        if (((*names)[*n] = strdup(t->valuestring)) == NULL)
            rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        else
            (*n)++;
    }
    cJSON_Delete(entry);
    return rc ? rc : hash_sha256_buf(src->config, src->config_len, id, err);
}

const img_transport img_docker_archive = {
    .open = arc_open,
    .close = arc_close,
    .dest_tag = arc_dest_tag,
    .commit = arc_commit,
    .own_names = arc_own_names,
};
