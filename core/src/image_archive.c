/*
 * The docker-archive transport: the tar that `docker save` writes and
 * `docker load` reads. manifest.json lists the images (Config, RepoTags,
 * Layers); each layer is a member of the outer tar. The outer tar is read
 * once to find each member's data offset, and layer blobs are then read as
 * byte ranges of the one file. An archive may hold several images; a commit
 * (archive_commit.c) keeps the other images and moves only the tags it
 * writes.
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
#include "archive_private.h"
#include "transport_private.h"

void archive_catalog_free(catalog *c)
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

const member *archive_catalog_find(const catalog *c, const char *name, pht_error *err)
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

int archive_catalog_open(const char *path, const pht_image_opts *o, catalog *c, pht_error *err)
{
    *c = (catalog){.fd = -1, .path = path};
    /* O_NONBLOCK: a FIFO must not block the open before S_ISREG refuses it. */
    c->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (c->fd < 0)
        return pht_error_set(err, errno == ENOENT ? PHT_ENOTFOUND : PHT_EIO, "%s: %s", path,
                             strerror(errno));
    struct stat st;
    if (fstat(c->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        archive_catalog_free(c);
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
    const member *mf = rc ? NULL : archive_catalog_find(c, "manifest.json", err);
    char *text = NULL;
    if (rc == 0 && mf == NULL)
        rc = pht_error_set(err, PHT_EFORMAT, "%s: not a docker-archive (no manifest.json)", path);
    if (rc == 0)
        rc = fs_pread_all(c->fd, mf->off, mf->size, IMG_JSON_MAX, &text, "manifest.json", err);
    if (rc == 0 && (c->manifest = json_parse(text, "manifest.json", err)) == NULL) rc = PHT_EFORMAT;
    if (rc == 0 && !cJSON_IsArray(c->manifest))
        rc = pht_error_set(err, PHT_EFORMAT, "%s: manifest.json is not an array", path);
    free(text);
    if (rc) archive_catalog_free(c);
    return rc;
}

static const char *strip_default(const char *t)
{
    if (strncmp(t, "docker.io/library/", 18) == 0) return t + 18;
    if (strncmp(t, "docker.io/", 10) == 0) return t + 10;
    return t;
}

int archive_tag_eq(const char *a, const char *b)
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
            if (cJSON_IsString(t) && archive_tag_eq(t->valuestring, tag)) {
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
    int rc = archive_catalog_open(path, &img->opts, &c, err);
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
    const member *m = archive_catalog_find(&c, cfgname->valuestring, err);
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
        if ((m = archive_catalog_find(&c, ln->valuestring, err)) == NULL) {
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
    archive_catalog_free(&c);
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
    .commit = archive_commit,
    .own_names = arc_own_names,
};
