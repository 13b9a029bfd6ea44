/*
 * libpht's Docker Engine client: the few Engine API calls (v1.41) a station
 * needs to keep trains in its local engine, over pht_http. Image archives
 * move as streams (`docker save` / `docker load` format), never whole in
 * memory.
 *
 * The endpoint is the host argument, else $DOCKER_HOST, else
 * unix:///var/run/docker.sock. Handles are not thread-safe.
 */
#ifndef PHT_DOCKER_H
#define PHT_DOCKER_H

#include <stddef.h>
#include <stdint.h>

#include "pht/error.h"
#include "pht/http.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PHT_DOCKER_API_VERSION "1.41"
#define PHT_DOCKER_DEFAULT_HOST "unix:///var/run/docker.sock"
#define PHT_DOCKER_ID_MAX 80 /* "sha256:" + 64 hex digits + NUL, with room */

typedef struct pht_docker pht_docker;

/*
 * A client for host (NULL or "": $DOCKER_HOST, else the default socket).
 * Nothing is connected yet. Free with pht_docker_free. PHT_EINVAL for an
 * endpoint libpht cannot speak to (ssh://, fd://), or a $PHT_DOCKER_TIMEOUT
 * that pht_docker_timeouts_parse refuses.
 */
PHT_API int pht_docker_open(pht_docker **out, const char *host, pht_error *err);

/* NULL is fine. */
PHT_API void pht_docker_free(pht_docker *d);

/*
 * The limits of the client's calls, in seconds (see pht_http_timeouts; 0: no
 * limit). call: ping, version, inspect, history, lists, tag, remove, create
 * (default connect 30, idle 60, total 300); stream: image save and load, the
 * archive of a container path, whose length has no bound (connect 30, idle
 * 600, no total). A client starts with the defaults, then $PHT_DOCKER_TIMEOUT
 * applied as by pht_docker_timeouts_parse.
 */
typedef struct pht_docker_timeouts {
    pht_http_timeouts call;
    pht_http_timeouts stream;
} pht_docker_timeouts;

#define PHT_DOCKER_TIMEOUT_ENV "PHT_DOCKER_TIMEOUT"

/* The defaults above. */
PHT_API void pht_docker_timeouts_init(pht_docker_timeouts *t);

/*
 * Change *t by spec: "SECONDS" (the idle limit of every call), or a comma
 * list of KEY=SECONDS with KEY connect (both kinds), idle, total (calls),
 * stream-idle, stream-total; e.g. "idle=30,total=120,stream-idle=300".
 * PHT_EINVAL (t unchanged) names the item that is not one of these.
 */
PHT_API int pht_docker_timeouts_parse(pht_docker_timeouts *t, const char *spec, pht_error *err);

/* The limits of every later call of d; NULL restores the defaults. _get copies them. */
PHT_API void pht_docker_set_timeouts(pht_docker *d, const pht_docker_timeouts *t);
PHT_API void pht_docker_get_timeouts(const pht_docker *d, pht_docker_timeouts *out);

/* The endpoint in use, e.g. "unix:///var/run/docker.sock". */
PHT_API const char *pht_docker_host(const pht_docker *d);

/* GET /_ping: 0 when the daemon answers. PHT_EHTTP names the endpoint and why not. */
PHT_API int pht_docker_ping(pht_docker *d, pht_error *err);

/* What GET /version says. */
typedef struct pht_docker_version_info {
    char version[64];         /* engine version, "20.10.24+dfsg1" */
    char api_version[16];     /* highest API version, "1.41" */
    char min_api_version[16]; /* lowest API version, "1.12" */
    char os[32], arch[32];
} pht_docker_version_info;

PHT_API int pht_docker_version(pht_docker *d, pht_docker_version_info *out, pht_error *err);

/* The part of GET /images/{name}/json libpht uses. Release with pht_docker_image_info_clear. */
typedef struct pht_docker_image_info {
    char id[PHT_DOCKER_ID_MAX]; /* "sha256:<hex>", the digest of the image config */
    char **tags;                /* RepoTags, "repo:tag" */
    size_t ntags;
    char **digests;             /* RepoDigests, "repo@sha256:<hex>" */
    size_t ndigests;
    char **layers;              /* RootFS.Layers: the diff_ids, bottom first */
    size_t nlayers;
    int64_t size;
} pht_docker_image_info;

