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
 * Writing (daemon_commit.c) streams a docker-archive into POST
 * /images/load.
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
#include "daemon_private.h"
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

static int oom(pht_error *err)
{
    return pht_error_set(err, PHT_ENOMEM, "out of memory");
}

static cJSON *item(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
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

int daemon_docker(const pht_image_opts *o, pht_docker **d, pht_error *err)
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
    if (rc || (rc = img_ref_image_name(ref, &name, err)) ||
        (rc = daemon_docker(&img->opts, &d, err)))
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
    int rc = daemon_docker(&img->opts, &r.d, err);
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
    int rc = daemon_docker(&img->opts, &d, err);
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
        to->diff_pending = from->diff_pending;
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

const img_transport img_docker_daemon = {
    .open = dmn_open,
    .land = dmn_land,
    .scan_above = dmn_scan_above,
    .close = dmn_close,
    .dest_tag = daemon_dest_tag,
    .commit = daemon_commit,
    .lands_base = 1, /* land_unsent */
};
