/*
 * Timeouts of the HTTP client and of every Docker Engine call, against a
 * server in a child process that answers each request with a status line
 * and headers and then holds the connection without another byte (a wedged
 * dockerd). Each call must fail within its limit, naming the call, the
 * endpoint and the limit. A slow stream that keeps moving outlives a total
 * it would exceed, since streams have idle limits only; a listener whose
 * queue is full trips the connect limit.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

static char sock_path[108];
static pid_t server_pid = -1;
static double slack = 2.5; /* seconds past a limit a call may take (more under valgrind) */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Read a request's head (and what body came with it). */
static void read_some(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n")) break;
    }
    buf[n] = '\0';
}

static void write_all(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

/*
 * The server: every request gets "200, Content-Length 1000" and one byte of
 * body, then nothing; its connection stays open. GET /v1.41/images/slow/get
 * instead trickles 8 bytes, one every 0.4 s, and ends.
 */
static void serve(int lst)
{
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        int c = accept(lst, NULL, NULL);
        if (c < 0) continue;
        char buf[65536];
        read_some(c, buf, sizeof buf);
        if (strstr(buf, "GET /v1.41/images/slow/get ")) {
            write_all(c, "HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nContent-Length: 8\r\n\r\n");
            for (int i = 0; i < 8; i++) {
                usleep(400000);
                write_all(c, "x");
            }
            close(c);
            continue;
        }
        write_all(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[");
        /* c stays open, and silent, until the server goes */
    }
}

static int start_server(void)
{
    const char *tmp = getenv("PHT_TMPDIR");
    snprintf(sock_path, sizeof sock_path, "%s/stall-%d.sock", tmp ? tmp : "/tmp", (int)getpid());
    unlink(sock_path);
    int lst = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path);
    if (lst < 0 || bind(lst, (struct sockaddr *)&a, sizeof a) != 0 || listen(lst, 16) != 0) {
        fprintf(stderr, "cannot listen on %s: %s\n", sock_path, strerror(errno));
        return -1;
    }
    server_pid = fork();
    if (server_pid == 0) {
        serve(lst);
        _exit(0);
    }
    close(lst);
    return server_pid > 0 ? 0 : -1;
}

static void stop_server(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
    }
    unlink(sock_path);
}

/* ---- the calls ------------------------------------------------------------------- */

static int null_sink(void *ud, const void *p, size_t n, pht_error *err)
{
    (void)p;
    (void)err;
    *(size_t *)ud += n;
    return 0;
}

static int small_source(void *ud, void *buf, size_t cap, size_t *got, pht_error *err)
{
    (void)err;
    int *left = ud;
    *got = *left > 0 && cap >= 16 ? 16 : 0;
    if (*got) memset(buf, 'a', *got);
    (*left)--;
    return 0;
}

static int count_container(void *ud, const pht_docker_container *c)
{
    (void)c;
    (*(int *)ud)++;
    return 0;
}

static int count_labelled(void *ud, const pht_docker_container *c, const char *v)
{
    (void)c;
    (void)v;
    (*(int *)ud)++;
    return 0;
}

enum { PING, VERSION, INSPECT, INSPECT_JSON, HISTORY_JSON, SAVE, LOAD, TAG, REMOVE, PRUNE, LIST,
       LABELLED, CREATE, ARCHIVE, REMOVE_CONTAINER, NCALLS };

static const struct {
    const char *name, *path; /* what the message names */
    int stream;
} calls[NCALLS] = {
    [PING] = {"ping", "/v1.41/_ping", 0},
    [VERSION] = {"version", "/v1.41/version", 0},
    [INSPECT] = {"image_inspect", "/v1.41/images/pht/x:1/json", 0},
    [INSPECT_JSON] = {"image_inspect_json", "/v1.41/images/pht/x:1/json", 0},
    [HISTORY_JSON] = {"image_history_json", "/v1.41/images/pht/x:1/history", 0},
    [SAVE] = {"image_save", "/v1.41/images/pht/x:1/get", 1},
    [LOAD] = {"image_load", "/v1.41/images/load", 1},
    [TAG] = {"image_tag", "/v1.41/images/pht/x:1/tag", 0},
    [REMOVE] = {"image_remove", "DELETE /v1.41/images/pht/x:1", 0},
    [PRUNE] = {"prune_image", "/v1.41/images/sha256:", 0},
    [LIST] = {"containers", "/v1.41/containers/json", 0},
    [LABELLED] = {"containers_labelled", "/v1.41/containers/json", 0},
    [CREATE] = {"container_create", "POST /v1.41/containers/create", 0},
    [ARCHIVE] = {"container_archive", "/v1.41/containers/c1/archive", 1},
    [REMOVE_CONTAINER] = {"container_remove", "DELETE /v1.41/containers/c1", 0},
};

