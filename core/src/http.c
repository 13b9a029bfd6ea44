/*
 * The HTTP client over libcurl: one easy handle per pht_http (so the
 * connection is reused), bodies streamed through the caller's callbacks,
 * errors carrying the status and the server's own message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "pht/http.h"
#include "pht/interrupt.h"

#define HTTP_COLLECT_MAX (1u << 20) /* default cap of a collected 2xx body */
#define HTTP_ERROR_MAX (64u << 10)  /* error bodies keep this much */

struct pht_http {
    /* A fresh easy handle per exchange (the last one is kept for its info),
     * its connections in the share: libcurl 7.88 keeps a pointer to the
     * previous exchange's freed header store across curl_easy_reset, and a
     * folded first header line of the next answer reads and reallocs it
     * (curl/curl#11101, fixed in 8.1.0; fuzz/README.md). */
    CURL *curl;
    CURLSH *share;
    char *endpoint;
    char *base;   /* "http://localhost" for a unix socket, else the endpoint as a URL */
    char *socket; /* unix socket path, or NULL */
    /* pht_http_set_tls: */
    int tls_set, insecure;
    char *ca_blob; /* the system bundle and the extra CAs, PEM */
    size_t ca_blob_len;
    char *client_cert, *client_key;
    pht_http_timeouts limits; /* pht_http_set_timeouts */
};

static const pht_http_timeouts default_limits = {PHT_HTTP_CONNECT_TIMEOUT, PHT_HTTP_IDLE_TIMEOUT,
                                                 0};

static void tls_clear(pht_http *h);

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", a, b);
    return s;
}

