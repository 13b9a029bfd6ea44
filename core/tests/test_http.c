/*
 * The HTTP client: endpoint forms, error messages, unreachable endpoints,
 * a kept-alive connection whose next answer starts with a folded header line
 * (without a daemon), then streamed request and response bodies, caps,
 * aborting callbacks and HTTP errors against the real Docker daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "docker_test.h"

static void test_endpoints(void)
{
    const char *good[] = {"unix:///tmp/x.sock", "tcp://127.0.0.1:2375", "http://localhost:8080/",
                          "https://registry.example"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        pht_http *h = NULL;
        pht_error err;
        CHECK_OK(pht_http_new(&h, good[i], &err), &err);
        if (h) CHECK(strcmp(pht_http_endpoint(h), good[i]) == 0);
        pht_http_free(h);
    }
    char long_sock[300] = "unix:///";
    memset(long_sock + 8, 'a', 200);
    long_sock[208] = '\0';
    const char *bad[] = {"", "ssh://host", "unix://relative.sock", "tcp://", "tcp://a/b",
                         "ftp://x", long_sock};
    const char *why[] = {"empty", "expected unix:///PATH", "must be absolute", "tcp://HOST:PORT",
                         "tcp://HOST:PORT", "expected unix:///PATH", "too long"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pht_http *h = NULL;
        pht_error err;
        CHECK_CODE(pht_http_new(&h, bad[i], &err), PHT_EINVAL, &err);
        CHECK(h == NULL);
        CHECK_STR_CONTAINS(err.message, why[i]);
    }
    pht_http *h = NULL;
    pht_error err;
    CHECK_CODE(pht_http_new(&h, NULL, &err), PHT_EINVAL, &err);
    pht_http_free(NULL);
}

static void test_error_message(void)
{
    char out[64];
    const char *j = " {\"message\":\"No such image: x:y\"}\n";
    pht_http_error_message(j, strlen(j), out, sizeof out);
    CHECK(strcmp(out, "No such image: x:y") == 0);
    j = "{\"error\":\"bad\\nthing\"}";
    pht_http_error_message(j, strlen(j), out, sizeof out);
    CHECK(strcmp(out, "bad thing") == 0);
    j = "page not found\nmore";
    pht_http_error_message(j, strlen(j), out, sizeof out);
    CHECK(strcmp(out, "page not found") == 0);
    pht_http_error_message("", 0, out, sizeof out);
    CHECK(strcmp(out, "(no message)") == 0);
    pht_http_error_message(NULL, 0, out, sizeof out);
    CHECK(strcmp(out, "(no message)") == 0);
    char big[200];
    memset(big, 'x', sizeof big);
    pht_http_error_message(big, sizeof big, out, 10);
    CHECK(strcmp(out, "xxxxxxxxx") == 0);

    char *e = pht_http_escape("a b/c:d&e=f");
    CHECK(e && strcmp(e, "a%20b%2Fc%3Ad%26e%3Df") == 0);
    free(e);
}

/* A unix socket with no listener, and one that does not exist. */
static void test_unreachable(void)
{
    char path[700], ep[800];
    snprintf(path, sizeof path, "%s/http-none-%ld.sock", test_tmpdir(), (long)getpid());
    unlink(path);
    snprintf(ep, sizeof ep, "unix://%s", path);
    pht_http *h = NULL;
    pht_error err;
    CHECK_OK(pht_http_new(&h, ep, &err), &err);
    pht_http_request req;
    pht_http_response resp;
    pht_http_request_init(&req);
    req.path = "/_ping";
    CHECK_CODE(pht_http_do(h, &req, &resp, &err), PHT_EHTTP, &err);
    CHECK_STR_CONTAINS(err.message, "cannot connect to unix://");
    CHECK_STR_CONTAINS(err.message, path);
    CHECK_STR_CONTAINS(err.message, "No such file or directory");
    CHECK(resp.status == 0);
    pht_http_response_clear(&resp);

    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    CHECK(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) < sizeof sa.sun_path ? strlen(path) : 0);
    CHECK(s >= 0 && bind(s, (struct sockaddr *)&sa, sizeof sa) == 0); /* bound, not listening */
    CHECK_CODE(pht_http_do(h, &req, &resp, &err), PHT_EHTTP, &err);
    CHECK_STR_CONTAINS(err.message, "Connection refused");
    pht_http_response_clear(&resp);
    close(s);
    unlink(path);
    pht_http_free(h);

    CHECK_OK(pht_http_new(&h, "tcp://127.0.0.1:1", &err), &err);
    CHECK_CODE(pht_http_do(h, &req, &resp, &err), PHT_EHTTP, &err);
    CHECK_STR_CONTAINS(err.message, "cannot connect to tcp://127.0.0.1:1");
    pht_http_response_clear(&resp);
    req.path = "no-slash";
    CHECK_CODE(pht_http_do(h, &req, &resp, &err), PHT_EINVAL, &err);
    pht_http_free(h);
}

