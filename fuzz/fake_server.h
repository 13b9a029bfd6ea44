/*
 * An HTTP peer for the client fuzz targets: a thread that accepts one
 * request per connection on a unix socket or 127.0.0.1, reads its head and
 * body, and answers with the bytes the fuzzer wrote, raw (status line,
 * headers, a plain or chunked body, or garbage), then closes. The input's
 * parts ("\n@@\n" between them) answer the exec's requests in turn, the
 * last one all later requests; "$ORIGIN" in them becomes
 * http://127.0.0.1:PORT (a token realm, a redirect that leads back here).
 */
#ifndef PHT_FUZZ_FAKE_SERVER_H
#define PHT_FUZZ_FAKE_SERVER_H

#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include "fuzz_common.h"

#define FS_PARTS 8

static struct {
    pthread_mutex_t mu;
    char *parts[FS_PARTS];
    size_t lens[FS_PARTS];
    size_t n, next;
    char origin[64];
    int lst;
} fs = {.mu = PTHREAD_MUTEX_INITIALIZER};

static inline void fs_read_request(int c)
{
    struct timeval tv = {0, 100000};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    static __thread char buf[1 << 16];
    size_t n = 0;
    long want = -1; /* body bytes still expected; -2: chunked */
    char *end = NULL;
    for (;;) {
        if (n + 1 >= sizeof buf) n = 0; /* a big upload: keep reading, keep nothing */
        ssize_t r = recv(c, buf + n, sizeof buf - 1 - n, 0);
        if (r <= 0) return;
        n += (size_t)r;
        buf[n] = '\0';
        if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            if (strcasestr(buf, "\r\ntransfer-encoding: chunked")) want = -2;
            else if (cl && cl < end) want = strtol(cl + 17, NULL, 10);
            else return;
            size_t have = n - (size_t)(end + 4 - buf);
            if (want >= 0 && (long)have >= want) return;
            if (want >= 0) want -= (long)have;
        } else if (end && want >= 0) {
            want -= r;
            if (want <= 0) return;
        }
        size_t from = n > 16 ? n - 16 : 0; /* bodies hold NULs: memmem, not strstr */
        if (want == -2 && memmem(buf + from, n - from, "\r\n0\r\n\r\n", 7)) return;
    }
}

static inline void fs_write_all(int c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c, p, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

static inline void *fs_loop(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(fs.lst, NULL, NULL);
        if (c < 0) continue;
        fs_read_request(c);
        pthread_mutex_lock(&fs.mu);
        size_t i = fs.next < fs.n ? fs.next : fs.n - 1;
        fs.next++;
        const char *p = fs.n ? fs.parts[i] : "";
        size_t len = fs.n ? fs.lens[i] : 0;
        /* "$ORIGIN" -> this server */
        const char *at;
        while (len && (at = memmem(p, len, "$ORIGIN", 7)) != NULL) {
            fs_write_all(c, p, (size_t)(at - p));
            fs_write_all(c, fs.origin, strlen(fs.origin));
            len -= (size_t)(at - p) + 7;
            p = at + 7;
        }
        fs_write_all(c, p, len);
        pthread_mutex_unlock(&fs.mu);
        shutdown(c, SHUT_WR);
        close(c);
    }
    return NULL;
}

/* Listen on a unix socket (unix_path) or on 127.0.0.1 (NULL); start the thread once. */
static inline void fs_start(const char *unix_path)
{
    if (fs.origin[0]) return;
    if (unix_path) {
        fs.lst = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s", unix_path);
        if (bind(fs.lst, (struct sockaddr *)&a, sizeof a) != 0) abort();
        snprintf(fs.origin, sizeof fs.origin, "http://localhost");
    } else {
        fs.lst = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t alen = sizeof a;
        if (bind(fs.lst, (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(fs.lst, (struct sockaddr *)&a, &alen) != 0)
            abort();
        snprintf(fs.origin, sizeof fs.origin, "http://127.0.0.1:%d", ntohs(a.sin_port));
    }
    if (listen(fs.lst, 64) != 0) abort();
    pthread_t t;
    if (pthread_create(&t, NULL, fs_loop, NULL) != 0) abort();
    pthread_detach(t);
}

/* The answers of the next exec. */
static inline void fs_set(const uint8_t *data, size_t size)
{
    pthread_mutex_lock(&fs.mu);
    fz_free_parts(fs.parts, fs.n);
    fs.n = fz_split(data, size, fs.parts, fs.lens, FS_PARTS);
    fs.next = 0;
    pthread_mutex_unlock(&fs.mu);
}

#endif