int pht_http_new(pht_http **out, const char *endpoint, pht_error *err)
{
    *out = NULL;
    if (endpoint == NULL || endpoint[0] == '\0')
        return pht_error_set(err, PHT_EINVAL, "HTTP endpoint is empty");
    const char *sock = NULL, *host = NULL;
    if (starts(endpoint, "unix://")) {
        sock = endpoint + 7;
        if (sock[0] != '/')
            return pht_error_set(err, PHT_EINVAL,
                                 "endpoint %.200s: the socket path must be absolute", endpoint);
        if (strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return pht_error_set(err, PHT_EINVAL,
                                 "endpoint %.200s: socket path too long (%zu bytes)", endpoint,
                                 strlen(sock));
    } else if (starts(endpoint, "tcp://")) {
        host = endpoint + 6;
    } else if (!starts(endpoint, "http://") && !starts(endpoint, "https://")) {
        return pht_error_set(err, PHT_EINVAL,
                             "endpoint %.200s: expected unix:///PATH, tcp://HOST:PORT or "
                             "http(s)://HOST[:PORT]",
                             endpoint);
    }
    if (host && (host[0] == '\0' || strpbrk(host, "/?#@ ")))
        return pht_error_set(err, PHT_EINVAL, "endpoint %.200s: expected tcp://HOST:PORT",
                             endpoint);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return pht_error_set(err, PHT_EHTTP, "libcurl could not be initialised");
    pht_http *h = calloc(1, sizeof *h);
    if (h == NULL) {
        curl_global_cleanup();
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    h->endpoint = strdup(endpoint);
    h->limits = default_limits;
    if (sock) {
        h->socket = strdup(sock);
        h->base = strdup("http://localhost");
    } else if (host) {
        h->base = join("http://", host);
    } else {
        h->base = strdup(endpoint);
        size_t n = h->base ? strlen(h->base) : 0;
        while (n > 0 && h->base[n - 1] == '/')
            h->base[--n] = '\0';
    }
    h->share = curl_share_init();
    if (h->share &&
        curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK) {
        curl_share_cleanup(h->share);
        h->share = NULL;
    }
    h->curl = curl_easy_init();
    if (h->endpoint == NULL || h->base == NULL || (sock && h->socket == NULL) || h->curl == NULL ||
        h->share == NULL) {
        pht_http_free(h);
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    *out = h;
    return 0;
}

void pht_http_free(pht_http *h)
{
    if (h == NULL) return;
    if (h->curl) curl_easy_cleanup(h->curl); /* before the share it uses */
    if (h->share) curl_share_cleanup(h->share);
    free(h->endpoint);
    free(h->base);
    free(h->socket);
    tls_clear(h);
    free(h);
    curl_global_cleanup();
}

void pht_http_set_timeouts(pht_http *h, const pht_http_timeouts *t)
{
    h->limits = t ? *t : default_limits;
    if (h->limits.connect < 0) h->limits.connect = 0;
    if (h->limits.idle < 0) h->limits.idle = 0;
    if (h->limits.total < 0) h->limits.total = 0;
}

void pht_http_get_timeouts(const pht_http *h, pht_http_timeouts *out)
{
    *out = h->limits;
}

const char *pht_http_endpoint(const pht_http *h)
{
    return h->endpoint;
}

void pht_http_request_init(pht_http_request *req)
{
    memset(req, 0, sizeof *req);
}

void pht_http_response_clear(pht_http_response *resp)
{
    if (resp == NULL) return;
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
    free(resp->headers);
    resp->headers = NULL;
    resp->headers_len = 0;
}

char *pht_http_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s ? s : "", 0);
    char *out = e ? strdup(e) : NULL;
    curl_free(e);
    return out;
}

/* ---- error messages ---------------------------------------------------------- */

static void clean_copy(const char *s, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[n++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

void pht_http_error_message(const char *body, size_t len, char *out, size_t cap)
{
    if (cap == 0) return;
    out[0] = '\0';
    size_t i = 0;
    while (body && i < len &&
           (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        i++;
    if (body == NULL || i == len) {
        snprintf(out, cap, "(no message)");
        return;
    }
    if (body[i] == '{') {
        cJSON *j = cJSON_ParseWithLength(body + i, len - i);
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "message"));
        if (m == NULL) m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "error"));
        if (m) clean_copy(m, strlen(m), out, cap);
        cJSON_Delete(j);
        if (m) return;
    }
    const char *nl = memchr(body + i, '\n', len - i);
    clean_copy(body + i, nl ? (size_t)(nl - (body + i)) : len - i, out, cap);
}

/* ---- one exchange ---------------------------------------------------------- */

typedef struct xfer {
    const pht_http_request *req;
    pht_http_response *resp;
    CURL *curl;
    long status;
    size_t cap;
    int cb_failed; /* a source or sink failed: its error is in cb_err */
    int too_big;
    pht_error cb_err;
    long idle;        /* seconds without a byte moving that end the exchange; 0: none */
    double last_move; /* when a byte last moved (monotonic seconds) */
    curl_off_t seen_dl, seen_ul;
    int idle_out; /* the idle limit ended it */
    int sent_all; /* the streamed request body has ended */
} xfer;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The idle limit, checked by libcurl's progress callback (called at least
 * once a second): exact "no byte for N s", where libcurl's low-speed check
 * averages over a window of several seconds.
 */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)ultotal;
    xfer *x = ud;
    /* a signal stops a streamed transfer (an image, a blob); a small call,
     * such as removing a scratch container during cleanup, still completes.
     * So does one whose streamed body was all sent and whose answer is
     * collected (an image load): the peer carries it out whether or not the
     * answer is read, and with the answer the caller can remove what it made. */
    int answer_only = x->sent_all && x->req->sink == NULL;
    if ((x->req->sink || x->req->source) && !answer_only && pht_interrupted()) {
        x->cb_failed = 1;
        pht_interrupt_check(&x->cb_err);
        return 1;
    }
    double t = mono_now();
    if (dlnow != x->seen_dl || ulnow != x->seen_ul) {
        x->seen_dl = dlnow;
        x->seen_ul = ulnow;
        x->last_move = t;
    } else if (x->idle > 0 && t - x->last_move >= (double)x->idle) {
        x->idle_out = 1;
        return 1;
    }
    return 0;
}

