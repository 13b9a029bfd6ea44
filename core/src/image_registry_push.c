/*
 * The docker:// transport's commit: a push (doc/registry.md). A blob the
 * repository has is skipped (HEAD), one that another repository of the same
 * registry has (the source's, or one the cache dir remembers) is mounted,
 * the rest is uploaded streamed; plain tar layers go up gzip-compressed, as
 * docker push sends them, the gzip blob remembered by diff_id. The manifest
 * goes last, once every blob it names is there, so a failed push never moves
 * a tag.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "fs_private.h"
#include "hash_private.h"
#include "image_registry_private.h"
#include "pht/interrupt.h"

/* Bytes [off, off+len) of a file as an upload source. */
typedef struct range_src {
    int fd;
    uint64_t off, len, pos;
    const pht_image_opts *o; /* the commit's: its progress (a retried upload counts again) */
} range_src;

static int range_read(void *ud, void *buf, size_t cap, size_t *got, pht_error *err)
{
    range_src *s = ud;
    size_t want = s->len - s->pos < cap ? (size_t)(s->len - s->pos) : cap;
    *got = 0;
    if (want == 0) return 0;
    int irc = pht_interrupt_check(err);
    if (irc) return irc;
    for (;;) {
        ssize_t n = pread(s->fd, buf, want, (off_t)(s->off + s->pos));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return pht_error_set(err, PHT_EIO, "layer read failed: %s", strerror(errno));
        if (n == 0) return pht_error_set(err, PHT_EIO, "layer file ends early");
        s->pos += (uint64_t)n;
        *got = (size_t)n;
        img_progress(s->o, (uint64_t)n);
        return 0;
    }
}

static int range_rewind(void *ud, pht_error *err)
{
    (void)err;
    ((range_src *)ud)->pos = 0;
    return 0;
}

typedef struct mem_src {
    const char *p;
    size_t len, pos;
} mem_src;

static int mem_read(void *ud, void *buf, size_t cap, size_t *got, pht_error *err)
{
    (void)err;
    mem_src *s = ud;
    *got = s->len - s->pos < cap ? s->len - s->pos : cap;
    memcpy(buf, s->p + s->pos, *got);
    s->pos += *got;
    return 0;
}

static int mem_rewind(void *ud, pht_error *err)
{
    (void)err;
    ((mem_src *)ud)->pos = 0;
    return 0;
}

/* A gzip stream written to an anonymous file while its sha256 is computed. */
typedef struct gz_out {
    int fd;
    pht_hash *sha;
    uint64_t size;
    pht_error *err;
    int rc;
} gz_out;

static la_ssize_t gz_write(struct archive *a, void *ud, const void *p, size_t n)
{
    (void)a;
    gz_out *g = ud;
    if (g->rc == 0 && (g->rc = pht_hash_update(g->sha, p, n, g->err)) == 0)
        g->rc = fs_write_all(g->fd, p, n, "compressed layer", g->err);
    if (g->rc) return -1;
    g->size += n;
    return (la_ssize_t)n;
}

static int gz_feed(void *ud, const void *p, size_t n, pht_error *err)
{
    struct archive *a = ud;
    if (archive_write_data(a, p, n) != (la_ssize_t)n)
        return pht_error_set(err, PHT_EIO, "gzip: %s", archive_error_string(a));
    return 0;
}

/*
 * l's tar, gzip-compressed into an anonymous file in tmpdir (*fd), with its
 * digest and size: what a registry gets for a plain tar layer, as docker
 * push sends it (no timestamp in the gzip header: the same tar always gives
 * the same blob).
 */
