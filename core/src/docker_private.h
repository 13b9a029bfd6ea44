/*
 * What the Docker Engine client's two files share (docker.c: the client,
 * its calls and the image calls; docker_container.c: the container calls):
 * the handle and the call helpers. Not installed.
 */
#ifndef PHT_DOCKER_PRIVATE_H
#define PHT_DOCKER_PRIVATE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "pht/docker.h"

#define DK_JSON_MAX (16u << 20) /* inspect, container lists */

struct pht_docker {
    pht_http *http;
    char *host;
    pht_docker_timeouts limits;
};

/* "/v1.41" + the formatted path; malloc'ed (NULL: too long or out of memory). */
char *dk_api_path(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/*
 * One call to path (taken and freed; NULL: out of memory); resp holds the
 * answer afterwards, released by the caller. A failure names what, the
 * daemon's endpoint and the status and message it gave.
 */
int dk_call(pht_docker *d, pht_http_request *req, char *path, pht_http_response *resp,
            const char *what, pht_error *err);
/* A call whose answer is a JSON document, parsed; NULL with err set. */
cJSON *dk_json(pht_docker *d, const char *method, char *path, const char *what, pht_error *err);
/* A pht_http_sink writing to the file descriptor *(int *)ud. */
int dk_fd_sink(void *ud, const void *data, size_t n, pht_error *err);
/* The Engine's filter object {"label":[key]} as JSON text, or NULL (out of memory). */
char *dk_label_filter(const char *key);

#endif
