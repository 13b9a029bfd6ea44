/*
 * The Docker Engine client: ping, version, image inspect/history/save/load/
 * tag/remove and lists by label, over pht_http at API v1.41; the container
 * calls are in docker_container.c. Every failure names the call, the
 * daemon's endpoint, and the status and message the daemon gave.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "docker_private.h"

#define DK_CHUNK 65536
#define DK_NAME_MAX 512

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

int pht_docker_open(pht_docker **out, const char *host, pht_error *err)
{
    *out = NULL;
    const char *from = "host";
    if (host == NULL || host[0] == '\0') {
        host = getenv("DOCKER_HOST");
        from = "DOCKER_HOST";
    }
    if (host == NULL || host[0] == '\0') {
        host = PHT_DOCKER_DEFAULT_HOST;
        from = "default";
    }
    if (!starts(host, "unix://") && !starts(host, "tcp://") && !starts(host, "http://"))
        return pht_error_set(err, PHT_EINVAL,
                             "Docker endpoint %.200s (%s): libpht speaks to unix:///PATH and "
                             "tcp://HOST:PORT endpoints only",
                             host, from);
    const char *tls = getenv("DOCKER_TLS_VERIFY");
    if (!starts(host, "unix://") && tls && tls[0])
        return pht_error_set(err, PHT_EINVAL,
                             "Docker endpoint %.200s: DOCKER_TLS_VERIFY is set, but libpht speaks "
                             "plain HTTP to tcp:// endpoints",
                             host);
    pht_docker_timeouts limits;
    pht_docker_timeouts_init(&limits);
    const char *spec = getenv(PHT_DOCKER_TIMEOUT_ENV);
    if (spec && spec[0] && pht_docker_timeouts_parse(&limits, spec, err) != 0)
        return pht_error_prefix(err, "$" PHT_DOCKER_TIMEOUT_ENV);
    pht_docker *d = calloc(1, sizeof *d);
    if (d == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    d->limits = limits;
    int rc = pht_http_new(&d->http, host, err);
    if (rc == 0 && (d->host = strdup(host)) == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc) {
        pht_docker_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

void pht_docker_free(pht_docker *d)
{
    if (d == NULL) return;
    pht_http_free(d->http);
    free(d->host);
    free(d);
}

const char *pht_docker_host(const pht_docker *d)
{
    return d->host;
}

pht_http *pht_docker_http(pht_docker *d)
{
    return d->http;
}

/* ---- timeouts ------------------------------------------------------------------ */

void pht_docker_timeouts_init(pht_docker_timeouts *t)
{
    t->call = (pht_http_timeouts){PHT_HTTP_CONNECT_TIMEOUT, 60, 300};
    t->stream = (pht_http_timeouts){PHT_HTTP_CONNECT_TIMEOUT, 600, 0};
}

void pht_docker_set_timeouts(pht_docker *d, const pht_docker_timeouts *t)
{
    if (t)
        d->limits = *t;
    else
        pht_docker_timeouts_init(&d->limits);
}

void pht_docker_get_timeouts(const pht_docker *d, pht_docker_timeouts *out)
{
    *out = d->limits;
}

/* Seconds, 0 to 10^7, whole (no sign, no unit). -1 when not. */
static long seconds(const char *s, size_t n)
{
    if (n == 0 || n > 8) return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= 10000000 ? v : -1;
}

int pht_docker_timeouts_parse(pht_docker_timeouts *t, const char *spec, pht_error *err)
{
    const char *usage = "expected SECONDS or KEY=SECONDS,... with KEY connect, idle, total, "
                        "stream-idle or stream-total";
    if (spec == NULL || spec[0] == '\0')
        return pht_error_set(err, PHT_EINVAL, "Docker timeouts \"\": %s", usage);
    pht_docker_timeouts n = *t;
    long v = seconds(spec, strlen(spec));
    if (v >= 0) {
        n.call.idle = n.stream.idle = v;
        *t = n;
        return 0;
    }
    for (const char *p = spec; *p;) {
        size_t len = strcspn(p, ",");
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        v = eq ? seconds(eq + 1, len - klen - 1) : -1;
        struct {
            const char *key;
            long *a, *b;
        } keys[] = {
            {"connect", &n.call.connect, &n.stream.connect},
            {"idle", &n.call.idle, NULL},
            {"total", &n.call.total, NULL},
            {"stream-idle", &n.stream.idle, NULL},
            {"stream-total", &n.stream.total, NULL},
        };
        size_t k = 0;
        while (k < sizeof keys / sizeof keys[0] &&
               !(strlen(keys[k].key) == klen && strncmp(keys[k].key, p, klen) == 0))
            k++;
        if (v < 0 || k == sizeof keys / sizeof keys[0])
            return pht_error_set(err, PHT_EINVAL, "Docker timeouts \"%.200s\": \"%.*s\": %s", spec,
                                 (int)(len > 100 ? 100 : len), p, usage);
        *keys[k].a = v;
        if (keys[k].b) *keys[k].b = v;
        p += len;
        if (*p == ',') p++;
    }
    *t = n;
    return 0;
}

