/*
 * libpht's HTTP client, over libcurl: one connection to one endpoint (a unix
 * socket such as the Docker Engine's, or a TCP address), request and response
 * bodies streamed through callbacks in chunks, and HTTP errors turned into a
 * pht_error carrying the status and the server's message (the "message" field
 * of a JSON error body, as the Docker Engine and registries send it).
 *
 * Endpoints: "unix:///path/to.sock", "tcp://HOST:PORT" (plain HTTP),
 * "http://HOST[:PORT]" and "https://HOST[:PORT]".
 *
 * A pht_http handle keeps its connection open between requests. Handles are
 * not thread-safe; use one per thread.
 */
#ifndef PHT_HTTP_H
#define PHT_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "pht/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pht_http pht_http;

/*
 * Limits of one exchange, in seconds; 0: no limit (connect: libcurl's 300 s). connect: to open the
 * connection (TCP, TLS; a unix socket connects at once); idle: with no byte
 * moving either way (checked about once a second), the limit for
 * long streams; total: for the whole exchange. A handle starts with
 * PHT_HTTP_CONNECT_TIMEOUT, PHT_HTTP_IDLE_TIMEOUT and no total limit.
 */
typedef struct pht_http_timeouts {
    long connect;
    long idle;
    long total;
} pht_http_timeouts;

#define PHT_HTTP_CONNECT_TIMEOUT 30
#define PHT_HTTP_IDLE_TIMEOUT 300

/*
 * Produce the next bytes of a streamed request body: up to cap bytes into buf,
 * *got = 0 at the end (it is not called again after that). It may give fewer
 * than cap: it is called again for the rest of the same send. A non-zero
 * return (a PHT_E* code with err set) aborts the request, and pht_http_do
 * returns that code and message.
 */
typedef int (*pht_http_source)(void *ud, void *buf, size_t cap, size_t *got, pht_error *err);

/*
 * Take the next n bytes of a successful (2xx) response body. A non-zero
 * return (a PHT_E* code with err set) aborts the request, as above.
 */
typedef int (*pht_http_sink)(void *ud, const void *data, size_t n, pht_error *err);

typedef struct pht_http_request {
    const char *method;       /* NULL: GET */
    const char *path;         /* "/v1.41/_ping", query included, escaped by the caller */
    const char *content_type; /* of the request body, or NULL */
    const void *body;         /* a request body in memory (body_len bytes), or NULL */
    size_t body_len;
    pht_http_source source;   /* or a streamed request body, sent chunked */
    void *source_ud;
    pht_http_sink sink;       /* successful response bodies go here; NULL: into resp->body */
    void *sink_ud;
    size_t max_body;          /* cap of a body collected into resp->body; 0: 1 MiB */
    long timeout;             /* seconds for the whole exchange; 0: no limit */
    /* Registry clients (see pht/registry.h): */
    const char *const *headers; /* more header lines ("Name: value"), NULL-terminated, or NULL */
    int64_t source_len;         /* > 0: the streamed body's length, sent as Content-Length
                                   instead of chunked */
    const pht_http_timeouts *timeouts; /* this request's limits; NULL: the handle's
                                          (pht_http_set_timeouts). timeout > 0 overrides total. */
} pht_http_request;

/* What came back. body is collected when the request has no sink, and for errors. */
typedef struct pht_http_response {
    long status;     /* HTTP status, 0 when no answer came */
    char *body;      /* NUL-terminated, or NULL; released by pht_http_response_clear */
    size_t body_len;
    /* The final answer's header lines ("Name: value\r\n"...), NUL-terminated, or NULL;
       status is set as soon as its status line arrives, so a sink may look at it. */
    char *headers;
    size_t headers_len;
    int broken; /* 1: no answer came, or the connection ended before the answer did */
    int tls_refused; /* 1 (with broken): the peer's certificate or the TLS handshake was
                        refused, which another try would not change */
    int timed_out; /* a limit ended the exchange: PHT_HTTP_TIMED_OUT_CONNECT, _IDLE, _TOTAL; else 0 */
} pht_http_response;

