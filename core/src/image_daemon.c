/*
 * The docker-daemon transport: images in the local Docker engine, by name.
 *
 *   docker-daemon:NAME[:TAG]        read and write ("NAME" means NAME:latest)
 *   docker-daemon:NAME@sha256:HEX   read
 *   docker-daemon:sha256:HEX        read (an image id)
 *
 * Reading asks the engine for what it knows without exporting the image:
 * the name is resolved to the image id once (GET /images/{name}/json), and
 * every later call names that id, so a tag that moves meanwhile cannot mix
 * two images. The diff_ids, the config fields and the history (GET
 * /images/{id}/history) rebuild the image config (daemon_config.c); the
 * layers carry no bytes.
 * What a caller reads lands on demand (image_private.h): the merged /opt as
 * the tar GET /containers/{id}/archive?path=/opt gives of a container
 * created for it and never started (removed on every path; labelled with
 * its owner, so that one a killed process left is removed by the next
 * read), indexed as one pseudo-layer; anything outside /opt, or a commit
 * to another transport, lands every layer by saving the image (GET
 * /images/{id}/get) into an unlinked temporary file read as a
 * docker-archive, whose config must hash to the id. When the history does
 * not tell for certain which entries have a layer, the open saves the image
 * at once, as above.
 *
 * Writing streams a docker-archive straight into POST /images/load, built on
 * the fly 64 KiB at a time: the config, the layers the daemon does not hold
 * yet, and the manifest naming every layer and the tags. Layers the daemon
 * already has (the leading layers shared with the image a tag names now, or
 * with the base image when the daemon holds it) are left out: the classic
 * image store looks a layer up by its chain id before it opens the layer's
 * file. docker load moves the tags only once the whole
 * image is in, so a failure leaves them where they were; an image left
 * without a tag by the move is removed when nothing else needs it. A retag
 * of a daemon image tags its id. A commit to the tag the source was read by
 * fails, writing nothing, when that tag names another image by then.
 * doc/daemon.md says why this path and not containers plus commit.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs_private.h"
#include "hash_private.h"
#include "transport_private.h"
#include "pht/docker.h"
#include "pht/interrupt.h"
#include "pht/owner.h"

/* The label of a scratch container: "PID.START@HOST/BOOT" of the process that made it. */
#define SCRATCH_LABEL "org.pht.libpht.scratch"
#define SCRATCH_PREFIX "libpht-scratch-"
/*
 * A test hook (doc/testing.md): "SECONDS[:FILE]" waits after creating a
 * scratch container, SECONDS at most and until FILE exists, so a spec can
 * kill the process or move a tag between create and remove.
 */
#define PAUSE_ENV "PHT_TEST_PAUSE_AFTER_CREATE"
#define VIEW_ROOT "opt"

typedef struct dmn {
    char id[PHT_DOCKER_ID_MAX]; /* every call after the first names this */
    char *tag;                  /* the NAME[:TAG] read, NULL for an id or digest */
    int failed[3];              /* by IMG_LANDED_*: a landing that failed, returned again */
    pht_error why[3];
    char *store; /* the engine's overlay2 data root (daemon_store.c), NULL if none */
} dmn;

static int oom(pht_error *err)
{
    return pht_error_set(err, PHT_ENOMEM, "out of memory");
}