static int gzip_layer(const img_layer *l, const pht_image_opts *o, int *fd, char *digest,
                      uint64_t *size, pht_error *err)
{
    gz_out g = {.fd = -1, .err = err};
    struct archive *a = NULL;
    struct archive_entry *e = NULL;
    int rc = fs_tmp_anon(fs_tmpdir(o->tmpdir), &g.fd, err);
    if (rc) return rc;
    if ((g.sha = hash_new_sha256(err)) == NULL) {
        rc = err ? err->code : PHT_ENOMEM;
        goto done;
    }
    a = archive_write_new();
    e = archive_entry_new();
    if (a == NULL || e == NULL) {
        rc = rg_oom(err);
        goto done;
    }
    if (archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
        archive_write_set_format_raw(a) != ARCHIVE_OK ||
        archive_write_set_filter_option(a, "gzip", "timestamp", NULL) < ARCHIVE_WARN ||
        archive_write_set_bytes_per_block(a, 0) != ARCHIVE_OK ||
        archive_write_open(a, &g, NULL, gz_write, NULL) != ARCHIVE_OK) {
        rc = g.rc ? g.rc : pht_error_set(err, PHT_EIO, "gzip: %s", archive_error_string(a));
        goto done;
    }
    archive_entry_set_pathname(e, "layer.tar");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    if (archive_write_header(a, e) != ARCHIVE_OK) {
        rc = g.rc ? g.rc : pht_error_set(err, PHT_EIO, "gzip: %s", archive_error_string(a));
        goto done;
    }
    if ((rc = layer_copy_diff(l, o, gz_feed, a, err))) goto done;
    if (archive_write_close(a) != ARCHIVE_OK) {
        rc = g.rc ? g.rc : pht_error_set(err, PHT_EIO, "gzip: %s", archive_error_string(a));
        goto done;
    }
    if (g.rc) {
        rc = g.rc;
        goto done;
    }
    rc = hash_final_sha256(g.sha, digest, err);
    *size = g.size;
done:
    if (a) archive_write_free(a);
    archive_entry_free(e);
    pht_hash_free(g.sha);
    if (rc == 0)
        *fd = g.fd;
    else if (g.fd >= 0)
        close(g.fd);
    return rc;
}

/* The media type a pushed layer gets in a manifest of the chosen kind. */
static const char *push_media(int docker, int comp)
{
    if (docker) return comp == IMG_COMP_GZIP ? MT_DOCKER_GZIP : MT_DOCKER_TAR;
    return layer_media_type(comp);
}

/*
 * The repository of the same registry a blob can be mounted from: that of
 * the registry image (plan->base or plan->src, other than the target) whose
 * layer l is, or whose config has the digest config; NULL for a new blob.
 */
static const char *mount_source(const img_plan *plan, const img_layer *l, const char *config,
                                const char *host, const char *repo)
{
    const pht_image *imgs[] = {plan->base, plan->src};
    for (size_t k = 0; k < 2; k++) {
        const pht_image *img = imgs[k];
        if (img == NULL || img->tp != &img_registry || img->tpdata == NULL) continue;
        const rg_state *st = img->tpdata;
        if (strcmp(st->host, host) != 0 || strcmp(st->repo, repo) == 0) continue;
        int has = l && l >= img->layers && l < img->layers + img->nlayers;
        if (!l && config) {
            char dg[IMG_DIGEST_MAX];
            has = hash_sha256_buf(img->config, img->config_len, dg, NULL) == 0 &&
                  strcmp(dg, config) == 0;
        }
        if (has) return st->repo;
    }
    return NULL;
}

typedef struct pusher {
    pht_registry *reg;
    const char *host, *repo;
    const img_plan *plan;
    char what[600];
    pht_error *err;
    int skipped, mounted, uploaded;
} pusher;

/*
 * Mount digest into the target from `from`, else from the repositories of
 * the same registry the location cache names (at most 3 tries in all):
 * *mounted 1 when one of them did.
 */
static int mount_any(pusher *p, const char *digest, const char *from, int *mounted)
{
    int rc = 0, tries = 0;
    *mounted = 0;
    if (from && (rc = pht_registry_mount_blob(p->reg, p->repo, digest, from, mounted, p->err)))
        return rc;
    tries += from != NULL;
    char *text = *mounted ? NULL : rg_loc_read(p->plan->opts->cache_dir, digest), *save = NULL;
    size_t hl = strlen(p->host);
    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line && !*mounted && tries < 3;
         line = strtok_r(NULL, "\n", &save)) {
        const char *repo = line + hl + 1;
        if (strncmp(line, p->host, hl) != 0 || line[hl] != ' ' || strcmp(repo, p->repo) == 0 ||
            (from && strcmp(repo, from) == 0))
            continue;
        tries++;
        if ((rc = pht_registry_mount_blob(p->reg, p->repo, digest, repo, mounted, p->err))) break;
    }
    free(text);
    return rc;
}