static int run_call(pht_docker *d, int which, pht_error *err)
{
    static const char *id = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    pht_docker_version_info v;
    pht_docker_image_info info;
    char *json = NULL, *report = NULL, cid[PHT_DOCKER_ID_MAX];
    size_t got = 0;
    int n = 0, left = 3, rc = 0;
    switch (which) {
    case PING: return pht_docker_ping(d, err);
    case VERSION: return pht_docker_version(d, &v, err);
    case INSPECT:
        rc = pht_docker_image_inspect(d, "pht/x:1", &info, err);
        if (rc == 0) pht_docker_image_info_clear(&info);
        return rc;
    case INSPECT_JSON: rc = pht_docker_image_inspect_json(d, "pht/x:1", &json, err); break;
    case HISTORY_JSON: rc = pht_docker_image_history_json(d, "pht/x:1", &json, err); break;
    case SAVE: return pht_docker_image_save(d, "pht/x:1", null_sink, &got, err);
    case LOAD: rc = pht_docker_image_load(d, small_source, &left, &report, err); break;
    case TAG: return pht_docker_image_tag(d, "pht/x:1", "pht/y:2", err);
    case REMOVE: return pht_docker_image_remove(d, "pht/x:1", 0, err);
    case PRUNE: return pht_docker_prune_image(d, id, NULL, err);
    case LIST: return pht_docker_containers(d, 1, NULL, count_container, &n, err);
    case LABELLED: return pht_docker_containers_labelled(d, "pht.test", count_labelled, &n, err);
    case CREATE: return pht_docker_container_create(d, "c1", "{\"Image\":\"pht/x:1\"}", cid, err);
    case ARCHIVE: return pht_docker_container_archive(d, "c1", "/opt", null_sink, &got, err);
    case REMOVE_CONTAINER: return pht_docker_container_remove(d, "c1", err);
    }
    free(json);
    free(report);
    return rc;
}

/* Every call against the stalling server fails with its idle limit, in time. */
static void test_every_call_idle(void)
{
    char host[160];
    snprintf(host, sizeof host, "unix://%s", sock_path);
    pht_docker *d;
    pht_error err;
    CHECK_OK(pht_docker_open(&d, host, &err), &err);
    if (d == NULL) return;
    pht_docker_timeouts t;
    pht_docker_timeouts_init(&t);
    CHECK_OK(pht_docker_timeouts_parse(&t, "idle=1,total=30,stream-idle=2", &err), &err);
    pht_docker_set_timeouts(d, &t);
    for (int i = 0; i < NCALLS; i++) {
        double t0 = now();
        pht_error_clear(&err);
        int rc = run_call(d, i, &err);
        double took = now() - t0;
        long limit = calls[i].stream ? 2 : 1;
        char want[32];
        snprintf(want, sizeof want, "no bytes for %ld s", limit);
        if (rc != PHT_EHTTP || strstr(err.message, want) == NULL ||
            strstr(err.message, sock_path) == NULL || strstr(err.message, calls[i].path) == NULL ||
            strstr(err.message, "PHT_DOCKER_TIMEOUT") == NULL) {
            fprintf(stderr, "%s: rc %d (%s), message: %s\n", calls[i].name, rc, pht_code_name(rc),
                    err.message);
            test_failures++;
        }
        if (took < (double)limit - 0.2 || took > (double)limit + slack) {
            fprintf(stderr, "%s: failed after %.2f s, its idle limit is %ld s\n", calls[i].name,
                    took, limit);
            test_failures++;
        }
    }
    pht_docker_free(d);
}

/* With no idle limit, the total one ends a call; a slow stream outlives it. */
static void test_total_and_slow_stream(void)
{
    char host[160];
    snprintf(host, sizeof host, "unix://%s", sock_path);
    pht_docker *d;
    pht_error err;
    CHECK_OK(pht_docker_open(&d, host, &err), &err);
    if (d == NULL) return;
    pht_docker_timeouts t;
    pht_docker_timeouts_init(&t);
    CHECK_OK(pht_docker_timeouts_parse(&t, "idle=0,total=1,stream-idle=2,stream-total=0", &err), &err);
    pht_docker_set_timeouts(d, &t);
    double t0 = now();
    pht_docker_version_info v;
    CHECK_CODE(pht_docker_version(d, &v, &err), PHT_EHTTP, &err);
    CHECK_STR_CONTAINS(err.message, "Docker daemon version: GET /v1.41/version at unix://");
    CHECK_STR_CONTAINS(err.message, "not done within 1 s");
    CHECK(now() - t0 < 1 + slack);
    /* 8 bytes over 3.2 s: past the calls' total of 1 s, never 2 s without a byte */
    size_t got = 0;
    t0 = now();
    CHECK_OK(pht_docker_image_save(d, "slow", null_sink, &got, &err), &err);
    CHECK(got == 8);
    CHECK(now() - t0 > 3.0);
    /* the same stream with a total limit of 1 s is cut */
    CHECK_OK(pht_docker_timeouts_parse(&t, "stream-total=1", &err), &err);
    pht_docker_set_timeouts(d, &t);
    got = 0;
    CHECK_CODE(pht_docker_image_save(d, "slow", null_sink, &got, &err), PHT_EHTTP, &err);
    CHECK_STR_CONTAINS(err.message, "save image slow: GET /v1.41/images/slow/get at unix://");
    CHECK_STR_CONTAINS(err.message, "not done within 1 s");
    pht_docker_free(d);
}