/* ---- against the daemon ---------------------------------------------------------- */

typedef struct acc {
    char buf[8192];
    size_t len;
    int calls;
    int fail_at; /* fail on this call (1-based); 0: never */
} acc;

static int acc_sink(void *ud, const void *p, size_t n, pht_error *err)
{
    acc *a = ud;
    a->calls++;
    if (a->fail_at && a->calls >= a->fail_at) return pht_error_set(err, PHT_EIO, "sink says: disk full");
    size_t k = n < sizeof a->buf - 1 - a->len ? n : sizeof a->buf - 1 - a->len;
    memcpy(a->buf + a->len, p, k);
    a->len += k;
    a->buf[a->len] = '\0';
    return 0;
}

typedef struct src {
    int fd;
    size_t chunk, sent, fail_after;
    int calls;
} src;

static int file_source(void *ud, void *buf, size_t cap, size_t *got, pht_error *err)
{
    src *s = ud;
    s->calls++;
    if (s->fail_after && s->sent >= s->fail_after)
        return pht_error_set(err, PHT_EIO, "source says: cannot read the archive");
    size_t want = cap < s->chunk ? cap : s->chunk;
    ssize_t r = read(s->fd, buf, want);
    if (r < 0) return pht_error_set(err, PHT_EIO, "read: %s", strerror(errno));
    *got = (size_t)r;
    s->sent += (size_t)r;
    return 0;
}