int pht_docker_name_valid(const char *name, pht_error *err)
{
    size_t n = name ? strlen(name) : 0;
    const char *why = NULL;
    if (n == 0)
        why = "it is empty";
    else if (n > DK_NAME_MAX)
        why = "it is too long";
    else if (strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:@") !=
             n)
        why = "it has a character outside [A-Za-z0-9._/:@-]";
    else if (name[0] == '/' || name[0] == '.' || name[0] == '-' || name[0] == ':' || name[0] == '@')
        why = "it does not start with a letter or digit";
    else if (strstr(name, "..") || strstr(name, "//") || name[n - 1] == '/' || name[n - 1] == ':')
        why = "it has an empty path component";
    if (why == NULL) return 1;
    pht_error_set(err, PHT_EINVAL, "\"%.200s\" is not a Docker image name: %s", name ? name : "",
                  why);
    return 0;
}

/* ---- calls ------------------------------------------------------------------ */

char *dk_api_path(const char *fmt, ...)
{
    char tail[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tail, sizeof tail, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tail) return NULL;
    size_t len = (size_t)n + 16;
    char *p = malloc(len);
    if (p) snprintf(p, len, "/v%s%s", PHT_DOCKER_API_VERSION, tail);
    return p;
}

/* A failed call: the daemon's status and message, or why it could not be reached. */
static int dk_fail(pht_docker *d, int rc, const pht_http_response *r, pht_error *err,
                   const char *what)
{
    if (r->timed_out && err && err->code) {
        pht_error_prefix(err, "%s", what);
        size_t n = strlen(err->message);
        snprintf(err->message + n, sizeof err->message - n,
                 " (the Docker limits: $" PHT_DOCKER_TIMEOUT_ENV ")");
        return err->code;
    }
    if (r->status >= 300) {
        char msg[600];
        pht_http_error_message(r->body, r->body_len, msg, sizeof msg);
        int code = r->status == 404 ? PHT_ENOTFOUND : r->status == 409 ? PHT_ESTATE : PHT_EHTTP;
        return pht_error_set(err, code, "%s: the Docker daemon at %s answered HTTP %ld: %s", what,
                             d->host, r->status, msg);
    }
    if (err && err->code == 0) pht_error_set(err, rc, "failed");
    return pht_error_prefix(err, "%s", what);
}

/* One call; resp holds the answer afterwards (released by the caller). */
int dk_call(pht_docker *d, pht_http_request *req, char *path, pht_http_response *resp,
            const char *what, pht_error *err)
{
    if (path == NULL) {
        memset(resp, 0, sizeof *resp);
        return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", what);
    }
    req->path = path;
    if (req->timeouts == NULL) req->timeouts = &d->limits.call; /* streams set &d->limits.stream */
    int rc = pht_http_do(d->http, req, resp, err);
    free(path);
    req->path = NULL;
    return rc ? dk_fail(d, rc, resp, err, what) : 0;
}

/* A call whose answer is a JSON document, parsed. */
cJSON *dk_json(pht_docker *d, const char *method, char *path, const char *what, pht_error *err)
{
    pht_http_request req;
    pht_http_response resp;
    pht_http_request_init(&req);
    req.method = method;
    req.max_body = DK_JSON_MAX;
    cJSON *j = NULL;
    if (dk_call(d, &req, path, &resp, what, err) == 0) {
        j = resp.body ? cJSON_ParseWithLength(resp.body, resp.body_len) : NULL;
        if (j == NULL)
            pht_error_set(err, PHT_EFORMAT,
                          "%s: the Docker daemon at %s answered with malformed JSON", what,
                          d->host);
    }
    pht_http_response_clear(&resp);
    return j;
}

int pht_docker_ping(pht_docker *d, pht_error *err)
{
    pht_http_request req;
    pht_http_response resp;
    pht_http_request_init(&req);
    int rc = dk_call(d, &req, dk_api_path("/_ping"), &resp, "Docker daemon ping", err);
    pht_http_response_clear(&resp);
    return rc;
}

