/*
 * The Docker Engine client's container calls: list (all, or by label),
 * create, the archive of a path, remove, start, wait, commit and the logs
 * (split into stdout and stderr from the Engine's multiplexed stream).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "docker_private.h"

/* Each container of GET /containers/json to cb, or with label's value to lcb. */
static int containers_walk(pht_docker *d, int all, const char *filters_json, const char *label,
                           pht_docker_container_cb cb, pht_docker_labelled_cb lcb, void *ud,
                           pht_error *err)
{
    char *ef = filters_json ? pht_http_escape(filters_json) : NULL;
    if (filters_json && ef == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    cJSON *j = dk_json(
        d, "GET",
        dk_api_path("/containers/json?all=%d%s%s", !!all, ef ? "&filters=" : "", ef ? ef : ""),
        "list containers", err);
    free(ef);
    if (j == NULL) return err ? err->code : PHT_EHTTP;
    int rc = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        const char *name = cJSON_GetStringValue(
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(it, "Names"), 0));
        pht_docker_container c = {
            .id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "Id")),
            .name = name ? name + (name[0] == '/') : "",
            .image = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "Image")),
            .image_id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "ImageID")),
            .state = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "State")),
        };
        if (c.id == NULL) continue;
        if (c.image == NULL) c.image = "";
        if (c.image_id == NULL) c.image_id = "";
        if (c.state == NULL) c.state = "";
        if (lcb) {
            cJSON *labels = cJSON_GetObjectItemCaseSensitive(it, "Labels");
            rc = lcb(ud, &c, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(labels, label)));
        } else {
            rc = cb(ud, &c);
        }
        if (rc != 0) break;
    }
    cJSON_Delete(j);
    return rc;
}

int pht_docker_containers(pht_docker *d, int all, const char *filters_json,
                          pht_docker_container_cb cb, void *ud, pht_error *err)
{
    return containers_walk(d, all, filters_json, NULL, cb, NULL, ud, err);
}

int pht_docker_containers_labelled(pht_docker *d, const char *key, pht_docker_labelled_cb cb,
                                   void *ud, pht_error *err)
{
    if (key == NULL || key[0] == '\0')
        return pht_error_set(err, PHT_EINVAL, "list containers: no label key");
    char *text = dk_label_filter(key);
    if (text == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    int rc = containers_walk(d, 1, text, key, NULL, cb, ud, err);
    free(text);
    return rc;
}

/* A call whose answer body the caller does not keep (it went to req's sink, if any). */
static int dk_send(pht_docker *d, pht_http_request *req, char *path, const char *what,
                   pht_error *err)
{
    pht_http_response resp;
    int rc = dk_call(d, req, path, &resp, what, err);
    pht_http_response_clear(&resp);
    return rc;
}

/* 1 if s is a container id or name ([A-Za-z0-9][A-Za-z0-9_.-]*), else 0 with err set. */
static int container_valid(const char *s, pht_error *err)
{
    size_t n = s ? strlen(s) : 0;
    if (n > 0 && n <= 255 &&
        strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n &&
        strchr("_.-", s[0]) == NULL)
        return 1;
    pht_error_set(err, PHT_EINVAL, "\"%.200s\" is not a container id or name", s ? s : "");
    return 0;
}

int pht_docker_container_create(pht_docker *d, const char *name, const char *config_json, char *id,
                                pht_error *err)
{
    id[0] = '\0';
    if (!container_valid(name, err)) return PHT_EINVAL;
    pht_http_request req;
    pht_http_request_init(&req);
    req.method = "POST";
    req.content_type = "application/json";
    req.body = config_json;
    req.body_len = strlen(config_json);
    req.max_body = DK_JSON_MAX;
    char what[300];
    snprintf(what, sizeof what, "create container %.200s", name);
    pht_http_response resp;
    int rc = dk_call(d, &req, dk_api_path("/containers/create?name=%s", name), &resp, what, err);
    if (rc == 0) {
        cJSON *j = resp.body ? cJSON_ParseWithLength(resp.body, resp.body_len) : NULL;
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "Id"));
        if (s == NULL || strlen(s) >= PHT_DOCKER_ID_MAX || !container_valid(s, NULL))
            rc = pht_error_set(err, PHT_EFORMAT, "%s: the daemon's answer has no container Id",
                               what);
        else
            snprintf(id, PHT_DOCKER_ID_MAX, "%s", s);
        cJSON_Delete(j);
    }
    pht_http_response_clear(&resp);
    return rc;
}