/*
 * Inspect the image name ("repo:tag", "repo@sha256:…", an image id). out is
 * overwritten. PHT_ENOTFOUND when the daemon has no such image, PHT_EINVAL for
 * a name that is not a Docker reference.
 */
PHT_API int pht_docker_image_inspect(pht_docker *d, const char *name, pht_docker_image_info *out,
                                     pht_error *err);
PHT_API void pht_docker_image_info_clear(pht_docker_image_info *info);

/*
 * GET /images/{name}/get: stream the image as a `docker save` tar to sink (or,
 * with _fd, write it to fd). PHT_ENOTFOUND when the image is missing.
 */
PHT_API int pht_docker_image_save(pht_docker *d, const char *name, pht_http_sink sink, void *ud,
                                  pht_error *err);
PHT_API int pht_docker_image_save_fd(pht_docker *d, const char *name, int fd, pht_error *err);

/*
 * POST /images/load: stream a `docker save` tar from source (or, with _fd,
 * from fd until its end). The daemon's report ("Loaded image: repo:tag", one
 * per line) goes to *report when report is not NULL (malloc'ed). An error the
 * daemon reports in its answer fails with PHT_EHTTP and that message.
 */
PHT_API int pht_docker_image_load(pht_docker *d, pht_http_source source, void *ud, char **report,
                                  pht_error *err);
PHT_API int pht_docker_image_load_fd(pht_docker *d, int fd, char **report, pht_error *err);

/* POST /images/{name}/tag: point target ("repo:tag"; bare "repo" means ":latest") at name. */
PHT_API int pht_docker_image_tag(pht_docker *d, const char *name, const char *target,
                                 pht_error *err);

enum {
    PHT_DOCKER_FORCE = 1,  /* remove even if containers use it or other tags name it */
    PHT_DOCKER_NOPRUNE = 2 /* keep untagged parent images */
};

/*
 * DELETE /images/{name}: untag a "repo:tag", or remove an image by id.
 * PHT_ENOTFOUND when missing, PHT_ESTATE when the daemon refuses (HTTP 409:
 * a container uses it, another tag or a child image needs it).
 */
PHT_API int pht_docker_image_remove(pht_docker *d, const char *name, int flags, pht_error *err);

/*
 * Remove an image libpht left without a tag (after it moved the tag to a new
 * image) if it is dangling: no tag, no container, no child image. *removed
 * (may be NULL) says whether it went. A missing or still needed image is not
 * an error.
 */
PHT_API int pht_docker_prune_image(pht_docker *d, const char *id, int *removed, pht_error *err);

/* One container of GET /containers/json. Strings point into the answer. */
typedef struct pht_docker_container {
    const char *id;
    const char *name;     /* first name, without the leading '/' */
    const char *image;    /* as the container was created from */
    const char *image_id; /* "sha256:<hex>" */
    const char *state;    /* "running", "exited", "created", … */
} pht_docker_container;

typedef int (*pht_docker_container_cb)(void *ud, const pht_docker_container *c);

/*
 * Visit the containers (all != 0: stopped ones too), optionally filtered by
 * filters_json (the Engine's filter object, e.g. {"ancestor":["repo:tag"]}).
 * A non-zero return of cb stops the walk and is returned.
 */
PHT_API int pht_docker_containers(pht_docker *d, int all, const char *filters_json,
                                  pht_docker_container_cb cb, void *ud, pht_error *err);

/*
 * Visit the containers of any state that carry the label key, with the
 * label's value (strings point into the answer). A non-zero return of cb
 * stops the walk and is returned.
 */
typedef int (*pht_docker_labelled_cb)(void *ud, const pht_docker_container *c, const char *value);
PHT_API int pht_docker_containers_labelled(pht_docker *d, const char *key,
                                           pht_docker_labelled_cb cb, void *ud, pht_error *err);

/*
 * Visit the images (GET /images/json: tagged and dangling, not the
 * intermediate ones) that carry the label key, with their id and the
 * label's value (strings point into the answer). A non-zero return of cb
 * stops the walk and is returned.
 */