static void copy_str(cJSON *obj, const char *key, char *out, size_t cap)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, key));
    snprintf(out, cap, "%s", s ? s : "");
}

int pht_docker_version(pht_docker *d, pht_docker_version_info *out, pht_error *err)
{
    memset(out, 0, sizeof *out);
    cJSON *j = dk_json(d, "GET", dk_api_path("/version"), "Docker daemon version", err);
    if (j == NULL) return err ? err->code : PHT_EHTTP;
    copy_str(j, "Version", out->version, sizeof out->version);
    copy_str(j, "ApiVersion", out->api_version, sizeof out->api_version);
    copy_str(j, "MinAPIVersion", out->min_api_version, sizeof out->min_api_version);
    copy_str(j, "Os", out->os, sizeof out->os);
    copy_str(j, "Arch", out->arch, sizeof out->arch);
    cJSON_Delete(j);
    return 0;
}

/* ---- images ------------------------------------------------------------------- */

void pht_docker_image_info_clear(pht_docker_image_info *info)
{
    if (info == NULL) return;
    for (size_t i = 0; i < info->ntags; i++)
        free(info->tags[i]);
    for (size_t i = 0; i < info->nlayers; i++)
        free(info->layers[i]);
    for (size_t i = 0; i < info->ndigests; i++)
        free(info->digests[i]);
    free(info->tags);
    free(info->layers);
    free(info->digests);
    memset(info, 0, sizeof *info);
}

/* The strings of a JSON array into a malloc'ed vector. -1 when out of memory. */
static int str_list(cJSON *arr, char ***out, size_t *n)
{
    int cnt = cJSON_GetArraySize(arr);
    *out = calloc((size_t)cnt + 1, sizeof **out);
    *n = 0;
    if (*out == NULL) return -1;
    cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it)) continue;
        if (((*out)[*n] = strdup(it->valuestring)) == NULL) return -1;
        (*n)++;
    }
    return 0;
}

int pht_docker_image_inspect(pht_docker *d, const char *name, pht_docker_image_info *out,
                             pht_error *err)
{
    memset(out, 0, sizeof *out);
    if (!pht_docker_name_valid(name, err)) return PHT_EINVAL;
    char what[300];
    snprintf(what, sizeof what, "inspect image %.200s", name);
    cJSON *j = dk_json(d, "GET", dk_api_path("/images/%s/json", name), what, err);
    if (j == NULL) return err ? err->code : PHT_EHTTP;
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "Id"));
    cJSON *rootfs = cJSON_GetObjectItemCaseSensitive(j, "RootFS");
    cJSON *size = cJSON_GetObjectItemCaseSensitive(j, "Size");
    int rc = 0;
    if (id == NULL || strlen(id) >= sizeof out->id) {
        rc = pht_error_set(err, PHT_EFORMAT, "%s: the daemon's answer has no image Id", what);
    } else {
        snprintf(out->id, sizeof out->id, "%s", id);
        out->size = cJSON_IsNumber(size) ? (int64_t)size->valuedouble : 0;
        if (str_list(cJSON_GetObjectItemCaseSensitive(j, "RepoTags"), &out->tags, &out->ntags) ||
            str_list(cJSON_GetObjectItemCaseSensitive(j, "RepoDigests"), &out->digests,
                     &out->ndigests) ||
            str_list(cJSON_GetObjectItemCaseSensitive(rootfs, "Layers"), &out->layers,
                     &out->nlayers))
            rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    cJSON_Delete(j);
    if (rc) pht_docker_image_info_clear(out);
    return rc;
}

int pht_docker_image_save(pht_docker *d, const char *name, pht_http_sink sink, void *ud,
                          pht_error *err)
{
    if (!pht_docker_name_valid(name, err)) return PHT_EINVAL;
    char what[300];
    snprintf(what, sizeof what, "save image %.200s", name);
    pht_http_request req;
    pht_http_response resp;
    pht_http_request_init(&req);
    req.sink = sink;
    req.sink_ud = ud;
    req.timeouts = &d->limits.stream;
    int rc = dk_call(d, &req, dk_api_path("/images/%s/get", name), &resp, what, err);
    pht_http_response_clear(&resp);
    return rc;
}