static int collect(xfer *x, const char *p, size_t n, size_t cap, int strict)
{
    pht_http_response *r = x->resp;
    if (r->body_len + n > cap) {
        if (strict) return -1;
        n = cap > r->body_len ? cap - r->body_len : 0; /* error bodies: keep the head */
        if (n == 0) return 0;
    }
    char *b = realloc(r->body, r->body_len + n + 1);
    if (b == NULL) return -2;
    memcpy(b + r->body_len, p, n);
    r->body = b;
    r->body_len += n;
    b[r->body_len] = '\0';
    return 0;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb;
    x->last_move = mono_now();
    if (x->status == 0) curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &x->status);
    int ok = x->status >= 200 && x->status < 300;
    if (ok && x->req->sink) {
        if (x->req->sink(x->req->sink_ud, p, n, &x->cb_err) != 0) {
            x->cb_failed = 1;
            return 0;
        }
        return n;
    }
    int r = collect(x, p, n, ok ? x->cap : HTTP_ERROR_MAX, ok);
    if (r == -1) x->too_big = 1;
    if (r == -2) {
        pht_error_set(&x->cb_err, PHT_ENOMEM, "out of memory");
        x->cb_failed = 1;
    }
    return r ? 0 : n;
}

/*
 * libcurl's buffer filled whole from the source unless the body ends: what one call gives is
 * one send (and, chunked, one HTTP chunk), so a source that gives a little at a time (the
 * rest of its own step) would otherwise cost a send and a wakeup of the peer each time.
 */
static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
    xfer *x = ud;
    size_t cap = size * nitems, n = 0;
    x->last_move = mono_now();
    while (n < cap && !x->sent_all) {
        size_t got = 0;
        if (x->req->source(x->req->source_ud, buf + n, cap - n, &got, &x->cb_err) != 0) {
            x->cb_failed = 1;
            return CURL_READFUNC_ABORT;
        }
        if (got == 0) x->sent_all = 1;
        n += got;
    }
    return n;
}

static int set_method(CURL *c, const pht_http_request *req, xfer *x, struct curl_slist **hdr)
{
    const char *m = req->method ? req->method : "GET";
    int post = strcmp(m, "POST") == 0, bad = 0;
    if (req->source || req->body) {
        bad |= curl_easy_setopt(c, CURLOPT_POST, 1L) != CURLE_OK;
        if (req->source) {
            bad |= curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read) != CURLE_OK;
            bad |= curl_easy_setopt(c, CURLOPT_READDATA, x) != CURLE_OK;
            /* a streamed body (an image load, a blob) goes 512 KiB a send, not 64 KiB: an
               eighth of the sends, and of the peer's wakeups to read them */
            bad |= curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 512L << 10) != CURLE_OK;
            curl_off_t len = req->source_len > 0 ? (curl_off_t)req->source_len : -1;
            bad |= curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, len) != CURLE_OK;
            if (len < 0) *hdr = curl_slist_append(*hdr, "Transfer-Encoding: chunked");
        } else {
            bad |= curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body) != CURLE_OK;
            bad |= curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len) !=
                   CURLE_OK;
        }
        if (!post) bad |= curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, m) != CURLE_OK;
    } else if (post) { /* no body: say so, or libcurl would read stdin */
        bad |= curl_easy_setopt(c, CURLOPT_POST, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(c, CURLOPT_POSTFIELDS, "") != CURLE_OK;
        bad |= curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0) != CURLE_OK;
    } else if (strcmp(m, "HEAD") == 0) {
        bad |= curl_easy_setopt(c, CURLOPT_NOBODY, 1L) != CURLE_OK;
    } else if (strcmp(m, "GET") != 0) {
        bad |= curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, m) != CURLE_OK;
    }
    /* A streamed body goes at once, without waiting for "100 Continue". */
    *hdr = curl_slist_append(*hdr, "Expect:");
    return bad || *hdr == NULL;
}