typedef int (*pht_docker_image_labelled_cb)(void *ud, const char *id, const char *value);
PHT_API int pht_docker_images_labelled(pht_docker *d, const char *key,
                                       pht_docker_image_labelled_cb cb, void *ud, pht_error *err);

/*
 * The answers of GET /images/{name}/json and GET /images/{name}/history as
 * JSON text (*json malloc'ed, NUL-terminated), for the fields
 * pht_docker_image_info leaves out. Errors as pht_docker_image_inspect.
 */
PHT_API int pht_docker_image_inspect_json(pht_docker *d, const char *name, char **json,
                                          pht_error *err);
PHT_API int pht_docker_image_history_json(pht_docker *d, const char *name, char **json,
                                          pht_error *err);

/*
 * POST /containers/create?name=NAME: a container (not started) from the
 * Engine's create object config_json. id gets its id (PHT_DOCKER_ID_MAX).
 * PHT_ENOTFOUND for a missing image, PHT_ESTATE when the name is taken.
 */
PHT_API int pht_docker_container_create(pht_docker *d, const char *name, const char *config_json,
                                        char *id, pht_error *err);

/*
 * GET /containers/{id}/archive?path=PATH: the tar of path in the container's
 * filesystem (its top entry is path's last component; a symlink is not
 * followed) to sink, or with _fd written to fd. PHT_ENOTFOUND when path is
 * missing.
 */
PHT_API int pht_docker_container_archive(pht_docker *d, const char *id, const char *path,
                                         pht_http_sink sink, void *ud, pht_error *err);
PHT_API int pht_docker_container_archive_fd(pht_docker *d, const char *id, const char *path, int fd,
                                            pht_error *err);

/*
 * DELETE /containers/{id}?force=1&v=1: remove the container whatever its
 * state, with its anonymous volumes. PHT_ENOTFOUND when it is gone already.
 */
PHT_API int pht_docker_container_remove(pht_docker *d, const char *id, pht_error *err);

/*
 * POST /containers/{id}/start: start a created container. PHT_ENOTFOUND when
 * it does not exist.
 */
PHT_API int pht_docker_container_start(pht_docker *d, const char *id, pht_error *err);

/*
 * POST /containers/{id}/wait: block until the container stops (the stream's
 * connect and total limits, no idle limit) and set *status to its exit
 * status (-1 on error).
 */
PHT_API int pht_docker_container_wait(pht_docker *d, const char *id, int *status,
                                      pht_error *err);

/*
 * POST /commit: an image of the container's filesystem, tagged repo:tag when
 * repo is non-empty (untagged otherwise); image_id gets its id
 * (PHT_DOCKER_ID_MAX). The container is not paused.
 */
PHT_API int pht_docker_container_commit(pht_docker *d, const char *id, const char *repo,
                                        const char *tag, char *image_id, pht_error *err);

/*
 * GET /containers/{id}/logs: the container's stdout and stderr, split from
 * the Engine's multiplexed stream as it arrives, to sinks out and errs (NULL:
 * dropped). The container must have been created without a TTY. follow != 0
 * streams until the container stops (no idle bound: a train may be silent
 * for hours). _fd writes to out_fd and err_fd (< 0: dropped). PHT_EFORMAT
 * for a stream that is not multiplexed or ends inside a frame.
 */
PHT_API int pht_docker_container_logs(pht_docker *d, const char *id, int follow, pht_http_sink out,
                                      void *out_ud, pht_http_sink errs, void *errs_ud,
                                      pht_error *err);
PHT_API int pht_docker_container_logs_fd(pht_docker *d, const char *id, int follow, int out_fd,
                                         int err_fd, pht_error *err);

/*
 * 1 if name is a Docker image reference libpht passes to the daemon
 * ("repo[:tag]", "repo@sha256:<hex>", "sha256:<hex>"), else 0 with err set.
 */
PHT_API int pht_docker_name_valid(const char *name, pht_error *err);

/* The pht_http handle under the client, for calls this API does not wrap. */
PHT_API pht_http *pht_docker_http(pht_docker *d);

#ifdef __cplusplus
}
#endif
#endif