/* $PHT_DOCKER_TIMEOUT sets a new client's limits; a bad value fails the open. */
static void test_env_and_parse(void)
{
    char host[160];
    snprintf(host, sizeof host, "unix://%s", sock_path);
    pht_error err;
    pht_docker *d = NULL;
    setenv("PHT_DOCKER_TIMEOUT", "7", 1);
    CHECK_OK(pht_docker_open(&d, host, &err), &err);
    pht_docker_timeouts t;
    if (d) {
        pht_docker_get_timeouts(d, &t);
        CHECK(t.call.idle == 7 && t.stream.idle == 7 && t.call.connect == 30 && t.call.total == 300 &&
              t.stream.total == 0);
        pht_docker_free(d);
    }
    setenv("PHT_DOCKER_TIMEOUT", "idle=1,wait=3", 1);
    CHECK_CODE(pht_docker_open(&d, host, &err), PHT_EINVAL, &err);
    CHECK(d == NULL);
    CHECK_STR_CONTAINS(err.message, "$PHT_DOCKER_TIMEOUT: Docker timeouts \"idle=1,wait=3\": \"wait=3\"");
    unsetenv("PHT_DOCKER_TIMEOUT");

    pht_docker_timeouts_init(&t);
    CHECK_OK(pht_docker_timeouts_parse(&t, "connect=5,idle=10,total=20,stream-idle=40,stream-total=80",
                                       &err),
             &err);
    CHECK(t.call.connect == 5 && t.stream.connect == 5 && t.call.idle == 10 && t.call.total == 20 &&
          t.stream.idle == 40 && t.stream.total == 80);
    const char *bad[] = {"", "idle", "idle=", "idle=-1", "idle=1s", "idle=1,,total=2", "=3",
                         "idle=99999999999", "stream_idle=3", "1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pht_docker_timeouts before = t;
        if (pht_docker_timeouts_parse(&t, bad[i], &err) != PHT_EINVAL) {
            fprintf(stderr, "timeouts \"%s\" were accepted\n", bad[i]);
            test_failures++;
        }
        CHECK(memcmp(&before, &t, sizeof t) == 0);
    }
}

/* A TCP listener whose accept queue is full: the connect limit ends the request. */
static void test_connect_limit(void)
{
    int lst = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (lst < 0 || bind(lst, (struct sockaddr *)&a, sizeof a) != 0 || listen(lst, 0) != 0 ||
        getsockname(lst, (struct sockaddr *)&a, &alen) != 0) {
        fprintf(stderr, "no TCP listener: %s\n", strerror(errno));
        test_failures++;
        return;
    }
    int fill[4];
    for (int i = 0; i < 4; i++) { /* never accepted: the queue stays full */
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    usleep(100000);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    pht_http *h;
    pht_error err;
    CHECK_OK(pht_http_new(&h, ep, &err), &err);
    pht_http_timeouts lim = {1, 0, 0};
    pht_http_set_timeouts(h, &lim);
    pht_http_request req;
    pht_http_response resp;
    pht_http_request_init(&req);
    req.path = "/_ping";
    double t0 = now();
    CHECK_CODE(pht_http_do(h, &req, &resp, &err), PHT_EHTTP, &err);
    CHECK(now() - t0 < 1 + slack);
    CHECK_STR_CONTAINS(err.message, "GET /_ping at tcp://127.0.0.1:");
    CHECK_STR_CONTAINS(err.message, "not connected within 1 s");
    CHECK(resp.timed_out == PHT_HTTP_TIMED_OUT_CONNECT);
    pht_http_response_clear(&resp);
    /* a request's own limits win over the handle's */
    pht_http_timeouts mine = {2, 0, 0};
    req.timeouts = &mine;
    CHECK_CODE(pht_http_do(h, &req, &resp, &err), PHT_EHTTP, &err);
    CHECK_STR_CONTAINS(err.message, "not connected within 2 s");
    pht_http_response_clear(&resp);
    pht_http_get_timeouts(h, &mine);
    CHECK(mine.connect == 1 && mine.idle == 0 && mine.total == 0);
    pht_http_set_timeouts(h, NULL);
    pht_http_get_timeouts(h, &mine);
    CHECK(mine.connect == PHT_HTTP_CONNECT_TIMEOUT && mine.idle == PHT_HTTP_IDLE_TIMEOUT &&
          mine.total == 0);
    pht_http_free(h);
    for (int i = 0; i < 4; i++) close(fill[i]);
    close(lst);
}

int main(void)
{
    if (getenv("PHT_UNDER_VALGRIND")) slack = 8;
    if (start_server() != 0) return 1;
    test_env_and_parse();
    test_every_call_idle();
    test_total_and_slow_stream();
    stop_server();
    test_connect_limit();
    TEST_DONE();
}