static cJSON *item(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

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

/* 1 if two NAME[:TAG] name the same tag (a bare NAME is NAME:latest). */
static int same_tag(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int ta = img_ref_has_tag(a), tb = img_ref_has_tag(b);
    if (ta == tb) return strcmp(a, b) == 0;
    if (ta) return same_tag(b, a);
    return lb == la + 7 && strncmp(a, b, la) == 0 && strcmp(b + la, ":latest") == 0;
}

/* The id of an image, whatever transport read it: the digest of its config. */
static int image_id(const pht_image *img, char *id, pht_error *err)
{
    if (img->tp == &img_docker_daemon) {
        snprintf(id, IMG_DIGEST_MAX, "%s", ((const dmn *)img->tpdata)->id);
        return 0;
    }
    return hash_sha256_buf(img->config, img->config_len, id, err);
}

/* ---- saving the whole image --------------------------------------------------------- */

/* What the daemon sends while an image lands: into the file fd, reported as o's progress. */
typedef struct landing {
    int fd;
    const pht_image_opts *o;
} landing;

static int landing_sink(void *ud, const void *data, size_t n, pht_error *err)
{
    landing *l = ud;
    int rc = fs_write_all(l->fd, data, n, "write", err);
    if (rc == 0) img_progress(l->o, n);
    return rc;
}

/* Save image id into an unlinked temporary file; *fd open on it. */
static int save_tmp(pht_docker *d, const pht_image *img, const char *id, int *fd, pht_error *err)
{
    int rc = fs_tmp_anon(img->tmpdir, fd, err);
    landing l = {*fd, &img->opts};
    if (rc == 0 && (rc = pht_docker_image_save(d, id, landing_sink, &l, err)) == PHT_EIO)
        pht_error_prefix(err, "temporary file in %s", img->tmpdir);
    return rc;
}

/* The docker-archive reference of an open file (reachable through /proc while it is open). */
static void fd_ref(int fd, char *out, size_t cap)
{
    snprintf(out, cap, "docker-archive:/proc/self/fd/%d", fd);
}

static int check_saved_config(const pht_image *img, const char *id, pht_error *err)
{
    char digest[IMG_DIGEST_MAX];
    int rc = hash_sha256_buf(img->config, img->config_len, digest, err);
    if (rc == 0 && strcmp(digest, id) != 0)
        rc = pht_error_set(err, PHT_EVERIFY, "the daemon saved image %s with config digest %s", id,
                           digest);
    return rc;
}

/* Read image id as the daemon saves it: layers, config and manifest straight into img. */
static int open_saved(pht_image *img, pht_docker *d, const char *id, pht_error *err)
{
    int fd = -1;
    char path[64];
    pht_image_ref *saved = NULL;
    int rc = save_tmp(d, img, id, &fd, err);
    if (rc == 0) {
        fd_ref(fd, path, sizeof path);
        if ((rc = pht_image_ref_parse(path, 0, &saved, err)) ||
            (rc = img_docker_archive.open(img, saved, err)))
            pht_error_prefix(err, "the daemon's archive of %s", id);
    }
    if (rc == 0) rc = check_saved_config(img, id, err);
    if (fd >= 0) close(fd);
    pht_image_ref_free(saved);
    return rc;
}

/* A client for $DOCKER_HOST with the limits of opts->docker_timeout (checked at open). */
static int dmn_docker(const pht_image_opts *o, pht_docker **d, pht_error *err)
{
    int rc = pht_docker_open(d, NULL, err);
    if (rc == 0 && o && o->docker_timeout) {
        pht_docker_timeouts t;
        pht_docker_get_timeouts(*d, &t);
        if ((rc = pht_docker_timeouts_parse(&t, o->docker_timeout, err)) == 0)
            pht_docker_set_timeouts(*d, &t);
        else {
            pht_docker_free(*d);
            *d = NULL;
        }
    }
    return rc;
}

/* ---- reading --------------------------------------------------------------------- */

static int dmn_open(pht_image *img, const pht_image_ref *ref, pht_error *err)
{
    char *name = NULL, *text = NULL;
    pht_docker *d = NULL;
    cJSON *ij = NULL, *hj = NULL, *history = NULL;
    dmn *st = calloc(1, sizeof *st);
    img->tpdata = st;
    int rc = st ? 0 : oom(err);
    if (rc || (rc = img_ref_image_name(ref, &name, err)) || (rc = dmn_docker(&img->opts, &d, err)))
        goto done;
    if ((rc = pht_docker_image_inspect_json(d, name, &text, err))) {
        /* The reference already names the image (pht_image_open prefixes it). */
        if (rc == PHT_ENOTFOUND)
            pht_error_set(err, rc, "the Docker daemon at %s has no such image (HTTP 404)",
                          pht_docker_host(d));
        goto done;
    }
    const char *id;
    if ((ij = json_parse(text, "the daemon's image inspect", err)) == NULL) {
        rc = PHT_EFORMAT;
        goto done;
    }
    if (!hash_sha256_valid(id = cJSON_GetStringValue(item(ij, "Id")))) {
        rc = pht_error_set(err, PHT_EFORMAT,
                           "inspect image %s: the daemon's answer has no image Id", name);
        goto done;
    }
    snprintf(st->id, sizeof st->id, "%s", id);
    if (pht_image_ref_digest(ref) == NULL && (st->tag = strdup(name)) == NULL) {
        rc = oom(err);
        goto done;
    }
    const cJSON *diffs = item(item(ij, "RootFS"), "Layers");
    st->store = daemon_store_root(item(ij, "GraphDriver"));
    free(text);
    text = NULL;
    pht_error e;
    if (pht_docker_image_history_json(d, st->id, &text, &e) == 0 && (hj = cJSON_Parse(text)))
        history = daemon_history(hj, (size_t)cJSON_GetArraySize(diffs));
    if (history == NULL) { /* the config is not certain without its bytes */
        rc = open_saved(img, d, st->id, err);
        goto done;
    }
    if ((rc = daemon_layers(img, diffs, err))) {
        cJSON_Delete(history);
        goto done;
    }
    img->config = daemon_config(ij, history, diffs);
    img->manifest = daemon_manifest(st->id, item(ij, "RepoTags"), img);
    if (img->config == NULL || img->manifest == NULL) {
        rc = oom(err);
        goto done;
    }
    img->config_len = strlen(img->config);
    img->landed = IMG_LANDED_NONE;
    img->view_root = VIEW_ROOT;
done:
    cJSON_Delete(ij);
    cJSON_Delete(hj);
    free(text);
    pht_docker_free(d);
    free(name);
    return rc;
}

/* ---- scratch containers ------------------------------------------------------------- */

typedef struct reaper {
    pht_docker *d;
} reaper;

/* Remove a scratch container whose owner is gone (pht_owner_gone). */
static int reap_one(void *ud, const pht_docker_container *c, const char *owner)
{
    reaper *r = ud;
    if (!pht_owner_gone(owner)) return 0;
    pht_error e;
    pht_docker_container_remove(r->d, c->id, &e); /* gone meanwhile is fine */
    return 0;
}

static void test_pause(void)
{
    const char *v = getenv(PAUSE_ENV), *file = v ? strchr(v, ':') : NULL;
    struct timespec step = {0, 50 * 1000 * 1000};
    for (long n = v ? 20 * strtol(v, NULL, 10) : 0; n > 0; n--) {
        if (file && access(file + 1, F_OK) == 0) break;
        nanosleep(&step, NULL);
    }
}

/* Create a never-started container of image id, labelled with its owner; cid gets its id. */
static int scratch_create(pht_docker *d, const char *id, char *cid, pht_error *err)
{
    char owner[PHT_OWNER_MAX], name[96];
    pht_owner_self(owner, sizeof owner);
    cJSON *c = cJSON_CreateObject(), *labels = cJSON_AddObjectToObject(c, "Labels");
    cJSON *entry = cJSON_AddArrayToObject(c, "Entrypoint");
    cJSON *host = cJSON_AddObjectToObject(c, "HostConfig");
    cJSON_AddStringToObject(c, "Image", id);
    cJSON_AddItemToArray(entry, cJSON_CreateString("/" SCRATCH_PREFIX "never-started"));
    cJSON_AddStringToObject(c, "WorkingDir", "/");
    cJSON_AddTrueToObject(c, "NetworkDisabled");
    cJSON_AddStringToObject(labels, SCRATCH_LABEL, owner);
    cJSON_AddStringToObject(host, "NetworkMode", "none");
    char *body = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    if (body == NULL) return oom(err);
    int rc = PHT_ESTATE;
    for (int attempt = 0; attempt < 3 && rc == PHT_ESTATE; attempt++) { /* a name taken: another */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(name, sizeof name, SCRATCH_PREFIX "%ld-%llx", (long)getpid(),
                 (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
        rc = pht_docker_container_create(d, name, body, cid, err);
    }
    free(body);
    if (rc == 0) test_pause();
    return rc;
}

/* The tree at the view's root must be a directory. */
static int check_view(const pht_image *img, const char *id, pht_error *err)
{
    long at = index_find(&img->index, VIEW_ROOT);
    const img_entry *e = at >= 0 ? img->index.v[at] : NULL;
    if (e && e->type == PHT_IMAGE_DIR) return 0;
    if (e && e->type == PHT_IMAGE_SYMLINK)
        return pht_error_set(err, PHT_EFORMAT,
                             "/" VIEW_ROOT
                             " is a symlink to \"%.300s\" in image %s; a train's /" VIEW_ROOT
                             " is a directory",
                             e->link, id);
    return pht_error_set(err, PHT_EFORMAT, "/" VIEW_ROOT " is not a directory in image %s", id);
}

/*
 * The merged /opt from the engine's overlay2 store where it can be read (daemon_store_view:
 * no container, no tar from the engine): 0 with *fd the landed view; 1 to ask the engine.
 */
static int land_store(pht_image *img, const dmn *st, int *fd, daemon_store_src **srcs,
                      size_t *nsrcs, pht_error *err)
{
    if (st->store == NULL) return 1;
    int rc = fs_tmp_anon(img->tmpdir, fd, err);
    if (rc == 0) rc = daemon_store_view(img, st->store, *fd, srcs, nsrcs, err);
    if (rc == PHT_ENOTFOUND) pht_error_prefix(err, "image %s has no /" VIEW_ROOT, st->id);
    if (rc && *fd >= 0) {
        close(*fd); /* what it held of /opt goes with it */
        *fd = -1;
    }
    return rc;
}

/* Point the view's regular files at where the store holds their bytes. */
static int bind_sources(pht_image *img, daemon_store_src *srcs, size_t n, pht_error *err)
{
    for (size_t i = 0; i < n; i++) {
        long k = index_find(&img->index, srcs[i].name);
        img_entry *e = k >= 0 ? img->index.v[k] : NULL;
        if (e == NULL || e->type != PHT_IMAGE_FILE || e->layer != -1)
            return pht_error_set(err, PHT_EFORMAT, "/%.300s: not a file of the landed view",
                                 srcs[i].name);
        e->source = srcs[i].full;
        srcs[i].full = NULL;
        e->size = srcs[i].size;
        e->data_offset = 0;
    }
    return 0;
}

/* Land the merged /opt: from the store, else the archive of a scratch container, removed on
 * every path. */
static int land_view(pht_image *img, const dmn *st, pht_error *err)
{
    reaper r = {0};
    char cid[PHT_DOCKER_ID_MAX] = "";
    int fd = -1;
    daemon_store_src *srcs = NULL;
    size_t nsrcs = 0;
    int rc = dmn_docker(&img->opts, &r.d, err);
    if (rc == 0) {
        /* what killed processes left, whichever way this read goes */
        pht_error e;
        pht_docker_containers_labelled(r.d, SCRATCH_LABEL, reap_one, &r, &e);
        rc = land_store(img, st, &fd, &srcs, &nsrcs, err);
        if (rc == 1 && (rc = scratch_create(r.d, st->id, cid, err)) == 0 &&
            (rc = fs_tmp_anon(img->tmpdir, &fd, err)) == 0) {
            landing l = {fd, &img->opts};
            rc = pht_docker_container_archive(r.d, cid, "/" VIEW_ROOT, landing_sink, &l, err);
            if (rc == PHT_ENOTFOUND) pht_error_prefix(err, "image %s has no /" VIEW_ROOT, st->id);
            if (rc == PHT_EIO) pht_error_prefix(err, "temporary file in %s", img->tmpdir);
        }
    }
    if (cid[0]) {
        pht_error e; /* gone already, or left to the next read to remove */
        pht_docker_container_remove(r.d, cid, &e);
    }
    pht_docker_free(r.d);
    struct stat sb;
    if (rc == 0 && fstat(fd, &sb) != 0)
        rc = pht_error_set(err, PHT_EIO, "temporary file in %s: %s", img->tmpdir, strerror(errno));
    if (rc == 0) {
        img->view = (img_layer){.fd = fd, .length = (uint64_t)sb.st_size};
        snprintf(img->view.digest, sizeof img->view.digest, "%s", st->id);
        fd = -1;
        if ((rc = index_build_view(img, err)) == 0 &&
            (rc = bind_sources(img, srcs, nsrcs, err)) == 0)
            rc = check_view(img, st->id, err);
        if (rc) {
            index_free(&img->index);
            layer_clear(&img->view);
        }
    }
    if (fd >= 0) close(fd);
    daemon_store_srcs_free(srcs, nsrcs);
    if (rc == 0) img->landed = IMG_LANDED_VIEW;
    return rc;
}

/* Land every layer: save the image, check it is the one the daemon reported, take its layers. */
static int land_all(pht_image *img, const dmn *st, pht_error *err)
{
    pht_docker *d = NULL;
    pht_image *full = NULL;
    int fd = -1;
    char path[64];
    int rc = dmn_docker(&img->opts, &d, err);
    if (rc == 0) rc = save_tmp(d, img, st->id, &fd, err);
    if (rc == 0) {
        fd_ref(fd, path, sizeof path);
        if ((rc = pht_image_open(&full, path, &img->opts, err)))
            pht_error_prefix(err, "the daemon's archive of %s", st->id);
    }
    if (rc == 0) rc = check_saved_config(full, st->id, err);
    if (rc == 0 && full->nlayers != img->nlayers)
        rc = pht_error_set(err, PHT_EVERIFY, "the daemon saved image %s with %zu layers, not %zu",
                           st->id, full->nlayers, img->nlayers);
    for (size_t i = 0; rc == 0 && i < img->nlayers; i++) {
        const img_layer *a = &img->layers[i], *b = &full->layers[i];
        if (strcmp(a->diff_id, b->diff_id) != 0 ||
            strcmp(a->created_by ? a->created_by : "", b->created_by ? b->created_by : "") ||
            strcmp(a->comment ? a->comment : "", b->comment ? b->comment : ""))
            rc = pht_error_set(err, PHT_EVERIFY,
                               "layer %zu of image %s as the daemon saved it differs from what it "
                               "reported",
                               i, st->id);
    }
    for (size_t i = 0; rc == 0 && i < img->nlayers; i++) {
        img_layer *to = &img->layers[i], *from = &full->layers[i];
        to->fd = from->fd;
        from->fd = -1;
        to->offset = from->offset;
        to->length = from->length;
        to->compression = from->compression;
        to->diff_size = from->diff_size;
        to->digest_known = from->digest_known;
        to->verified = from->verified;
        to->holds_opt = from->holds_opt;
        free(to->outside);
        to->outside = from->outside; /* what its scan found above a master */
        to->outside_why = from->outside_why;
        to->outside_dir = from->outside_dir;
        from->outside = NULL;
        memcpy(to->digest, from->digest, sizeof to->digest);
        memcpy(to->media_type, from->media_type, sizeof to->media_type);
    }
    if (rc == 0) {
        index_free(&img->index); /* a view's: its layer stays for the readers on it */
        img->index = full->index;
        full->index = (img_index){0};
        img->landed = IMG_LANDED_ALL;
    }
    if (fd >= 0) close(fd);
    pht_image_free(full);
    pht_docker_free(d);
    return rc;
}

/* Land what want names; a failure is kept and returned again rather than retried. */
static int dmn_land(pht_image *img, int want, pht_error *err)
{
    dmn *st = img->tpdata;
    if (!st->failed[want]) {
        pht_error e = {0};
        int rc = want == IMG_LANDED_VIEW ? land_view(img, st, &e) : land_all(img, st, &e);
        if (rc == 0) return 0;
        if (e.code == 0) pht_error_set(&e, rc, "failed");
        pht_error_prefix(&e, "%.200s", pht_image_ref_string(img->ref));
        st->why[want] = e;
        st->failed[want] = 1;
    }
    if (err) *err = st->why[want];
    return st->why[want].code;
}

/* The layers above a master from the engine's store, where it can be read (daemon_store.c). */
static int dmn_scan_above(pht_image *img, size_t from, size_t to, pht_error *err)
{
    dmn *st = img->tpdata;
    return daemon_store_scan(img, st ? st->store : NULL, from, to, err);
}

static void dmn_close(pht_image *img)
{
    dmn *st = img->tpdata;
    if (st) {
        free(st->tag);
        free(st->store);
    }
    free(st);
    img->tpdata = NULL;
}

static int dmn_dest_tag(const pht_image_ref *ref, char **where, char **tag, pht_error *err)
{
    *tag = NULL;
    int rc = dest_name(ref, where, err);
    if (rc == 0 && (*tag = strdup(*where)) == NULL) {
        free(*where);
        *where = NULL;
        rc = oom(err);
    }
    return rc;
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
 * diff_ids shared with an image a destination tag names now, with the base
 * image when the daemon has it (its id is its config's digest, wherever it
 * was read from), or with a destination's REPO:base, the protocol's name for
 * the image a train was built on. Those layers are neither sent nor landed,
 * so a train pulled from a registry into an engine that holds its base
 * fetches none of the base's blobs. 0 when the daemon keeps images in
 * containerd, whose import needs every blob.
 */
static size_t known_layers(pht_docker *d, const img_plan *p, const pht_docker_image_info *old,
                           char *const *tags, size_t nold)
{
    size_t best = 0;
    for (size_t t = 0; t < nold; t++) {
        size_t k = shared_prefix(p, &old[t]);
        if (k > best) best = k;
    }
    char id[IMG_DIGEST_MAX];
    pht_docker_image_info base;
    pht_error e;
    if (best < p->nlayers && p->base && p->base->config && image_id(p->base, id, &e) == 0 &&
        pht_docker_image_inspect(d, id, &base, &e) == 0) {
        size_t k = shared_prefix(p, &base);
        if (k > best) best = k;
        pht_docker_image_info_clear(&base);
    }
    for (size_t t = 0; t < nold && best < p->nlayers; t++) {
        const char *colon = strrchr(tags[t], ':'), *slash = strrchr(tags[t], '/');
        size_t repo =
            colon && (!slash || colon > slash) ? (size_t)(colon - tags[t]) : strlen(tags[t]);
        char name[1024];
        if (repo + sizeof ":base" > sizeof name) continue;
        snprintf(name, sizeof name, "%.*s:base", (int)repo, tags[t]);
        if (pht_docker_image_inspect(d, name, &base, &e) != 0) continue;
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

/*
 * A commit to the tag the source was read by: that tag must still name the
 * image read, or nothing is written (someone moved or removed it meanwhile).
 */
static int check_in_place(const img_plan *p, char **tags, const pht_docker_image_info *old,
                          pht_error *err)
{
    const dmn *st = p->src && p->src->tp == &img_docker_daemon ? p->src->tpdata : NULL;
    for (size_t i = 0; st && st->tag && i < p->ntags; i++) {
        if (!same_tag(tags[i], st->tag) || strcmp(old[i].id, st->id) == 0) continue;
        if (old[i].id[0] == '\0')
            return pht_error_set(err, PHT_ESTATE,
                                 "%s was read as image %s and has been removed since; nothing "
                                 "written",
                                 tags[i], st->id);
        return pht_error_set(err, PHT_ESTATE,
                             "%s was read as image %s but names %s now; nothing written", tags[i],
                             st->id, old[i].id);
    }
    return 0;
}

/* The layers the load sends must have bytes: land those of a base read without them. */
static int land_unsent(const img_plan *p, size_t known, pht_error *err)
{
    for (size_t i = known; i < p->nlayers; i++) {
        if (p->layers[i]->fd >= 0) continue;
        int rc = 0;
        if (p->base && p->base->landed != IMG_LANDED_ALL && p->base->tp->fetch)
            rc = p->base->tp->fetch(p->base, i, err); /* only what the load sends */
        else if (p->base)
            rc = img_land(p->base, IMG_LANDED_ALL, err);
        if (rc) return rc;
        if (p->layers[i]->fd < 0)
            return pht_error_set(err, PHT_ESTATE, "layer %s has no bytes to send",
                                 p->layers[i]->diff_id);
    }
    return 0;
}

static int tag_all(pht_docker *d, const char *id, char **tags, size_t n, pht_error *err)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = pht_docker_image_tag(d, id, tags[i], err);
    return rc;
}

static int dmn_commit(const char *where, const img_plan *p, pht_error *err)
{
    (void)where; /* the first of p->tags */
    pht_docker *d = NULL;
    char **tags = NULL;
    pht_docker_image_info *old = calloc(p->ntags + 1, sizeof *old);
    daemon_load *g = NULL;
    int rc = old ? 0 : pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc || (rc = norm_tags(p, &tags, err)) || (rc = dmn_docker(p->opts, &d, err))) goto done;
    for (size_t i = 0; i < p->ntags; i++) {
        rc = pht_docker_image_inspect(d, tags[i], &old[i], err);
        if (rc == PHT_ENOTFOUND) rc = 0;
        if (rc) goto done;
    }
    if ((rc = check_in_place(p, tags, old, err))) goto done;
    /* a daemon image unchanged: tag its id (its config here is rebuilt, not its bytes) */
    int retag = p->retag && p->src && p->src->tp == &img_docker_daemon;
    char new_id[IMG_DIGEST_MAX];
    snprintf(new_id, sizeof new_id, "%s",
             retag ? ((const dmn *)p->src->tpdata)->id : p->config_digest);
    if (retag) {
        rc = tag_all(d, new_id, tags, p->ntags, err);
    } else {
        size_t known = known_layers(d, p, old, tags, p->ntags);
        if ((rc = land_unsent(p, known, err)) ||
            (rc = daemon_load_new(p, (const char *const *)tags, p->ntags, known, &g, err)))
            goto done;
        if ((rc = pht_docker_image_load(d, daemon_load_read, g, NULL, err))) {
            /* a daemon that stored the image before it failed keeps it untagged: drop it */
            pht_docker_prune_image(d, new_id, NULL, NULL);
            goto done;
        }
    }
    /* the tags moved; check they name the image just written */
    for (size_t i = 0; i < p->ntags && rc == 0; i++) {
        pht_docker_image_info now;
        if ((rc = pht_docker_image_inspect(d, tags[i], &now, err))) break;
        if (strcmp(now.id, new_id) != 0)
            rc = pht_error_set(err, PHT_EVERIFY, "after the %s %s names %s, not the new image %s",
                               retag ? "tag" : "load", tags[i], now.id, new_id);
        pht_docker_image_info_clear(&now);
    }
    if (rc) {
        restore_tags(d, tags, old, p->ntags, new_id);
        if (!retag) pht_docker_prune_image(d, new_id, NULL, NULL);
        goto done;
    }
    /* the images the tags named before, now without a tag, go when nothing needs them */
    for (size_t i = 0; i < p->ntags; i++)
        if (old[i].id[0] && strcmp(old[i].id, new_id) != 0)
            pht_docker_prune_image(d, old[i].id, NULL, NULL);
done:
    daemon_load_free(g);
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
    .land = dmn_land,
    .scan_above = dmn_scan_above,
    .close = dmn_close,
    .dest_tag = dmn_dest_tag,
    .commit = dmn_commit,
    .lands_base = 1, /* land_unsent */
};
