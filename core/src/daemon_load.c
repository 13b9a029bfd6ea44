/*
 * The body of a docker-daemon commit's POST /images/load (doc/daemon.md, "How
 * an image is written"): a docker-archive made on the fly as libcurl asks for
 * bytes: the config, every layer the engine does not hold yet (plain and gzip
 * blobs as stored, others decompressed into a spool first), manifest.json
 * naming every layer, sent or not. Memory: one chunk and what libarchive
 * hands on at once.
 *
 * The writer's new layer (img_plan.spent) is a temporary file nothing reads
 * again: every PUNCH_STEP bytes sent, its pages and blocks so far are given
 * back (fallocate PUNCH_HOLE), so its dirty pages are dropped instead of
 * written back while the engine writes the same bytes twice, and the disk
 * it takes shrinks as the load goes. Where the file system cannot punch,
 * the file stays whole until the writer frees it.
 */
#define _GNU_SOURCE /* fallocate */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>

#include "fs_private.h"
#include "transport_private.h"
#include "pht/interrupt.h"

enum { ST_CONFIG, ST_LAYERS, ST_MANIFEST, ST_CLOSE, ST_DONE };

#define PUNCH_STEP (8u << 20) /* bytes of the spent layer sent between punches */

struct daemon_load {
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
    int punch;        /* the layer being sent is the spent one and punching works */
    uint64_t punched; /* its bytes given back so far, from src_off */
    size_t layers_sent;
    uint64_t bytes_sent; /* layer bytes, for the caller's statistics */
    pht_error werr;      /* what the archive write callback hit */
};
typedef struct daemon_load gen;

static la_ssize_t gen_write(struct archive *a, void *ud, const void *p, size_t n)
{
    gen *g = ud;
    if (g->olen + n > g->ocap) {
        size_t cap = g->ocap ? g->ocap : 2 * PHT_CHUNK_SIZE;
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
    img_progress(g->p->opts, n);
    return (la_ssize_t)n;
}

static int gen_fail(gen *g, pht_error *err, const char *what)
{
    return pht_error_set(err, PHT_EIO, "load stream: %s: %s", what,
                         archive_error_string(g->a) ? archive_error_string(g->a) : "failed");
}

static int gen_header(gen *g, const char *name, uint64_t size, pht_error *err)
{
    int r = layer_tar_file_header(g->a, name, size);
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
    return fs_write_all(*(int *)ud, p, n, "layer spool", err);
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
        const char *dir = fs_tmpdir(g->p->opts ? g->p->opts->tmpdir : NULL);
        int rc = fs_tmp_anon(dir, &g->spool_fd, err);
        if (rc == 0) rc = layer_copy_diff(l, g->p->opts, spool_sink, &g->spool_fd, err);
        if (rc) return rc;
        g->src_fd = g->spool_fd;
        g->src_off = 0;
        g->src_len = l->diff_size;
    }
    g->sent = 0;
    g->punch = l == g->p->spent && g->src_fd == l->fd;
    g->punched = 0;
    g->in_entry = 1;
    return gen_header(g, name, g->src_len, err);
}

/* Give back the pages and blocks of the spent layer sent so far, a PUNCH_STEP at a time. */
static void gen_punch(gen *g)
{
    if (!g->punch) return;
    uint64_t upto = g->sent == g->src_len ? g->sent : g->sent / PUNCH_STEP * PUNCH_STEP;
    if (upto <= g->punched) return;
    if (fallocate(g->src_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)(g->src_off + g->punched), (off_t)(upto - g->punched)) != 0)
        g->punch = 0; /* not here (EOPNOTSUPP): the writer frees the file whole */
    else
        g->punched = upto;
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
    size_t want = left < PHT_CHUNK_SIZE ? (size_t)left : PHT_CHUNK_SIZE;
    int irc = pht_interrupt_check(err);
    if (irc) return irc;
    ssize_t r = pread(g->src_fd, g->chunk, want, (off_t)(g->src_off + g->sent));
    if (r < 0 && errno == EINTR) return 0;
    if (r <= 0)
        return tarsafe_fail(err, PHT_EIO, g->p->layers[g->li], NULL, "read failed: %s",
                            r < 0 ? strerror(errno) : "unexpected end of file");
    if (archive_write_data(g->a, g->chunk, (size_t)r) != r) return gen_fail(g, err, "layer");
    g->sent += (uint64_t)r;
    g->bytes_sent += (uint64_t)r;
    gen_punch(g);
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

int daemon_load_read(void *ud, void *buf, size_t cap, size_t *got, pht_error *err)
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
    g->chunk = malloc(PHT_CHUNK_SIZE);
    if (g->a == NULL || g->chunk == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    archive_write_set_format_pax_restricted(g->a);
    archive_write_set_bytes_per_block(g->a, 0); /* hand every byte on at once */
    if (archive_write_open2(g->a, g, NULL, gen_write, NULL, NULL) != ARCHIVE_OK)
        return gen_fail(g, err, "open");
    return 0;
}

void daemon_load_free(daemon_load *g)
{
    if (g == NULL) return;
    if (g->a) archive_write_free(g->a);
    if (g->spool_fd >= 0) close(g->spool_fd);
    free(g->out);
    free(g->chunk);
    free(g);
}

int daemon_load_new(const img_plan *p, const char *const *tags, size_t ntags, size_t known,
                    daemon_load **out, pht_error *err)
{
    gen *g = calloc(1, sizeof *g);
    *out = NULL;
    if (g == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    int rc = gen_init(g, p, tags, ntags, known, err);
    if (rc) {
        daemon_load_free(g);
        return rc;
    }
    *out = g;
    return 0;
}