int pht_docker_container_archive(pht_docker *d, const char *id, const char *path,
                                 pht_http_sink sink, void *ud, pht_error *err)
{
    if (!container_valid(id, err)) return PHT_EINVAL;
    char *ep = pht_http_escape(path ? path : "");
    if (ep == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    char what[400];
    snprintf(what, sizeof what, "archive of %.200s in container %.80s", path ? path : "", id);
    pht_http_request req;
    pht_http_request_init(&req);
    req.sink = sink;
    req.sink_ud = ud;
    req.timeouts = &d->limits.stream;
    int rc = dk_send(d, &req, dk_api_path("/containers/%s/archive?path=%s", id, ep), what, err);
    free(ep);
    return rc;
}

int pht_docker_container_archive_fd(pht_docker *d, const char *id, const char *path, int fd,
                                    pht_error *err)
{
    return pht_docker_container_archive(d, id, path, dk_fd_sink, &fd, err);
}

int pht_docker_container_remove(pht_docker *d, const char *id, pht_error *err)
{
    if (!container_valid(id, err)) return PHT_EINVAL;
    char what[300];
    snprintf(what, sizeof what, "remove container %.200s", id);
    pht_http_request req;
    pht_http_request_init(&req);
    req.method = "DELETE";
    return dk_send(d, &req, dk_api_path("/containers/%s?force=1&v=1", id), what, err);
}

int pht_docker_container_start(pht_docker *d, const char *id, pht_error *err)
{
    if (!container_valid(id, err)) return PHT_EINVAL;
    char what[300];
    snprintf(what, sizeof what, "start container %.200s", id);
    pht_http_request req;
    pht_http_request_init(&req);
    req.method = "POST";
    return dk_send(d, &req, dk_api_path("/containers/%s/start", id), what, err);
}

/*
 * The limits of a call that lasts as long as the train runs: the stream's
 * connect and total limits, and no idle limit, since a train may compute for
 * hours without a byte on the connection.
 */
static pht_http_timeouts run_limits(const pht_docker *d)
{
    pht_http_timeouts t = d->limits.stream;
    t.idle = 0;
    return t;
}

int pht_docker_container_wait(pht_docker *d, const char *id, int *status, pht_error *err)
{
    *status = -1;
    if (!container_valid(id, err)) return PHT_EINVAL;
    char what[300];
    snprintf(what, sizeof what, "wait for container %.200s", id);
    pht_http_request req;
    pht_http_response resp;
    pht_http_request_init(&req);
    req.method = "POST";
    req.max_body = DK_JSON_MAX;
    pht_http_timeouts lim = run_limits(d); /* a train runs as long as it needs */
    req.timeouts = &lim;
    int rc = dk_call(d, &req, dk_api_path("/containers/%s/wait", id), &resp, what, err);
    if (rc == 0) {
        cJSON *j = resp.body ? cJSON_ParseWithLength(resp.body, resp.body_len) : NULL;
        cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "StatusCode");
        if (!cJSON_IsNumber(code))
            rc = pht_error_set(err, PHT_EFORMAT, "%s: the daemon's answer has no StatusCode", what);
        else
            *status = (int)code->valuedouble;
        cJSON_Delete(j);
    }
    pht_http_response_clear(&resp);
    return rc;
}

