/*
 * The docker-daemon transport: images in the local Docker engine, by name.
 *
 *   docker-daemon:NAME[:TAG]        read and write ("NAME" means NAME:latest)
 *   docker-daemon:NAME@sha256:HEX   read
 *   docker-daemon:sha256:HEX        read (an image id)
 *
 * Reading saves the image (GET /images/{name}/get) into an unlinked
 * temporary file and reads that as a docker-archive, so every layer is a
 * byte range of an open file like any other transport's; the config's digest
 * must equal the image id the daemon reported.
 *
 * Writing streams a docker-archive straight into POST /images/load, built on
 * the fly 64 KiB at a time: the config, the layers the daemon does not hold
 * yet, and the manifest naming every layer and the tags. Layers the daemon
 * already has (the leading layers shared with the image a tag names now, or
 * with the base image when the daemon holds it) are left out: the classic
 * image store looks a layer up by its chain id before it opens the layer's
 * file. docker load moves the tags only once the whole
 * image is in, so a failure leaves them where they were; an image left
 * without a tag by the move is removed when nothing else needs it.
 * doc/daemon.md says why this path and not containers plus commit.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>

#include "image_internal.h"
#include "pht/docker.h"

/* ---- references ----------------------------------------------------------------- */

/* The NAME:TAG a commit to ref moves (malloc'ed); an id or digest cannot be written. */
static int dest_name(const pht_image_ref *ref, char **out, pht_error *err)
{
    *out = NULL;
    if (pht_image_ref_digest(ref))
        return pht_error_set(err, PHT_EINVAL,
                             "%.200s: write to a NAME[:TAG], not an image id or digest",
                             pht_image_ref_string(ref));
    return img_ref_image_name(ref, out, err);
}

/* ---- reading --------------------------------------------------------------------- */

static int dmn_open(pht_image *img, const pht_image_ref *ref, pht_error *err)
{
    char *name = NULL;
    pht_docker *d = NULL;
    pht_docker_image_info info = {0};
    pht_image_ref *saved = NULL;
    int fd = -1, rc;
    if ((rc = img_ref_image_name(ref, &name, err)) || (rc = pht_docker_open(&d, NULL, err)) ||
        (rc = pht_docker_image_inspect(d, name, &info, err)) ||
        (rc = img_tmp_anon(img->tmpdir, &fd, err)))
        goto done;
    if ((rc = pht_docker_image_save_fd(d, name, fd, err))) {
        if (rc == PHT_EIO) pht_error_prefix(err, "temporary file in %s", img->tmpdir);
        goto done;
    }
    /* The archive transport opens by path; the unlinked file stays reachable through /proc. */
    char path[64];
    snprintf(path, sizeof path, "docker-archive:/proc/self/fd/%d", fd);
    if ((rc = pht_image_ref_parse(path, 0, &saved, err)) ||
        (rc = img_docker_archive.open(img, saved, err))) {
        pht_error_prefix(err, "the daemon's archive of %s", name);
        goto done;
    }
    char digest[IMG_DIGEST_MAX];
    if ((rc = img_sha_buf(img->config, img->config_len, digest, err))) goto done;
    if (strcmp(digest, info.id) != 0)
        rc = pht_error_set(err, PHT_EVERIFY,
                           "the daemon saved %s with config digest %s, but its image id is %s "
                           "(did the tag move meanwhile?)",
                           name, digest, info.id);
done:
    if (fd >= 0) close(fd);
    pht_image_ref_free(saved);
    pht_docker_image_info_clear(&info);
    pht_docker_free(d);
    free(name);
    return rc;
}

static void dmn_close(pht_image *img)
{
    (void)img;
}