/* 1 in *there when the target has digest (HEAD) or a mount brought it there. */
static int blob_there(pusher *p, const char *digest, uint64_t size, int *there)
{
    int exists = 0, rc;
    int64_t have = -1;
    *there = 0;
    if ((rc = pht_registry_blob_exists(p->reg, p->repo, digest, &exists, &have, p->err))) return rc;
    if (exists && (have < 0 || (uint64_t)have == size)) {
        p->skipped++;
        *there = 1;
        return 0;
    }
    if ((rc = mount_any(p, digest, NULL, there)) == 0 && *there) p->mounted++;
    return rc;
}

/* Put one blob: skipped when there, mounted when another repository has it, else sent. */
static int push_blob(pusher *p, const char *digest, uint64_t size, const img_layer *l, int fd,
                     uint64_t off, const char *mem, const char *from)
{
    int exists = 0, mounted = 0, how = 0, rc;
    int64_t have = -1;
    char out[PHT_REGISTRY_DIGEST_MAX];
    if ((rc = pht_registry_blob_exists(p->reg, p->repo, digest, &exists, &have, p->err))) return rc;
    if (exists && (have < 0 || (uint64_t)have == size)) {
        p->skipped++;
        return 0;
    }
    if ((rc = mount_any(p, digest, from, &mounted))) return rc;
    if (mounted) {
        p->mounted++;
        return 0;
    }
    if (mem == NULL && l && l->fd < 0) { /* the bytes are needed now: land the base */
        if ((rc = img_land(p->plan->base, IMG_LANDED_ALL, p->err))) return rc;
        fd = l->fd;
        off = l->offset;
    }
    pht_registry_upload up;
    pht_registry_upload_init(&up);
    range_src rs = {.fd = fd, .off = off, .len = size, .o = p->plan->opts};
    mem_src ms = {.p = mem, .len = (size_t)size};
    up.digest = digest;
    up.size = (int64_t)size;
    up.read = mem ? mem_read : range_read;
    up.rewind = mem ? mem_rewind : range_rewind;
    up.ud = mem ? (void *)&ms : (void *)&rs;
    rc = pht_registry_upload_blob(p->reg, p->repo, &up, out, &how, p->err);
    if (rc == 0) p->uploaded++;
    return rc;
}

static cJSON *descriptor(const char *mt, const char *digest, uint64_t size)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "mediaType", mt);
    cJSON_AddNumberToObject(d, "size", (double)size);
    cJSON_AddStringToObject(d, "digest", digest);
    return d;
}

/* A tag as the distribution spec allows it: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}. */
static int tag_valid(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 128 || t[0] == '.' || t[0] == '-') return 0;
    return strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