enum { PHT_HTTP_TIMED_OUT_CONNECT = 1, PHT_HTTP_TIMED_OUT_IDLE = 2, PHT_HTTP_TIMED_OUT_TOTAL = 3 };

/*
 * A handle for endpoint (see above). Nothing is connected yet. *out is freed
 * with pht_http_free. PHT_EINVAL for an endpoint of another form.
 */
PHT_API int pht_http_new(pht_http **out, const char *endpoint, pht_error *err);

/* Close the connection and free the handle. NULL is fine. */
PHT_API void pht_http_free(pht_http *h);

/*
 * The limits of every later request of h that sets none of its own (see
 * pht_http_timeouts); NULL restores the defaults. _get copies them to *out.
 */
PHT_API void pht_http_set_timeouts(pht_http *h, const pht_http_timeouts *t);
PHT_API void pht_http_get_timeouts(const pht_http *h, pht_http_timeouts *out);

/* The endpoint the handle was made for. */
PHT_API const char *pht_http_endpoint(const pht_http *h);

/* A request with every field zero (GET, no body, collected response). */
PHT_API void pht_http_request_init(pht_http_request *req);

/*
 * Send req and receive the answer into resp (cleared first; the caller
 * releases it with pht_http_response_clear, also after a failure). Returns 0
 * for a 2xx answer. A 404 answer fails with PHT_ENOTFOUND, other 3xx-5xx ones
 * with PHT_EHTTP, both naming method, path, status and the server's message;
 * an unreachable endpoint fails with PHT_EHTTP naming the endpoint and why;
 * a limit of pht_http_timeouts that ran out fails with PHT_EHTTP naming the
 * call, the endpoint and the limit ("GET /x at unix:///s: no bytes for 30 s"),
 * and sets resp->timed_out; PHT_ELIMIT when a collected body exceeds its cap. A source or sink failure
 * is returned as that callback set it.
 */
PHT_API int pht_http_do(pht_http *h, const pht_http_request *req, pht_http_response *resp,
                        pht_error *err);

/* Free the collected body. NULL is fine. */
PHT_API void pht_http_response_clear(pht_http_response *resp);

/*
 * The server's message in an error body: the "message" (or "error") string of
 * a JSON object, else the first line of the text, at most cap-1 bytes with
 * control characters replaced. "(no message)" for an empty body.
 */
PHT_API void pht_http_error_message(const char *body, size_t len, char *out, size_t cap);

/* Percent-encode s for a URL query value; malloc'ed, NULL when out of memory. */
PHT_API char *pht_http_escape(const char *s);

/*
 * The value of the response header name (case-insensitive; the first one),
 * trimmed, into out (cap bytes, NUL-terminated, cut to fit). Returns 1 when
 * the header is there, 0 when not.
 */
PHT_API int pht_http_response_header(const pht_http_response *resp, const char *name, char *out,
                                     size_t cap);

/* TLS settings of a handle for https endpoints (see pht_http_set_tls). */
typedef struct pht_http_tls {
    int insecure;       /* 1: verify neither the peer's certificate nor its name */
    const char *ca_pem; /* PEM certificates trusted besides the system's CAs, or NULL */
    size_t ca_pem_len;
    const char *client_cert; /* PEM file of a client certificate, or NULL */
    const char *client_key;  /* PEM file of its key */
} pht_http_tls;

/*
 * Use tls for every later request of h (the strings are copied). The
 * system's CA bundle stays trusted; ca_pem adds to it. NULL restores the
 * defaults. PHT_EIO when the system bundle cannot be read.
 */
PHT_API int pht_http_set_tls(pht_http *h, const pht_http_tls *tls, pht_error *err);

#ifdef __cplusplus
}
#endif
#endif