static void test_daemon(void)
{
    pht_http *h = NULL;
    pht_error err;
    char out[4096], base[1200], name[200], path[600];
    CHECK_OK(pht_http_new(&h, dt_endpoint(), &err), &err);
    if (h == NULL) return;
    pht_http_request req;
    pht_http_response resp;

    /* a collected body */
    pht_http_request_init(&req);
    req.path = "/_ping";
    CHECK_OK(pht_http_do(h, &req, &resp, &err), &err);
    CHECK(resp.status == 200 && resp.body && strcmp(resp.body, "OK") == 0);
    pht_http_response_clear(&resp);

    /* a streamed body equals the collected one; the oracle is the docker CLI */
    acc a = {0};
    req.path = "/v1.41/version";
    req.sink = acc_sink;
    req.sink_ud = &a;
    CHECK_OK(pht_http_do(h, &req, &resp, &err), &err);
    CHECK(resp.body == NULL && a.calls >= 1);
    CHECK(dt_sh(out, sizeof out, "docker version --format '{{.Server.APIVersion}}'") == 0);
    char want[128];
    snprintf(want, sizeof want, "\"ApiVersion\":\"%.60s\"", out);
    CHECK_STR_CONTAINS(a.buf, want);
    pht_http_response_clear(&resp);

    /* the cap of a collected body */
    pht_http_request_init(&req);
    req.path = "/v1.41/version";
    req.max_body = 16;
    CHECK_CODE(pht_http_do(h, &req, &resp, &err), PHT_ELIMIT, &err);
    CHECK_STR_CONTAINS(err.message, "larger than 16 bytes");
    pht_http_response_clear(&resp);

    /* an HTTP error carries status and the daemon's message */
    pht_http_request_init(&req);
    snprintf(path, sizeof path, "/v1.41/images/%s:absent/json", dt_name("http", name, sizeof name));
    req.path = path;
    CHECK_CODE(pht_http_do(h, &req, &resp, &err), PHT_ENOTFOUND, &err);
    CHECK(resp.status == 404);
    CHECK_STR_CONTAINS(err.message, "GET /v1.41/images/");
    CHECK_STR_CONTAINS(err.message, "HTTP 404");
    CHECK_STR_CONTAINS(err.message, "No such image");
    pht_http_response_clear(&resp);
    req.method = "DELETE";
    snprintf(path, sizeof path, "/v1.41/images/%s:absent", name);
    CHECK_CODE(pht_http_do(h, &req, &resp, &err), PHT_ENOTFOUND, &err);
    CHECK_STR_CONTAINS(err.message, "DELETE ");
    pht_http_response_clear(&resp);

    /* a streamed request body, in small pieces */
    if (dt_base_image(base, sizeof base) == NULL) goto out;
    src s = {.fd = open(base, O_RDONLY), .chunk = 3000};
    CHECK(s.fd >= 0);
    pht_http_request_init(&req);
    req.method = "POST";
    req.path = "/v1.41/images/load?quiet=1";
    req.content_type = "application/x-tar";
    req.source = file_source;
    req.source_ud = &s;
    CHECK_OK(pht_http_do(h, &req, &resp, &err), &err);
    CHECK(resp.status == 200 && s.calls > 10);
    CHECK(resp.body && strstr(resp.body, "Loaded image: pht-test/busybox:latest"));
    pht_http_response_clear(&resp);
    close(s.fd);

    /* a source that fails aborts the request with its own error; the handle still works */
    s = (src){.fd = open(base, O_RDONLY), .chunk = 4096, .fail_after = 20000};
    CHECK_CODE(pht_http_do(h, &req, &resp, &err), PHT_EIO, &err);
    CHECK(strcmp(err.message, "source says: cannot read the archive") == 0);
    pht_http_response_clear(&resp);
    close(s.fd);

    /* a sink that fails aborts the download the same way */
    pht_http_request_init(&req);
    req.path = "/v1.41/images/pht-test/busybox:latest/get";
    a = (acc){.fail_at = 2};
    req.sink = acc_sink;
    req.sink_ud = &a;
    CHECK_CODE(pht_http_do(h, &req, &resp, &err), PHT_EIO, &err);
    CHECK(strcmp(err.message, "sink says: disk full") == 0);
    pht_http_response_clear(&resp);

    /* POST without a body, then DELETE: tag and untag through the raw API */
    pht_http_request_init(&req);
    req.method = "POST";
    snprintf(path, sizeof path, "/v1.41/images/pht-test/busybox:latest/tag?repo=%s&tag=raw", name);
    req.path = path;
    CHECK_OK(pht_http_do(h, &req, &resp, &err), &err);
    CHECK(resp.status == 201);
    pht_http_response_clear(&resp);
    CHECK(dt_sh(out, sizeof out, "docker image inspect --format '{{.Id}}' %s:raw", name) == 0);
    req.method = "DELETE";
    snprintf(path, sizeof path, "/v1.41/images/%s:raw", name);
    CHECK_OK(pht_http_do(h, &req, &resp, &err), &err);
    CHECK(resp.body && strstr(resp.body, "Untagged"));
    pht_http_response_clear(&resp);
    CHECK(dt_sh(NULL, 0, "docker image inspect %s:raw >/dev/null 2>&1", name) != 0);
out:
    pht_http_free(h);
}

/* Header lookup: case-insensitive, first one, trimmed, cut to the buffer. */
static void test_response_header(void)
{
    char hdrs[] = "Content-Type: application/json\r\nwww-authenticate:  Bearer realm=\"x\" \r\n"
                  "Location: /a\r\nLocation: /b\r\nX-Empty:\r\n";
    pht_http_response resp = {.headers = hdrs, .headers_len = sizeof hdrs - 1};
    char out[64];
    CHECK(pht_http_response_header(&resp, "WWW-Authenticate", out, sizeof out) == 1);
    CHECK(strcmp(out, "Bearer realm=\"x\"") == 0);
    CHECK(pht_http_response_header(&resp, "location", out, sizeof out) == 1);
    CHECK(strcmp(out, "/a") == 0);
    CHECK(pht_http_response_header(&resp, "X-Empty", out, sizeof out) == 1 && out[0] == '\0');
    CHECK(pht_http_response_header(&resp, "Content", out, sizeof out) == 0);
    CHECK(pht_http_response_header(&resp, "Content-Type", out, 5) == 1 && strcmp(out, "appl") == 0);
    pht_http_response none = {0};
    CHECK(pht_http_response_header(&none, "Location", out, sizeof out) == 0);
}