static int dmn_dest_tag(const pht_image_ref *ref, char **where, char **tag, pht_error *err)
{
    *tag = NULL;
    int rc = dest_name(ref, where, err);
    if (rc == 0 && (*tag = strdup(*where)) == NULL) {
        free(*where);
        *where = NULL;
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    return rc;
}

/* ---- the load stream ---------------------------------------------------------------- */

enum { ST_CONFIG, ST_LAYERS, ST_MANIFEST, ST_CLOSE, ST_DONE };

typedef struct gen {
    const img_plan *p;
    const char *const *tags;
    size_t ntags;
    size_t known; /* leading layers the daemon has: not sent */
    struct archive *a;
    unsigned char *out; /* archive bytes not yet handed to libcurl */
    size_t olen, opos, ocap;
    unsigned char *chunk;
    int stage;
    size_t li; /* layer being sent */
    int in_entry;
    int src_fd, spool_fd; /* the blob's file: the layer's own, or a decompressed spool */
    uint64_t src_off, src_len, sent;
    size_t layers_sent;
    uint64_t bytes_sent; /* layer bytes, for the caller's statistics */
    pht_error werr;      /* what the archive write callback hit */
} gen;

static la_ssize_t gen_write(struct archive *a, void *ud, const void *p, size_t n)
{
    gen *g = ud;
    if (g->olen + n > g->ocap) {
        size_t cap = g->ocap ? g->ocap : 2 * IMG_CHUNK;
        while (cap < g->olen + n)
            cap *= 2;
        unsigned char *o = realloc(g->out, cap);
        if (o == NULL) {
            archive_set_error(a, ENOMEM, "out of memory");
            return -1;
        }
        g->out = o;
        g->ocap = cap;
    }
    memcpy(g->out + g->olen, p, n);
    g->olen += n;
    return (la_ssize_t)n;
}

static int gen_fail(gen *g, pht_error *err, const char *what)
{
    return pht_error_set(err, PHT_EIO, "load stream: %s: %s", what,
                         archive_error_string(g->a) ? archive_error_string(g->a) : "failed");
}

static int gen_header(gen *g, const char *name, uint64_t size, pht_error *err)
{
    int r = img_tar_file_header(g->a, name, size);
    if (r == PHT_ENOMEM) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    return r ? gen_fail(g, err, name) : 0;
}

static int gen_small(gen *g, const char *name, const void *p, size_t n, pht_error *err)
{
    int rc = gen_header(g, name, n, err);
    if (rc == 0 && n > 0 && archive_write_data(g->a, p, n) != (la_ssize_t)n)
        rc = gen_fail(g, err, name);
    if (rc == 0 && archive_write_finish_entry(g->a) != ARCHIVE_OK) rc = gen_fail(g, err, name);
    return rc;
}

static void layer_name(const img_layer *l, char *out, size_t cap)
{
    snprintf(out, cap, "%s.tar", l->diff_id + 7);
}

/* The manifest.json docker load reads: every layer by name, sent or not. */
static char *gen_manifest(const gen *g)
{
    char name[96];
    cJSON *arr = cJSON_CreateArray(), *it = cJSON_CreateObject();
    cJSON *tags = cJSON_CreateArray(), *layers = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, it);
    snprintf(name, sizeof name, "%s.json", g->p->config_digest + 7);
    cJSON_AddItemToObject(it, "Config", cJSON_CreateString(name));
    for (size_t i = 0; i < g->ntags; i++)
        cJSON_AddItemToArray(tags, cJSON_CreateString(g->tags[i]));
    cJSON_AddItemToObject(it, "RepoTags", tags);
    for (size_t i = 0; i < g->p->nlayers; i++) {
        layer_name(g->p->layers[i], name, sizeof name);
        cJSON_AddItemToArray(layers, cJSON_CreateString(name));
    }
    cJSON_AddItemToObject(it, "Layers", layers);
    char *text = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return text;
}

static int spool_sink(void *ud, const void *p, size_t n, pht_error *err)
{
    return img_write_all(*(int *)ud, p, n, "layer spool", err);
}

/* Start sending layer li: plain and gzip blobs go as stored, others decompressed. */
static int gen_layer_begin(gen *g, pht_error *err)
{
    const img_layer *l = g->p->layers[g->li];
    char name[96];
    layer_name(l, name, sizeof name);
    if (l->compression == IMG_COMP_NONE || l->compression == IMG_COMP_GZIP) {
        g->src_fd = l->fd;
        g->src_off = l->offset;
        g->src_len = l->length;
    } else {
        const char *dir = g->p->opts && g->p->opts->tmpdir ? g->p->opts->tmpdir : "/tmp";
        int rc = img_tmp_anon(dir, &g->spool_fd, err);
        if (rc == 0) rc = layer_copy_diff(l, g->p->opts, spool_sink, &g->spool_fd, err);
        if (rc) return rc;
        g->src_fd = g->spool_fd;
        g->src_off = 0;
        g->src_len = l->diff_size;
    }
    g->sent = 0;
    g->in_entry = 1;
    return gen_header(g, name, g->src_len, err);
}

static int gen_layer_more(gen *g, pht_error *err)
{
    if (g->sent == g->src_len) {
        if (archive_write_finish_entry(g->a) != ARCHIVE_OK) return gen_fail(g, err, "layer");
        if (g->spool_fd >= 0) close(g->spool_fd);
        g->spool_fd = -1;
        g->in_entry = 0;
        g->layers_sent++;
        g->li++;
        return 0;
    }
    uint64_t left = g->src_len - g->sent;
    size_t want = left < IMG_CHUNK ? (size_t)left : IMG_CHUNK;
    ssize_t r = pread(g->src_fd, g->chunk, want, (off_t)(g->src_off + g->sent));
    if (r < 0 && errno == EINTR) return 0;
    if (r <= 0)
        return tarsafe_fail(err, PHT_EIO, g->p->layers[g->li], NULL, "read failed: %s",
                            r < 0 ? strerror(errno) : "unexpected end of file");
    if (archive_write_data(g->a, g->chunk, (size_t)r) != r) return gen_fail(g, err, "layer");
    g->sent += (uint64_t)r;
    g->bytes_sent += (uint64_t)r;
    return 0;
}