int dk_fd_sink(void *ud, const void *data, size_t n, pht_error *err)
{
    int fd = *(int *)ud;
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return pht_error_set(err, PHT_EIO, "write: %s",
                                 w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int pht_docker_image_save_fd(pht_docker *d, const char *name, int fd, pht_error *err)
{
    return pht_docker_image_save(d, name, dk_fd_sink, &fd, err);
}

/* The load answer: JSON messages, one after another; errors come with HTTP 200. */
static int load_report(pht_docker *d, const char *body, size_t len, char **report, pht_error *err)
{
    size_t cap = len + 1, used = 0;
    char *rep = report ? malloc(cap) : NULL;
    if (report && rep == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rep) rep[0] = '\0';
    const char *p = body, *end = body + len;
    int rc = 0;
    while (p && p < end && rc == 0) {
        while (p < end && strchr(" \t\r\n", *p))
            p++;
        if (p >= end) break;
        const char *stop = NULL;
        cJSON *m = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &stop, 0);
        if (m == NULL) {
            rc =
                pht_error_set(err, PHT_EFORMAT,
                              "load image: the daemon at %s answered with malformed JSON", d->host);
            break;
        }
        const char *e = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "error"));
        cJSON *detail = cJSON_GetObjectItemCaseSensitive(m, "errorDetail");
        const char *de = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(detail, "message"));
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "stream"));
        if (e || de) {
            char msg[600];
            pht_http_error_message(de ? de : e, strlen(de ? de : e), msg, sizeof msg);
            rc = pht_error_set(err, PHT_EHTTP,
                               "load image: the Docker daemon at %s refused the image: %s", d->host,
                               msg);
        } else if (s && rep) {
            size_t sl = strlen(s);
            while (sl > 0 && (s[sl - 1] == '\n' || s[sl - 1] == '\r'))
                sl--;
            if (sl > 0 && used + sl + 2 <= cap) {
                memcpy(rep + used, s, sl);
                used += sl;
                rep[used++] = '\n';
                rep[used] = '\0';
            }
        }
        cJSON_Delete(m);
        p = stop;
    }
    if (rc == 0 && rep)
        *report = rep;
    else
        free(rep);
    return rc;
}

int pht_docker_image_load(pht_docker *d, pht_http_source source, void *ud, char **report,
                          pht_error *err)
{
    if (report) *report = NULL;
    pht_http_request req;
    pht_http_response resp;
    pht_http_request_init(&req);
    req.method = "POST";
    req.content_type = "application/x-tar";
    req.source = source;
    req.source_ud = ud;
    req.timeouts = &d->limits.stream;
    int rc = dk_call(d, &req, dk_api_path("/images/load?quiet=1"), &resp, "load image", err);
    if (rc == 0) rc = load_report(d, resp.body ? resp.body : "", resp.body_len, report, err);
    pht_http_response_clear(&resp);
    return rc;
}

static int fd_source(void *ud, void *buf, size_t cap, size_t *got, pht_error *err)
{
    int fd = *(int *)ud;
    ssize_t r;
    do
        r = read(fd, buf, cap);
    while (r < 0 && errno == EINTR);
    if (r < 0) return pht_error_set(err, PHT_EIO, "read the image archive: %s", strerror(errno));
    *got = (size_t)r;
    return 0;
}

int pht_docker_image_load_fd(pht_docker *d, int fd, char **report, pht_error *err)
{
    return pht_docker_image_load(d, fd_source, &fd, report, err);
}

int pht_docker_image_tag(pht_docker *d, const char *name, const char *target, pht_error *err)
{
    if (!pht_docker_name_valid(name, err) || !pht_docker_name_valid(target, err)) return PHT_EINVAL;
    const char *slash = strrchr(target, '/'), *colon = strrchr(target, ':');
    if (strchr(target, '@') || strncmp(target, "sha256:", 7) == 0)
        return pht_error_set(err, PHT_EINVAL, "tag %.200s: a tag is REPO[:TAG], not a digest or id",
                             target);
    int has_tag = colon && (!slash || colon > slash);
    char *repo = has_tag ? strndup(target, (size_t)(colon - target)) : strdup(target);
    char *erepo = repo ? pht_http_escape(repo) : NULL;
    char *etag = pht_http_escape(has_tag ? colon + 1 : "latest");
    char what[600];
    snprintf(what, sizeof what, "tag image %.200s as %.200s", name, target);
    int rc;
    if (erepo == NULL || etag == NULL) {
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    } else {
        pht_http_request req;
        pht_http_response resp;
        pht_http_request_init(&req);
        req.method = "POST";
        rc = dk_call(d, &req, dk_api_path("/images/%s/tag?repo=%s&tag=%s", name, erepo, etag),
                     &resp, what, err);
        pht_http_response_clear(&resp);
    }
    free(repo);
    free(erepo);
    free(etag);
    return rc;
}