int rg_commit(const char *where, const img_plan *plan, pht_error *err)
{
    const char *nl = strchr(where, '\n');
    char *host = nl ? strndup(where, (size_t)(nl - where)) : NULL, *h = NULL, *repo = NULL;
    pusher p = {.plan = plan, .err = err};
    cJSON *man = NULL, *layers;
    char *text = NULL, mdg[PHT_REGISTRY_DIGEST_MAX];
    int rc = host ? rg_split_name(host, nl + 1, &h, &repo, err) : rg_oom(err), docker = 1;
    int *gzfd = calloc(plan->nlayers + 1, sizeof *gzfd);
    for (size_t i = 0; gzfd && i < plan->nlayers; i++)
        gzfd[i] = -1;
    if (rc == 0 && gzfd == NULL) rc = rg_oom(err);
    for (size_t k = 0; rc == 0 && k < plan->ntags; k++)
        if (!tag_valid(plan->tags[k]))
            rc = pht_error_set(err, PHT_EINVAL, "\"%.200s\" is not a registry tag", plan->tags[k]);
    /* an image known to be bad (a blob that did not verify) goes nowhere, mounted or not */
    const pht_image *srcs[] = {plan->base, plan->src};
    for (size_t k = 0; rc == 0 && k < 2; k++) {
        const rg_state *st = srcs[k] && srcs[k]->tp == &img_registry ? srcs[k]->tpdata : NULL;
        if (st && st->failed) {
            if (err) *err = st->why;
            rc = st->why.code;
        }
    }
    if (rc) goto out;
    p.host = h;
    p.repo = repo;
    snprintf(p.what, sizeof p.what, "registry %s, repository %s", h, repo);
    pht_registry_options o;
    rg_reg_opts(plan->opts, &o);
    if ((rc = pht_registry_open(&p.reg, h, &o, err))) goto out;
    for (size_t i = 0; i < plan->nlayers; i++)
        if (plan->layers[i]->compression == IMG_COMP_ZSTD)
            docker = 0; /* Docker schema 2 has no zstd */
    man = cJSON_CreateObject();
    cJSON_AddNumberToObject(man, "schemaVersion", 2);
    cJSON_AddStringToObject(man, "mediaType",
                            docker ? PHT_MEDIA_DOCKER_MANIFEST : PHT_MEDIA_OCI_MANIFEST);
    cJSON_AddItemToObject(man, "config",
                          descriptor(docker ? MT_DOCKER_CONFIG : MT_OCI_CONFIG, plan->config_digest,
                                     plan->config_len));
    layers = cJSON_AddArrayToObject(man, "layers");
    for (size_t i = 0; rc == 0 && i < plan->nlayers; i++) {
        const img_layer *l = plan->layers[i];
        int comp = l->compression;
        char dg[IMG_DIGEST_MAX];
        uint64_t size = l->length;
        snprintf(dg, sizeof dg, "%s", l->digest);
        if (comp == IMG_COMP_NONE || comp == IMG_COMP_OTHER) {
            /* a plain (or otherwise compressed) tar goes up as gzip, unless its gzip is there */
            int there = 0;
            if (rg_gz_known(plan->opts->cache_dir, l->diff_id, dg, &size) &&
                (rc = blob_there(&p, dg, size, &there)))
                break;
            if (!there) {
                if (l->fd < 0 && (rc = img_land(plan->base, IMG_LANDED_ALL, err))) break;
                if ((rc = gzip_layer(l, plan->opts, &gzfd[i], dg, &size, err))) break;
                rc = push_blob(&p, dg, size, NULL, gzfd[i], 0, NULL, NULL);
                if (rc == 0) rg_gz_remember(plan->opts->cache_dir, l->diff_id, dg, size);
            }
            comp = IMG_COMP_GZIP;
        } else {
            rc = push_blob(&p, dg, size, l, l->fd, l->offset, NULL,
                           mount_source(plan, l, NULL, h, repo));
        }
        if (rc) pht_error_prefix(err, "layer %zu", i);
        cJSON_AddItemToArray(layers, descriptor(push_media(docker, comp), dg, size));
    }
    if (rc == 0 &&
        (rc = push_blob(&p, plan->config_digest, plan->config_len, NULL, -1, 0, plan->config,
                        mount_source(plan, NULL, plan->config_digest, h, repo))))
        pht_error_prefix(err, "config");
    if (rc == 0 && (text = cJSON_PrintUnformatted(man)) == NULL) rc = rg_oom(err);
    /* the manifest last: only now may a tag move */
    const char *mt = docker ? PHT_MEDIA_DOCKER_MANIFEST : PHT_MEDIA_OCI_MANIFEST;
    for (size_t k = 0; rc == 0 && k < (plan->ntags ? plan->ntags : 1); k++) {
        const char *ref = NULL;
        char own[PHT_REGISTRY_DIGEST_MAX];
        if (plan->ntags)
            ref = plan->tags[k];
        else if ((rc = hash_sha256_buf(text, strlen(text), own, err)) == 0)
            ref = own;
        if (rc == 0)
            rc = pht_registry_put_manifest(p.reg, repo, ref, mt, text, strlen(text), mdg, err);
    }
    if (rc == 0) { /* the target has them now: a later push elsewhere may mount them */
        const cJSON *d;
        cJSON_ArrayForEach(d, layers)
            rg_loc_add(plan->opts->cache_dir, rg_jstr(d, "digest"), h, repo);
        rg_loc_add(plan->opts->cache_dir, plan->config_digest, h, repo);
    }
out:
    for (size_t i = 0; gzfd && i < plan->nlayers; i++)
        if (gzfd[i] >= 0) close(gzfd[i]);
    free(gzfd);
    pht_registry_free(p.reg);
    cJSON_Delete(man);
    free(text);
    free(host);
    free(h);
    free(repo);
    return rc;
}