/* ---- response headers, extra request headers, TLS (registry clients) --------- */

#define HTTP_HEADERS_MAX (64u << 10) /* header lines kept per answer */

static size_t on_header(char *p, size_t size, size_t nitems, void *ud)
{
    xfer *x = ud;
    pht_http_response *r = x->resp;
    size_t n = size * nitems;
    x->last_move = mono_now();
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new answer (after 1xx): start over */
        free(r->headers);
        r->headers = NULL;
        r->headers_len = 0;
        long st = 0;
        const char *sp = memchr(p, ' ', n);
        if (sp && sscanf(sp, " %3ld", &st) == 1) r->status = st;
        return n;
    }
    if (r->headers_len + n > HTTP_HEADERS_MAX) return n; /* keep the head */
    char *b = realloc(r->headers, r->headers_len + n + 1);
    if (b == NULL) return n;
    memcpy(b + r->headers_len, p, n);
    r->headers = b;
    r->headers_len += n;
    b[r->headers_len] = '\0';
    return n;
}

int pht_http_response_header(const pht_http_response *resp, const char *name, char *out, size_t cap)
{
    if (cap) out[0] = '\0';
    if (resp == NULL || resp->headers == NULL || name == NULL) return 0;
    size_t nl = strlen(name);
    for (const char *line = resp->headers; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1, *e = line + len;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
            if (cap) {
                size_t k = (size_t)(e - v) < cap - 1 ? (size_t)(e - v) : cap - 1;
                memcpy(out, v, k);
                out[k] = '\0';
            }
            return 1;
        }
        if (end == NULL) break;
        line = end + 1;
    }
    return 0;
}

static void tls_clear(pht_http *h)
{
    free(h->ca_blob);
    free(h->client_cert);
    free(h->client_key);
    h->ca_blob = h->client_cert = h->client_key = NULL;
    h->ca_blob_len = 0;
    h->tls_set = h->insecure = 0;
}

/* Append the file at path (when there is one) to *buf. */
static int append_file(char **buf, size_t *len, const char *path, pht_error *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return errno == ENOENT ? 0 : pht_error_set(err, PHT_EIO, "%s: %s", path, strerror(errno));
    char chunk[16384];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        char *b = realloc(*buf, *len + n + 2);
        if (b == NULL) {
            rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
            break;
        }
        memcpy(b + *len, chunk, n);
        *buf = b;
        *len += n;
    }
    if (rc == 0 && ferror(f)) rc = pht_error_set(err, PHT_EIO, "%s: read failed", path);
    fclose(f);
    return rc;
}

int pht_http_set_tls(pht_http *h, const pht_http_tls *tls, pht_error *err)
{
    tls_clear(h);
    if (tls == NULL) return 0;
    int rc = 0;
    if (tls->ca_pem && tls->ca_pem_len) {
        /* A CA blob replaces libcurl's default bundle: carry that bundle along. */
        char *sys = NULL;
#if LIBCURL_VERSION_NUM >= 0x075400
        curl_easy_getinfo(h->curl, CURLINFO_CAINFO, &sys);
#endif
        if (sys) rc = append_file(&h->ca_blob, &h->ca_blob_len, sys, err);
        char *b = rc ? NULL : realloc(h->ca_blob, h->ca_blob_len + tls->ca_pem_len + 2);
        if (b) {
            b[h->ca_blob_len++] = '\n';
            memcpy(b + h->ca_blob_len, tls->ca_pem, tls->ca_pem_len);
            h->ca_blob_len += tls->ca_pem_len;
            b[h->ca_blob_len] = '\0';
            h->ca_blob = b;
        } else if (rc == 0) {
            rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        }
    }
    if (rc == 0 && tls->client_cert && (h->client_cert = strdup(tls->client_cert)) == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc == 0 && tls->client_key && (h->client_key = strdup(tls->client_key)) == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc != 0) {
        tls_clear(h);
        return rc;
    }
    h->insecure = tls->insecure != 0;
    h->tls_set = 1;
    return 0;
}

