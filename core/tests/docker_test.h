/*
 * Helpers of the C tests that drive a real Docker daemon: finding it (skip
 * with "SKIP: ..." only when none answers and the run did not promise one),
 * running the docker CLI as the oracle, unique names, the base image.
 */
#ifndef PHT_DOCKER_TEST_H
#define PHT_DOCKER_TEST_H

#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static char dt_host[600];

/* The daemon's endpoint as the test suite exports it. */
static const char *dt_endpoint(void)
{
    const char *h = getenv("PHT_TEST_DOCKER_HOST");
    if (h == NULL || h[0] == '\0') h = getenv("DOCKER_HOST");
    if (h == NULL || h[0] == '\0') h = PHT_DOCKER_DEFAULT_HOST;
    snprintf(dt_host, sizeof dt_host, "%s", h);
    return dt_host;
}

/*
 * 1 when a daemon answers. 0 when it does not and the run did not promise one
 * (no PHT_TEST_DOCKER_HOST, or tools/test.sh reported why it could not start
 * one): the caller prints SKIP and passes. A promised daemon that does not
 * answer is a failure.
 */
static int dt_daemon_up(const char *test)
{
    const char *host = dt_endpoint();
    pht_docker *d = NULL;
    pht_error err;
    int rc = pht_docker_open(&d, host, &err);
    if (rc == 0) rc = pht_docker_ping(d, &err);
    pht_docker_free(d);
    if (rc == 0) return 1;
    const char *promised = getenv("PHT_TEST_DOCKER_HOST");
    const char *why = getenv("PHT_TEST_DOCKER_ERROR");
    if (promised && promised[0] && !(why && why[0])) {
        fprintf(stderr, "%s: the test run's Docker daemon %s does not answer: %s\n", test, host,
                err.message);
        test_failures++;
        return -1;
    }
    printf("SKIP: %s: no Docker daemon answers at %s (%s)\n", test, host,
           why && why[0] ? why : err.message);
    return 0;
}

/* Run a shell command with DOCKER_HOST set to the test daemon; its stdout into out. */
static int dt_sh(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    int n = snprintf(cmd, sizeof cmd, "DOCKER_HOST='%s'; export DOCKER_HOST; ", dt_endpoint());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd + n, sizeof cmd - (size_t)n, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    if (p == NULL) return -1;
    size_t used = 0;
    if (out && cap) out[0] = '\0';
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, p)) > 0) {
        if (out && used + 1 < cap) {
            size_t k = got < cap - 1 - used ? got : cap - 1 - used;
            memcpy(out + used, buf, k);
            used += k;
            out[used] = '\0';
        }
    }
    int st = pclose(p);
    if (out) /* drop a trailing newline */
        while (used > 0 && (out[used - 1] == '\n' || out[used - 1] == '\r')) out[--used] = '\0';
    return st;
}

/* "pht-test-c<what>-<pid>" (lowercase, a valid repository name). */
static const char *dt_name(const char *what, char *buf, size_t cap)
{
    snprintf(buf, cap, "pht-test-c%s-%ld", what, (long)getpid());
    return buf;
}

/* The busybox base image archive (built by tools/make-base-image.sh when missing). */
static const char *dt_base_image(char *buf, size_t cap)
{
    const char *p = getenv("PHT_TEST_BASE_IMAGE");
    struct stat st;
    if (p && p[0] && stat(p, &st) == 0) {
        snprintf(buf, cap, "%s", p);
        return buf;
    }
    snprintf(buf, cap, "%s/../test-images/busybox.tar", test_tmpdir());
    if (stat(buf, &st) == 0) return buf;
    char cmd[3000];
    snprintf(cmd, sizeof cmd,
             "'%s/../../tools/make-base-image.sh' -o '%s' -t pht-test/busybox:latest >/dev/null",
             test_fixtures(), buf);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot build the base image: %s\n", cmd);
        test_failures++;
        return NULL;
    }
    return buf;
}

#endif