int pht_docker_image_remove(pht_docker *d, const char *name, int flags, pht_error *err)
{
    if (!pht_docker_name_valid(name, err)) return PHT_EINVAL;
    char what[300];
    snprintf(what, sizeof what, "remove image %.200s", name);
    pht_http_request req;
    pht_http_response resp;
    pht_http_request_init(&req);
    req.method = "DELETE";
    int rc = dk_call(d, &req,
                     dk_api_path("/images/%s?force=%d&noprune=%d", name,
                                 !!(flags & PHT_DOCKER_FORCE), !!(flags & PHT_DOCKER_NOPRUNE)),
                     &resp, what, err);
    pht_http_response_clear(&resp);
    return rc;
}

int pht_docker_prune_image(pht_docker *d, const char *id, int *removed, pht_error *err)
{
    if (removed) *removed = 0;
    pht_docker_image_info info;
    pht_error e;
    int rc = pht_docker_image_inspect(d, id, &info, &e);
    if (rc == PHT_ENOTFOUND) return 0;
    if (rc) {
        if (err) *err = e;
        return rc;
    }
    int dangling = info.ntags == 0 && info.ndigests == 0;
    pht_docker_image_info_clear(&info);
    if (!dangling) return 0;
    rc = pht_docker_image_remove(d, id, 0, &e);
    if (rc == 0 && removed) *removed = 1;
    if (rc == PHT_ENOTFOUND || rc == PHT_ESTATE)
        return 0; /* gone, or a container or child needs it */
    if (rc && err) *err = e;
    return rc;
}

/* The Engine's filter object {"label":[key]} as escaped query text, or NULL (out of memory). */
char *dk_label_filter(const char *key)
{
    cJSON *f = cJSON_CreateObject(), *arr = f ? cJSON_AddArrayToObject(f, "label") : NULL;
    char *text = arr && cJSON_AddItemToArray(arr, cJSON_CreateString(key))
                     ? cJSON_PrintUnformatted(f)
                     : NULL;
    cJSON_Delete(f);
    return text;
}

int pht_docker_images_labelled(pht_docker *d, const char *key, pht_docker_image_labelled_cb cb,
                               void *ud, pht_error *err)
{
    if (key == NULL || key[0] == '\0')
        return pht_error_set(err, PHT_EINVAL, "list images: no label key");
    char *text = dk_label_filter(key), *ef = text ? pht_http_escape(text) : NULL;
    free(text);
    if (ef == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    cJSON *j = dk_json(d, "GET", dk_api_path("/images/json?filters=%s", ef), "list images", err);
    free(ef);
    if (j == NULL) return err ? err->code : PHT_EHTTP;
    int rc = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "Id"));
        cJSON *labels = cJSON_GetObjectItemCaseSensitive(it, "Labels");
        if (id == NULL) continue;
        if ((rc = cb(ud, id, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(labels, key)))))
            break;
    }
    cJSON_Delete(j);
    return rc;
}

/* GET path as JSON text into *json. */
static int get_json_text(pht_docker *d, char *path, const char *what, char **json, pht_error *err)
{
    *json = NULL;
    pht_http_request req;
    pht_http_response resp;
    pht_http_request_init(&req);
    req.max_body = DK_JSON_MAX;
    int rc = dk_call(d, &req, path, &resp, what, err);
    if (rc == 0 && resp.body == NULL)
        rc = pht_error_set(err, PHT_EFORMAT, "%s: the Docker daemon at %s sent an empty answer",
                           what, d->host);
    if (rc == 0) {
        *json = resp.body;
        resp.body = NULL;
    }
    pht_http_response_clear(&resp);
    return rc;
}

int pht_docker_image_inspect_json(pht_docker *d, const char *name, char **json, pht_error *err)
{
    *json = NULL;
    if (!pht_docker_name_valid(name, err)) return PHT_EINVAL;
    char what[300];
    snprintf(what, sizeof what, "inspect image %.200s", name);
    return get_json_text(d, dk_api_path("/images/%s/json", name), what, json, err);
}

int pht_docker_image_history_json(pht_docker *d, const char *name, char **json, pht_error *err)
{
    *json = NULL;
    if (!pht_docker_name_valid(name, err)) return PHT_EINVAL;
    char what[300];
    snprintf(what, sizeof what, "history of image %.200s", name);
    return get_json_text(d, dk_api_path("/images/%s/history", name), what, json, err);
}