/* 1 if layer i has the diff_id of an earlier layer (written once). */
static int gen_dup(const gen *g, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (strcmp(g->p->layers[k]->diff_id, g->p->layers[i]->diff_id) == 0) return 1;
    return 0;
}

static int gen_step(gen *g, pht_error *err)
{
    char name[96];
    switch (g->stage) {
    case ST_CONFIG:
        snprintf(name, sizeof name, "%s.json", g->p->config_digest + 7);
        g->stage = ST_LAYERS;
        g->li = g->known;
        return gen_small(g, name, g->p->config, g->p->config_len, err);
    case ST_LAYERS:
        if (g->in_entry) return gen_layer_more(g, err);
        if (g->li >= g->p->nlayers) {
            g->stage = ST_MANIFEST;
            return 0;
        }
        if (gen_dup(g, g->li)) {
            g->li++;
            return 0;
        }
        return gen_layer_begin(g, err);
    case ST_MANIFEST: {
        char *m = gen_manifest(g);
        int rc = m ? gen_small(g, "manifest.json", m, strlen(m), err)
                   : pht_error_set(err, PHT_ENOMEM, "out of memory");
        free(m);
        g->stage = ST_CLOSE;
        return rc;
    }
    case ST_CLOSE:
        g->stage = ST_DONE;
        return archive_write_close(g->a) == ARCHIVE_OK ? 0 : gen_fail(g, err, "end of archive");
    }
    return 0;
}

static int gen_read(void *ud, void *buf, size_t cap, size_t *got, pht_error *err)
{
    gen *g = ud;
    int rc;
    while (g->opos == g->olen && g->stage != ST_DONE) {
        g->opos = g->olen = 0;
        if ((rc = gen_step(g, err))) return rc;
    }
    size_t n = g->olen - g->opos < cap ? g->olen - g->opos : cap;
    if (n) memcpy(buf, g->out + g->opos, n);
    g->opos += n;
    *got = n;
    return 0;
}