/*
 * The folded-first-header server: each connection gets a number, and every
 * answer on it says which in X-Conn; GET /folded answers with its first
 * header line folded (starting with a tab), as a broken or hostile peer may.
 */
static void folded_serve(int lst)
{
    signal(SIGPIPE, SIG_IGN);
    for (int conn = 1;; conn++) {
        int c = accept(lst, NULL, NULL);
        if (c < 0) _exit(1);
        char buf[8192];
        size_t n = 0;
        buf[0] = '\0';
        for (;;) {
            char *end = strstr(buf, "\r\n\r\n");
            if (end == NULL) {
                if (n + 1 >= sizeof buf) break;
                ssize_t r = read(c, buf + n, sizeof buf - 1 - n);
                if (r <= 0) break;
                n += (size_t)r;
                buf[n] = '\0';
                continue;
            }
            size_t used = (size_t)(end + 4 - buf);
            char ans[256];
            int len;
            if (strncmp(buf, "GET /folded ", 12) == 0)
                len = snprintf(ans, sizeof ans,
                               "HTTP/1.1 200 OK\r\n\tX-Folded: yes\r\nX-Conn: %d\r\n"
                               "Content-Length: 2\r\n\r\nok", conn);
            else
                len = snprintf(ans, sizeof ans,
                               "HTTP/1.1 200 OK\r\nX-Conn: %d\r\nContent-Length: 5\r\n\r\nhello", conn);
            if (write(c, ans, (size_t)len) != len) break;
            memmove(buf, buf + used, n - used + 1);
            n -= used;
        }
        close(c);
    }
}

/*
 * libcurl 7.88 (Debian 12) reads freed memory when a reused easy handle gets
 * an answer whose first header line is folded (curl/curl#11101): pht_http_do
 * takes a fresh easy handle per exchange and keeps connections in a share.
 * The exchanges after it must work, and connections must still be reused.
 */
static void test_folded_first_header(void)
{
    char path[700], ep[800];
    snprintf(path, sizeof path, "%s/http-folded-%ld.sock", test_tmpdir(), (long)getpid());
    unlink(path);
    int lst = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    CHECK(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) < sizeof sa.sun_path ? strlen(path) : 0);
    CHECK(lst >= 0 && bind(lst, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(lst, 8) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* gone with a crashed test */
        folded_serve(lst);
    }
    close(lst);
    snprintf(ep, sizeof ep, "unix://%s", path);
    pht_http *h = NULL;
    pht_error err;
    CHECK_OK(pht_http_new(&h, ep, &err), &err);
    const char *paths[] = {"/a", "/b", "/folded", "/c"};
    char conn[4][16] = {"", "", "", ""};
    for (int i = 0; i < 4; i++) {
        pht_http_request req;
        pht_http_response resp;
        pht_http_request_init(&req);
        req.path = paths[i];
        int rc = pht_http_do(h, &req, &resp, &err);
        if (i != 2) {
            CHECK_OK(rc, &err);
            CHECK(resp.status == 200 && resp.body_len == 5 && memcmp(resp.body, "hello", 5) == 0);
        }
        if (rc == 0 && pht_http_response_header(&resp, "X-Conn", conn[i], sizeof conn[i]) != 1)
            conn[i][0] = '\0';
        pht_http_response_clear(&resp);
    }
    CHECK(conn[0][0] != '\0' && strcmp(conn[0], conn[1]) == 0); /* kept alive across handles */
    CHECK(conn[3][0] != '\0');
    pht_http_free(h);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    unlink(path);
}

int main(void)
{
    test_endpoints();
    test_error_message();
    test_response_header();
    test_unreachable();
    test_folded_first_header();
    int up = dt_daemon_up("test_http");
    if (up > 0) test_daemon();
    TEST_DONE();
}