/* The request's own header lines, the header callback and the TLS settings. */
static int set_extras(pht_http *h, const pht_http_request *req, xfer *x, struct curl_slist **hdr)
{
    CURL *c = h->curl;
    int bad = 0;
    for (const char *const *l = req->headers; l && *l; l++) {
        struct curl_slist *n = curl_slist_append(*hdr, *l);
        if (n == NULL) return 1;
        *hdr = n;
    }
    bad |= curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_HEADERDATA, x) != CURLE_OK;
    if (!h->tls_set) return bad;
    if (h->insecure) {
        bad |= curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK;
        bad |= curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK;
    }
    if (h->ca_blob) {
        struct curl_blob b = {h->ca_blob, h->ca_blob_len, CURL_BLOB_NOCOPY};
        bad |= curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &b) != CURLE_OK;
    }
    if (h->client_cert) bad |= curl_easy_setopt(c, CURLOPT_SSLCERT, h->client_cert) != CURLE_OK;
    if (h->client_key) bad |= curl_easy_setopt(c, CURLOPT_SSLKEY, h->client_key) != CURLE_OK;
    return bad;
}

/* Which limit ended an exchange that libcurl ended with CURLE_OPERATION_TIMEDOUT. */
static int which_limit(pht_http *h, const pht_http_timeouts *lim, const char *errbuf)
{
    if (strncmp(errbuf, "Connection timed out", 20) == 0 ||
        strncmp(errbuf, "Resolving timed out", 19) == 0)
        return PHT_HTTP_TIMED_OUT_CONNECT;
    curl_off_t connected = 0;
    curl_easy_getinfo(h->curl, CURLINFO_CONNECT_TIME_T, &connected);
    if (connected == 0 && lim->connect > 0 && !h->socket) return PHT_HTTP_TIMED_OUT_CONNECT;
    return PHT_HTTP_TIMED_OUT_TOTAL;
}

static int fail_timeout(pht_http *h, const char *m, const char *path, int which,
                        const pht_http_timeouts *lim, pht_error *err)
{
    if (which == PHT_HTTP_TIMED_OUT_CONNECT)
        return pht_error_set(err, PHT_EHTTP, "%s %.300s at %.200s: not connected within %ld s", m,
                             path, h->endpoint, lim->connect);
    if (which == PHT_HTTP_TIMED_OUT_IDLE)
        return pht_error_set(err, PHT_EHTTP, "%s %.300s at %.200s: no bytes for %ld s", m, path,
                             h->endpoint, lim->idle);
    return pht_error_set(err, PHT_EHTTP, "%s %.300s at %.200s: not done within %ld s", m, path,
                         h->endpoint, lim->total);
}

static int fail_transport(pht_http *h, const char *m, const char *path, CURLcode c,
                          const char *errbuf, pht_error *err)
{
    if (c == CURLE_COULDNT_CONNECT || c == CURLE_COULDNT_RESOLVE_HOST) {
        long oserr = 0;
        curl_easy_getinfo(h->curl, CURLINFO_OS_ERRNO, &oserr);
        const char *why =
            oserr ? strerror((int)oserr) : (errbuf[0] ? errbuf : curl_easy_strerror(c));
        return pht_error_set(err, PHT_EHTTP, "cannot connect to %.200s: %s", h->endpoint, why);
    }
    return pht_error_set(err, PHT_EHTTP, "%s %.300s at %.200s: %s%s%s%s", m, path, h->endpoint,
                         curl_easy_strerror(c), errbuf[0] ? " (" : "", errbuf,
                         errbuf[0] ? ")" : "");
}