static int gen_init(gen *g, const img_plan *p, const char *const *tags, size_t ntags, size_t known,
                    pht_error *err)
{
    *g = (gen){.p = p, .tags = tags, .ntags = ntags, .known = known, .src_fd = -1, .spool_fd = -1};
    g->a = archive_write_new();
    g->chunk = malloc(IMG_CHUNK);
    if (g->a == NULL || g->chunk == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    archive_write_set_format_pax_restricted(g->a);
    archive_write_set_bytes_per_block(g->a, 0); /* hand every byte on at once */
    if (archive_write_open2(g->a, g, NULL, gen_write, NULL, NULL) != ARCHIVE_OK)
        return gen_fail(g, err, "open");
    return 0;
}

static void gen_free(gen *g)
{
    if (g->a) archive_write_free(g->a);
    if (g->spool_fd >= 0) close(g->spool_fd);
    free(g->out);
    free(g->chunk);
}

/* ---- writing -------------------------------------------------------------------- */

/* How many leading layers of the plan the image info lists, in order. */
static size_t shared_prefix(const img_plan *p, const pht_docker_image_info *info)
{
    size_t k = 0;
    while (k < p->nlayers && k < info->nlayers &&
           strcmp(p->layers[k]->diff_id, info->layers[k]) == 0)
        k++;
    return k;
}

/*
 * Leading layers of the plan the daemon already holds: the longest prefix of
 * diff_ids shared with an image a destination tag names now, or with the base
 * image when the daemon has it (its id is its config's digest, wherever it
 * was read from). 0 when the daemon keeps images in containerd, whose import
 * needs every blob.
 */
static size_t known_layers(pht_docker *d, const img_plan *p, const pht_docker_image_info *old,
                           size_t nold)
{
    size_t best = 0;
    for (size_t t = 0; t < nold; t++) {
        size_t k = shared_prefix(p, &old[t]);
        if (k > best) best = k;
    }
    char id[IMG_DIGEST_MAX];
    pht_docker_image_info base;
    pht_error e;
    if (best < p->nlayers && p->base && p->base->config &&
        img_sha_buf(p->base->config, p->base->config_len, id, &e) == 0 &&
        pht_docker_image_inspect(d, id, &base, &e) == 0) {
        size_t k = shared_prefix(p, &base);
        if (k > best) best = k;
        pht_docker_image_info_clear(&base);
    }
    if (best == 0) return 0;
    pht_http_request req;
    pht_http_response resp;
    pht_http_request_init(&req);
    req.path = "/v" PHT_DOCKER_API_VERSION "/info";
    req.max_body = 16u << 20;
    int rc = pht_http_do(pht_docker_http(d), &req, &resp, &e);
    int containerd = rc != 0 || (resp.body && strstr(resp.body, "io.containerd.snapshotter"));
    pht_http_response_clear(&resp);
    return containerd ? 0 : best;
}

/* The tags the commit moves, each as "repo:tag". */
static int norm_tags(const img_plan *p, char ***out, pht_error *err)
{
    *out = calloc(p->ntags + 1, sizeof **out);
    if (*out == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < p->ntags && rc == 0; i++) {
        size_t n = strlen(p->tags[i]) + 16;
        char *ref = malloc(n);
        pht_image_ref *r = NULL;
        if (ref == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
        snprintf(ref, n, "docker-daemon:%s", p->tags[i]);
        if ((rc = pht_image_ref_parse(ref, 0, &r, err)) == 0) rc = dest_name(r, &(*out)[i], err);
        pht_image_ref_free(r);
        free(ref);
    }
    return rc;
}

/* Point each tag back at the image it named before the load, or drop it if it named none. */
static void restore_tags(pht_docker *d, char **tags, const pht_docker_image_info *old, size_t n,
                         const char *new_id)
{
    pht_error e;
    for (size_t i = 0; i < n; i++) {
        pht_docker_image_info now;
        if (old[i].id[0]) {
            pht_docker_image_tag(d, old[i].id, tags[i], &e);
        } else if (pht_docker_image_inspect(d, tags[i], &now, &e) == 0) {
            if (strcmp(now.id, new_id) == 0) pht_docker_image_remove(d, tags[i], 0, &e);
            pht_docker_image_info_clear(&now);
        }
    }
}

static int dmn_commit(const char *where, const img_plan *p, pht_error *err)
{
    (void)where; /* the first of p->tags */
    pht_docker *d = NULL;
    char **tags = NULL;
    pht_docker_image_info *old = calloc(p->ntags + 1, sizeof *old);
    gen g = {.src_fd = -1, .spool_fd = -1};
    int rc = old ? 0 : pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc || (rc = norm_tags(p, &tags, err)) || (rc = pht_docker_open(&d, NULL, err))) goto done;
    for (size_t i = 0; i < p->ntags; i++) {
        rc = pht_docker_image_inspect(d, tags[i], &old[i], err);
        if (rc == PHT_ENOTFOUND) rc = 0;
        if (rc) goto done;
    }
    size_t known = known_layers(d, p, old, p->ntags);
    if ((rc = gen_init(&g, p, (const char *const *)tags, p->ntags, known, err))) goto done;
    if ((rc = pht_docker_image_load(d, gen_read, &g, NULL, err))) {
        /* a daemon that stored the image before it failed keeps it untagged: drop it */
        pht_docker_prune_image(d, p->config_digest, NULL, NULL);
        goto done;
    }
    /* docker load moved the tags; check they name the image just written */
    for (size_t i = 0; i < p->ntags && rc == 0; i++) {
        pht_docker_image_info now;
        if ((rc = pht_docker_image_inspect(d, tags[i], &now, err))) break;
        if (strcmp(now.id, p->config_digest) != 0)
            rc = pht_error_set(err, PHT_EVERIFY, "after the load %s names %s, not the new image %s",
                               tags[i], now.id, p->config_digest);
        pht_docker_image_info_clear(&now);
    }
    if (rc) {
        restore_tags(d, tags, old, p->ntags, p->config_digest);
        pht_docker_prune_image(d, p->config_digest, NULL, NULL);
        goto done;
    }
    /* the images the tags named before, now without a tag, go when nothing needs them */
    for (size_t i = 0; i < p->ntags; i++)
        if (old[i].id[0] && strcmp(old[i].id, p->config_digest) != 0)
            pht_docker_prune_image(d, old[i].id, NULL, NULL);
done:
    gen_free(&g);
    for (size_t i = 0; old && i < p->ntags; i++)
        pht_docker_image_info_clear(&old[i]);
    free(old);
    for (size_t i = 0; tags && i < p->ntags; i++)
        free(tags[i]);
    free(tags);
    pht_docker_free(d);
    return rc;
}

const img_transport img_docker_daemon = {
    .open = dmn_open,
    .close = dmn_close,
    .dest_tag = dmn_dest_tag,
    .commit = dmn_commit,
};