int pht_docker_container_commit(pht_docker *d, const char *id, const char *repo, const char *tag,
                                char *image_id, pht_error *err)
{
    image_id[0] = '\0';
    if (!container_valid(id, err)) return PHT_EINVAL;
    char what[300];
    snprintf(what, sizeof what, "commit container %.200s", id);
    char *er = pht_http_escape(repo ? repo : "");
    char *et = pht_http_escape(tag ? tag : "");
    if (er == NULL || et == NULL) {
        free(er);
        free(et);
        return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", what);
    }
    pht_http_request req;
    pht_http_response resp;
    pht_http_request_init(&req);
    req.method = "POST";
    req.content_type = "application/json";
    req.body = "{}";
    req.body_len = 2;
    req.max_body = DK_JSON_MAX;
    req.timeouts = &d->limits.stream;
    char *path = repo && repo[0]
                     ? dk_api_path("/commit?container=%s&pause=0&repo=%s&tag=%s", id, er, et)
                     : dk_api_path("/commit?container=%s&pause=0", id);
    free(er);
    free(et);
    int rc = dk_call(d, &req, path, &resp, what, err);
    if (rc == 0) {
        cJSON *j = resp.body ? cJSON_ParseWithLength(resp.body, resp.body_len) : NULL;
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "Id"));
        if (s == NULL || strlen(s) >= PHT_DOCKER_ID_MAX)
            rc = pht_error_set(err, PHT_EFORMAT, "%s: the daemon's answer has no image Id", what);
        else
            snprintf(image_id, PHT_DOCKER_ID_MAX, "%s", s);
        cJSON_Delete(j);
    }
    pht_http_response_clear(&resp);
    return rc;
}

/*
 * The Engine's log stream of a container without a TTY: frames of an 8-byte
 * header (stream 0 stdin, 1 stdout, 2 stderr; three zero bytes; the payload
 * length, big-endian) and the payload. Split as it arrives, across any chunk
 * boundary.
 */
typedef struct demux {
    pht_http_sink sink[3];
    void *ud[3];
    unsigned char head[8];
    size_t have;   /* bytes of head read */
    uint32_t left; /* payload bytes of the current frame still to come */
    int stream;
} demux;

static int demux_sink(void *ud, const void *data, size_t n, pht_error *err)
{
    demux *m = ud;
    const unsigned char *p = data;
    while (n > 0) {
        if (m->left == 0) {
            size_t take = sizeof m->head - m->have < n ? sizeof m->head - m->have : n;
            memcpy(m->head + m->have, p, take);
            m->have += take;
            p += take;
            n -= take;
            if (m->have < sizeof m->head) break;
            if (m->head[0] > 2 || m->head[1] || m->head[2] || m->head[3])
                return pht_error_set(err, PHT_EFORMAT,
                                     "the log stream has a frame header of stream %u; was the "
                                     "container created with a TTY?",
                                     (unsigned)m->head[0]);
            m->stream = m->head[0];
            m->left = (uint32_t)m->head[4] << 24 | (uint32_t)m->head[5] << 16 |
                      (uint32_t)m->head[6] << 8 | (uint32_t)m->head[7];
            m->have = 0;
            continue;
        }
        size_t take = m->left < n ? m->left : n;
        if (m->sink[m->stream]) {
            int rc = m->sink[m->stream](m->ud[m->stream], p, take, err);
            if (rc) return rc;
        }
        p += take;
        n -= take;
        m->left -= (uint32_t)take;
    }
    return 0;
}

int pht_docker_container_logs(pht_docker *d, const char *id, int follow, pht_http_sink out,
                              void *out_ud, pht_http_sink errs, void *errs_ud, pht_error *err)
{
    if (!container_valid(id, err)) return PHT_EINVAL;
    char what[300];
    snprintf(what, sizeof what, "read the logs of container %.200s", id);
    demux m = {{NULL, out, errs}, {NULL, out_ud, errs_ud}, {0}, 0, 0, 0};
    pht_http_request req;
    pht_http_request_init(&req);
    req.sink = demux_sink;
    req.sink_ud = &m;
    pht_http_timeouts lim = run_limits(d);
    req.timeouts = &lim;
    int rc = dk_send(
        d, &req, dk_api_path("/containers/%s/logs?stdout=1&stderr=1&follow=%d", id, follow ? 1 : 0),
        what, err);
    if (rc == 0 && (m.have > 0 || m.left > 0))
        rc = pht_error_set(err, PHT_EFORMAT, "%s: the stream ended inside a frame", what);
    return rc;
}

int pht_docker_container_logs_fd(pht_docker *d, const char *id, int follow, int out_fd, int err_fd,
                                 pht_error *err)
{
    return pht_docker_container_logs(d, id, follow, out_fd >= 0 ? dk_fd_sink : NULL, &out_fd,
                                     err_fd >= 0 ? dk_fd_sink : NULL, &err_fd, err);
}