int pht_http_do(pht_http *h, const pht_http_request *req, pht_http_response *resp, pht_error *err)
{
    memset(resp, 0, sizeof *resp);
    if (req == NULL || req->path == NULL || req->path[0] != '/')
        return pht_error_set(err, PHT_EINVAL, "HTTP request without an absolute path");
    const char *m = req->method ? req->method : "GET";
    char *url = join(h->base, req->path);
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdr = NULL;
    if (url == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    /* Not curl_easy_reset: see struct pht_http. The share keeps the connection. */
    CURL *c = curl_easy_init();
    if (c == NULL) {
        free(url);
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    curl_easy_cleanup(h->curl);
    h->curl = c;
    xfer x = {.req = req,
              .resp = resp,
              .curl = c,
              .cap = req->max_body ? req->max_body : HTTP_COLLECT_MAX};
    pht_error_clear(&x.cb_err);
    int bad = curl_easy_setopt(c, CURLOPT_SHARE, h->share) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK;
    if (h->socket) bad |= curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, h->socket) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    pht_http_timeouts lim = req->timeouts ? *req->timeouts : h->limits;
    if (req->timeout > 0) lim.total = req->timeout;
    /* A connect limit of 0 is libcurl's own, 300 s. */
    bad |=
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, lim.connect > 0 ? lim.connect : 0L) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_TIMEOUT, lim.total > 0 ? lim.total : 0L) != CURLE_OK;
    x.idle = lim.idle;
    x.last_move = mono_now();
    /* always: the progress callback also stops a transfer on an interrupt */
    bad |= curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_XFERINFODATA, &x) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_WRITEDATA, &x) != CURLE_OK;
    bad |= curl_easy_setopt(c, CURLOPT_USERAGENT, "libpht") != CURLE_OK;
    bad |= set_method(c, req, &x, &hdr);
    if (req->content_type) {
        char line[160];
        snprintf(line, sizeof line, "Content-Type: %.140s", req->content_type);
        struct curl_slist *n = curl_slist_append(hdr, line);
        if (n == NULL)
            bad = 1;
        else
            hdr = n;
    }
    bad |= set_extras(h, req, &x, &hdr);
    bad |= curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr) != CURLE_OK;
    int rc = 0;
    if (bad) {
        rc = pht_error_set(err, PHT_EHTTP, "%s %.300s: libcurl rejected the request options", m,
                           req->path);
        goto done;
    }
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    resp->broken = cc != CURLE_OK && !x.cb_failed && !x.too_big;
    resp->tls_refused =
        resp->broken && (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CONNECT_ERROR ||
                         cc == CURLE_SSL_CERTPROBLEM || cc == CURLE_SSL_CACERT_BADFILE);
    if (x.idle_out) {
        resp->timed_out = PHT_HTTP_TIMED_OUT_IDLE;
        rc = fail_timeout(h, m, req->path, resp->timed_out, &lim, err);
    } else if (x.cb_failed) {
        rc = x.cb_err.code ? x.cb_err.code : PHT_EIO;
        if (err) *err = x.cb_err;
    } else if (x.too_big) {
        rc = pht_error_set(err, PHT_ELIMIT, "%s %.300s: the answer is larger than %zu bytes", m,
                           req->path, x.cap);
    } else if (cc == CURLE_OPERATION_TIMEDOUT) {
        resp->timed_out = which_limit(h, &lim, errbuf);
        rc = fail_timeout(h, m, req->path, resp->timed_out, &lim, err);
    } else if (cc != CURLE_OK && (resp->status < 300 || resp->body_len == 0)) {
        rc = fail_transport(h, m, req->path, cc, errbuf, err);
    } else if (resp->status < 200 || resp->status >= 300) {
        char msg[512];
        pht_http_error_message(resp->body, resp->body_len, msg, sizeof msg);
        rc = pht_error_set(err, resp->status == 404 ? PHT_ENOTFOUND : PHT_EHTTP,
                           "%s %.300s: HTTP %ld: %s", m, req->path, resp->status, msg);
    }
done:
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(hdr);
    free(url);
    return rc;
}
