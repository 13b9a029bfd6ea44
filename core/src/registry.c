/*
 * The registry client: endpoint and TLS setup, and one request with its
 * authentication, redirects and retries (reg_do), on which the distribution
 * API calls of registry_api.c are made. Authentication itself is in
 * registry_auth.c.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "pht/fs.h"
#include "pht/util.h"
#include "registry_internal.h"

#define REG_CERT_FILE_MAX (1u << 20)
#define REG_REDIRECTS 5
#define REG_BACKOFF_MAX_MS 10000

/* ---- setup ------------------------------------------------------------------ */

void pht_registry_options_init(pht_registry_options *o)
{
    memset(o, 0, sizeof *o);
    o->tls_verify = 1;
}

void pht_registry_upload_init(pht_registry_upload *up)
{
    memset(up, 0, sizeof *up);
    up->size = -1;
}

/* Read one PEM file of the cert dir into *buf (appending), checking it holds certificates. */
static int add_ca_file(pht_registry *r, const char *path, pht_error *err)
{
    BIO *bio = BIO_new_file(path, "rb");
    if (bio == NULL) return pht_error_set_ssl(err, PHT_EIO, "%s: cannot open", path);
    int count = 0, rc = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        count++;
        BIO *mem = BIO_new(BIO_s_mem());
        char *p = NULL;
        long n = 0;
        if (mem == NULL || PEM_write_bio_X509(mem, x) != 1 ||
            (n = BIO_get_mem_data(mem, &p)) <= 0 ||
            r->ca_len + (size_t)n > 16 * REG_CERT_FILE_MAX) {
            rc = pht_error_set_ssl(err, PHT_EKEY, "%s: cannot take its certificates", path);
        } else {
            char *b = realloc(r->ca_pem, r->ca_len + (size_t)n + 1);
            if (b == NULL) {
                rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
            } else {
                memcpy(b + r->ca_len, p, (size_t)n);
                r->ca_pem = b;
                r->ca_len += (size_t)n;
                b[r->ca_len] = '\0';
            }
        }
        BIO_free(mem);
        X509_free(x);
        if (rc) break;
    }
    BIO_free(bio);
    if (rc == 0 && count == 0)
        rc = pht_error_set_ssl(err, PHT_EKEY, "%s: no PEM certificate in it", path);
    ERR_clear_error(); /* the end of the file leaves a "no start line" */
    return rc;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcmp(s + n - m, suffix) == 0;
}

/*
 * skopeo's --cert-dir: every *.crt is a CA; X.cert and X.key are a client
 * pair (the first pair by name is used; a half pair is an error).
 */
static int load_cert_dir(pht_registry *r, const char *dir, pht_error *err)
{
    pht_dirent *list = NULL;
    size_t n = 0;
    int rc = pht_dir_list(dir, 4096, &list, &n, err);
    if (rc != 0) return pht_error_prefix(err, "cert dir");
    char path[PATH_MAX];
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *name = list[i].name;
        if (list[i].type != PHT_DT_FILE && list[i].type != PHT_DT_SYMLINK) continue;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (ends_with(name, ".crt")) {
            rc = add_ca_file(r, path, err);
        } else if (ends_with(name, ".cert") || ends_with(name, ".key")) {
            int is_cert = ends_with(name, ".cert");
            size_t stem = strlen(name) - (is_cert ? 5 : 4);
            char other[PATH_MAX];
            snprintf(other, sizeof other, "%s/%.*s%s", dir, (int)stem, name,
                     is_cert ? ".key" : ".cert");
            if (access(other, R_OK) != 0) {
                rc = pht_error_set(err, PHT_EKEY, "cert dir %s: %s has no %s beside it", dir, name,
                                   strrchr(other, '/') + 1);
            } else if (is_cert && r->client_cert == NULL) {
                r->client_cert = strdup(path);
                r->client_key = strdup(other);
                if (r->client_cert == NULL || r->client_key == NULL)
                    rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
            }
        }
    }
    pht_dir_list_free(list, n);
    return rc;
}

/* The TLS settings for a connection; the client pair only for the registry's host. */
static void tls_for(const pht_registry *r, int registry_host, pht_http_tls *t)
{
    memset(t, 0, sizeof *t);
    t->insecure = !r->tls_verify;
    t->ca_pem = r->ca_pem;
    t->ca_pem_len = r->ca_len;
    if (registry_host) {
        t->client_cert = r->client_cert;
        t->client_key = r->client_key;
    }
}

static int connect_registry(pht_registry *r, pht_error *err)
{
    pht_http_free(r->http);
    r->http = NULL;
    char ep[600];
    snprintf(ep, sizeof ep, "%s://%s", r->scheme, r->api_host);
    int rc = pht_http_new(&r->http, ep, err);
    pht_http_tls t;
    tls_for(r, 1, &t);
    if (rc == 0) rc = pht_http_set_tls(r->http, &t, err);
    return rc;
}

static char *dup_or_null(const char *s, int *bad)
{
    if (s == NULL) return NULL;
    char *d = strdup(s);
    if (d == NULL) *bad = 1;
    return d;
}

int pht_registry_open(pht_registry **out, const char *endpoint, const pht_registry_options *o,
                      pht_error *err)
{
    *out = NULL;
    pht_registry_options defaults;
    if (o == NULL) {
        pht_registry_options_init(&defaults);
        o = &defaults;
    }
    const char *host = endpoint ? endpoint : "";
    const char *scheme = "https";
    int given = 0;
    if (strncmp(host, "https://", 8) == 0)
        host += 8, given = 1;
    else if (strncmp(host, "http://", 7) == 0)
        host += 7, given = 1, scheme = "http";
    size_t hl = strlen(host);
    while (hl > 0 && host[hl - 1] == '/')
        hl--;
    if (hl == 0 || hl > 255 || memchr(host, '/', hl) || strpbrk(host, "@?# \t\r\n\\\"'"))
        return pht_error_set(err, PHT_EINVAL,
                             "registry \"%.200s\": expected HOST[:PORT], optionally with "
                             "https:// or http://",
                             endpoint ? endpoint : "");
    if (strcmp(scheme, "http") == 0 && o->tls_verify)
        return pht_error_set(
            err, PHT_EINVAL,
            "registry %.200s: plain http needs tls_verify off (--tls-verify=false)", endpoint);
    const char *colon = o->creds ? strchr(o->creds, ':') : NULL;
    if (o->creds && (colon == NULL || colon == o->creds))
        return pht_error_set(err, PHT_EINVAL, "registry %.200s: creds must be USER:PASSWORD",
                             endpoint);
    pht_registry *r = calloc(1, sizeof *r);
    if (r == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    int bad = 0;
    r->host = strndup(host, hl);
    bad |= r->host == NULL;
    r->api_host = strdup(r->host && strcmp(r->host, "docker.io") == 0 ? "registry-1.docker.io"
                                                                      : (r->host ? r->host : ""));
    bad |= r->api_host == NULL;
    snprintf(r->scheme, sizeof r->scheme, "%s", scheme);
    r->scheme_given = given;
    r->tls_verify = o->tls_verify != 0;
    r->anonymous = o->anonymous != 0;
    r->max_tries = o->max_tries > 0 ? o->max_tries : 3;
    r->retry_ms = o->retry_delay_ms ? o->retry_delay_ms : 200;
    r->max_manifest = o->max_manifest ? o->max_manifest : REG_MANIFEST_MAX;
    if (o->creds) {
        r->creds_user = strndup(o->creds, (size_t)(colon - o->creds));
        r->creds_pass = strdup(colon + 1);
        bad |= r->creds_user == NULL || r->creds_pass == NULL;
    }
    r->auth_file = dup_or_null(o->auth_file, &bad);
    int rc = bad ? pht_error_set(err, PHT_ENOMEM, "out of memory") : 0;
    if (rc == 0 && o->cert_dir) rc = load_cert_dir(r, o->cert_dir, err);
    if (rc == 0) rc = connect_registry(r, err);
    if (rc != 0) {
        pht_registry_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void pht_registry_free(pht_registry *r)
{
    if (r == NULL) return;
    reg_auth_clear(r);
    pht_http_free(r->http);
    for (size_t i = 0; i < REG_ORIGINS; i++) {
        pht_http_free(r->origins[i].http);
        free(r->origins[i].origin);
    }
    free(r->host);
    free(r->api_host);
    free(r->creds_user);
    if (r->creds_pass) pht_secret_free(r->creds_pass, strlen(r->creds_pass) + 1);
    free(r->auth_file);
    free(r->ca_pem);
    free(r->client_cert);
    free(r->client_key);
    free(r);
}

const char *pht_registry_host(const pht_registry *r)
{
    return r->host;
}

int pht_registry_credentials(pht_registry *r, const char *repo, char *user, size_t ucap,
                             char *source, size_t scap, pht_error *err)
{
    if (repo && reg_check_repo(repo, err) != 0) return err->code;
    const reg_cred *c = NULL;
    int rc = reg_creds_for(r, repo, &c, err);
    if (rc != 0) return rc;
    if (ucap) snprintf(user, ucap, "%s", c->user ? c->user : "");
    if (scap) snprintf(source, scap, "%s", c->source);
    return 0;
}

/* ---- URLs and connections ---------------------------------------------------- */

int reg_split_url(const char *base, const char *url, char *origin, size_t cap, char **path,
                  pht_error *err)
{
    *path = NULL;
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *p = NULL, *q = NULL;
    int rc = 0;
    if (u == NULL || curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &p, 0) != CURLUE_OK) {
        rc = pht_error_set(err, PHT_EFORMAT, "not a URL: %.200s", url);
    } else if (strcasecmp(scheme, "https") != 0 && strcasecmp(scheme, "http") != 0) {
        rc = pht_error_set(err, PHT_EFORMAT, "not an http(s) URL: %.200s", url);
    } else {
        curl_url_get(u, CURLUPART_QUERY, &q, 0);
        snprintf(origin, cap, "%s://%s:%s", scheme, host, port);
        size_t n = strlen(p) + (q ? strlen(q) + 1 : 0) + 1;
        *path = malloc(n);
        if (*path == NULL)
            rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        else
            snprintf(*path, n, "%s%s%s", p, q ? "?" : "", q ? q : "");
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(p);
    curl_free(q);
    curl_url_cleanup(u);
    return rc;
}

/* "https://host:port" of the registry itself, as reg_split_url writes origins. */
static void registry_origin(const pht_registry *r, char *out, size_t cap)
{
    char base[600], *path = NULL;
    snprintf(base, sizeof base, "%s://%s/", r->scheme, r->api_host);
    if (reg_split_url(base, base, out, cap, &path, NULL) != 0) snprintf(out, cap, "%s", base);
    free(path);
}

int reg_origin_http(pht_registry *r, const char *origin, pht_http **out, pht_error *err)
{
    char mine[700];
    registry_origin(r, mine, sizeof mine);
    if (strcasecmp(origin, mine) == 0) {
        *out = r->http;
        return 0;
    }
    reg_origin *slot = &r->origins[0];
    for (size_t i = 0; i < REG_ORIGINS; i++) {
        if (r->origins[i].origin && strcasecmp(r->origins[i].origin, origin) == 0) {
            *out = r->origins[i].http;
            return 0;
        }
        if (r->origins[i].origin == NULL) slot = &r->origins[i];
    }
    if (slot->origin) { /* all taken: drop the first */
        pht_http_free(slot->http);
        free(slot->origin);
        slot->http = NULL;
        slot->origin = NULL;
    }
    /* The client certificate goes only to the registry's own host. */
    char a[700], b[700];
    snprintf(a, sizeof a, "%s", strstr(origin, "://") ? strstr(origin, "://") + 3 : origin);
    snprintf(b, sizeof b, "%s", strstr(mine, "://") ? strstr(mine, "://") + 3 : mine);
    a[strcspn(a, ":")] = b[strcspn(b, ":")] = '\0';
    pht_http_tls t;
    tls_for(r, strcasecmp(a, b) == 0, &t);
    int rc = pht_http_new(&slot->http, origin, err);
    if (rc == 0) rc = pht_http_set_tls(slot->http, &t, err);
    if (rc == 0 && (slot->origin = strdup(origin)) == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc != 0) {
        pht_http_free(slot->http);
        slot->http = NULL;
        return rc;
    }
    *out = slot->http;
    return 0;
}

/* ---- retries and errors ------------------------------------------------------- */

int reg_transient(const pht_http_response *resp)
{
    long s = resp->status;
    return (resp->broken && !resp->tls_refused) || s == 429 || s == 500 || s == 502 || s == 503 ||
           s == 504;
}

void reg_backoff(const pht_registry *r, int t, const pht_http_response *resp)
{
    unsigned long ms = (unsigned long)r->retry_ms << (t > 8 ? 8 : t - 1);
    char ra[32];
    if (resp && pht_http_response_header(resp, "Retry-After", ra, sizeof ra)) {
        char *end;
        unsigned long s = strtoul(ra, &end, 10);
        if (end != ra && *end == '\0' && s * 1000 > ms) ms = s * 1000;
    }
    if (ms > REG_BACKOFF_MAX_MS) ms = REG_BACKOFF_MAX_MS;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void reg_error_text(const pht_http_response *resp, char *out, size_t cap)
{
    out[0] = '\0';
    cJSON *j = resp->body ? cJSON_ParseWithLength(resp->body, resp->body_len) : NULL;
    cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "errors"), 0);
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
    const char *code = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "code"));
    if (msg || code) {
        char raw[512];
        snprintf(raw, sizeof raw, "%s%s%s%s", msg ? msg : "", msg && code ? " (" : "",
                 code ? code : "", msg && code ? ")" : "");
        pht_http_error_message(raw, strlen(raw), out, cap);
    }
    cJSON_Delete(j);
    if (out[0] == '\0') pht_http_error_message(resp->body, resp->body_len, out, cap);
}

/* ---- one request ------------------------------------------------------------------ */

/* The error for a failed answer or a broken exchange. */
static int reg_fail(pht_registry *r, const reg_req *rq, const pht_http_response *resp, int tries,
                    const char *transport, const char *foreign, pht_error *err)
{
    char text[400], who[600] = "", where[900];
    long s = resp->status;
    if (foreign)
        snprintf(where, sizeof where, "registry %s, repository %s: %s (redirected to %s)", r->host,
                 rq->repo ? rq->repo : "-", rq->what, foreign);
    else if (rq->repo)
        snprintf(where, sizeof where, "registry %s, repository %s: %s", r->host, rq->repo,
                 rq->what);
    else
        snprintf(where, sizeof where, "registry %s: %s", r->host, rq->what);
    if (resp->broken || s == 0)
        return pht_error_set(err, PHT_EHTTP, "%s: the connection failed (%d %s): %s", where, tries,
                             tries == 1 ? "try" : "tries", transport);
    reg_error_text(resp, text, sizeof text);
    char v[2048];
    reg_challenge ch;
    if (s == 401 && pht_http_response_header(resp, "WWW-Authenticate", v, sizeof v) &&
        reg_parse_challenge(v, &ch) == 0 && ch.error[0]) {
        size_t n = strlen(text);
        if (strcmp(text, "(no message)") == 0) n = 0;
        snprintf(text + n, sizeof text - n, "%s%s", n ? "; " : "", ch.error);
    }
    if (s == 401 || s == 403) {
        const reg_cred *c = NULL;
        pht_error ignore;
        if (reg_creds_for(r, rq->repo, &c, &ignore) == 0) reg_cred_describe(c, who, sizeof who);
        return pht_error_set(err, PHT_EHTTP, "%s: %s (HTTP %ld: %s) with %s", where,
                             s == 401 ? "not authorized" : "access denied", s, text, who);
    }
    if (s == 404)
        return pht_error_set(err, PHT_ENOTFOUND, "%s: not found (HTTP 404: %s)", where, text);
    if (s == 429)
        return pht_error_set(err, PHT_EHTTP, "%s: too many requests (HTTP 429: %s), %d %s", where,
                             text, tries, tries == 1 ? "try" : "tries");
    if (s >= 500)
        return pht_error_set(err, PHT_EHTTP, "%s: server error (HTTP %ld: %s), %d %s", where, s,
                             text, tries, tries == 1 ? "try" : "tries");
    return pht_error_set(err, PHT_EHTTP, "%s: HTTP %ld: %s", where, s, text);
}

/* Drop the query from a message: a redirect's query may be a signed URL. */
static void drop_query(char *msg)
{
    for (char *p = msg; (p = strchr(p, '?')) != NULL;) {
        size_t n = strcspn(p, " )");
        memmove(p, p + n, strlen(p + n) + 1);
    }
}

/* What one try came to, for reg_do (besides 0 and the PHT_E* codes). */
enum {
    REG_AGAIN = 1, /* 401 with a challenge: authenticate (again) and retry */
    REG_FAILED = 2 /* an error answer or a broken exchange: reg_do says which */
};

/* Where one try went: messages and the last answer's challenge. */
typedef struct reg_try {
    reg_challenge ch;
    char transport[PHT_ERROR_MSG_MAX]; /* why the exchange broke off */
    char foreign[1100];                /* the other host a redirect led to, or "" */
} reg_try;

/* Follow a redirect: the Location resolved against the URL that answered. */
static int next_hop(pht_registry *r, const reg_req *rq, const char *origin, const char *path,
                    const pht_http_response *resp, char **url, pht_error *err)
{
    char loc[4096], cur[4096], next[1100], *np = NULL;
    if (!pht_http_response_header(resp, "Location", loc, sizeof loc) || loc[0] == '\0')
        return REG_FAILED;
    snprintf(cur, sizeof cur, "%s%s", origin, path);
    if (reg_split_url(cur, loc, next, sizeof next, &np, err) != 0)
        return pht_error_prefix(err, "registry %s: %s: redirect", r->host, rq->what);
    if (r->tls_verify && strncasecmp(origin, "https:", 6) == 0 &&
        strncasecmp(next, "http:", 5) == 0) {
        free(np);
        return pht_error_set(err, PHT_EHTTP,
                             "registry %s, repository %s: %s: refusing a redirect from https to "
                             "plain http (%s)",
                             r->host, rq->repo ? rq->repo : "-", rq->what, next);
    }
    size_t n = strlen(next) + strlen(np) + 1;
    free(*url);
    *url = malloc(n);
    if (*url) snprintf(*url, n, "%s%s", next, np);
    free(np);
    return *url ? 0 : pht_error_set(err, PHT_ENOMEM, "out of memory");
}

/* One try: authenticate, send, follow redirects. */
static int reg_send(pht_registry *r, const reg_req *rq, int force, pht_http_response *resp,
                    reg_try *tr, pht_error *err)
{
    char auth[REG_HDR_MAX];
    int rc = reg_auth_line(r, rq->repo, rq->push, rq->from, force, force ? tr->ch.scope : NULL,
                           auth, sizeof auth, err);
    if (rc != 0) return rc;
    const char *hdrs[24];
    size_t nh = 0;
    for (const char *const *l = rq->headers; l && *l && nh < 20; l++)
        hdrs[nh++] = *l;
    if (auth[0]) hdrs[nh] = auth;
    hdrs[nh + 1] = NULL;
    if (!auth[0]) hdrs[nh] = NULL;
    char mine[700], origin[1100], base[710];
    registry_origin(r, mine, sizeof mine);
    snprintf(base, sizeof base, "%s/", mine);
    tr->foreign[0] = '\0';
    char *url = strdup(rq->url);
    if (url == NULL) rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    const char *method = rq->method ? rq->method : "GET";
    for (int hop = 0; rc == 0; hop++) {
        char *path = NULL;
        pht_http *h = NULL;
        rc = reg_split_url(base, url, origin, sizeof origin, &path, err);
        if (rc == 0 && strcasecmp(origin, mine) != 0) {
            /* Another host (blob storage): never the registry's credentials. */
            hdrs[nh] = NULL;
            snprintf(tr->foreign, sizeof tr->foreign, "%s", origin);
        }
        if (rc == 0) rc = reg_origin_http(r, origin, &h, err);
        if (rc != 0) {
            free(path);
            break;
        }
        pht_http_request req;
        pht_http_request_init(&req);
        req.method = method;
        req.path = path;
        req.headers = hdrs;
        req.content_type = rq->content_type;
        req.body = rq->body;
        req.body_len = rq->body_len;
        req.source = rq->source;
        req.source_ud = rq->source_ud;
        req.source_len = rq->source_len;
        req.sink = rq->sink;
        req.sink_ud = rq->sink_ud;
        req.max_body = rq->max_body;
        pht_error herr;
        pht_error_clear(&herr);
        pht_http_response_clear(resp);
        int hr = pht_http_do(h, &req, resp, &herr);
        long s = resp->status;
        if (hr == 0 || (s == rq->ok_status && s != 0)) {
            free(path);
            break;
        }
        int answered =
            !resp->broken && s >= 300 && (herr.code == PHT_EHTTP || herr.code == PHT_ENOTFOUND);
        if (!answered && !resp->broken) { /* a source, a sink or a cap said no */
            free(path);
            if (err) *err = herr;
            rc = herr.code ? herr.code : PHT_EIO;
            break;
        }
        if (answered && rq->follow && (s == 301 || s == 302 || s == 303 || s == 307 || s == 308)) {
            rc = hop >= REG_REDIRECTS
                     ? pht_error_set(err, PHT_EHTTP, "registry %s: %s: more than %d redirects",
                                     r->host, rq->what, REG_REDIRECTS)
                     : next_hop(r, rq, origin, path, resp, &url, err);
            free(path);
            if (s == 303 && strcmp(method, "HEAD") != 0) method = "GET";
            continue;
        }
        free(path);
        if (answered && s == 401 && tr->foreign[0] == '\0') {
            char v[2048];
            if (pht_http_response_header(resp, "WWW-Authenticate", v, sizeof v) &&
                reg_parse_challenge(v, &tr->ch) == 0) {
                rc = REG_AGAIN;
                break;
            }
        }
        snprintf(tr->transport, sizeof tr->transport, "%s", herr.message);
        drop_query(tr->transport);
        rc = REG_FAILED;
    }
    OPENSSL_cleanse(auth, sizeof auth);
    free(url);
    return rc;
}

/* Learn how the registry authenticates from a challenge. */
static void take_challenge(pht_registry *r, const reg_challenge *c)
{
    r->auth = c->kind;
    if (c->kind == REG_AUTH_BEARER) {
        snprintf(r->realm, sizeof r->realm, "%s", c->realm);
        snprintf(r->service, sizeof r->service, "%s", c->service);
    }
}

static int ensure_ping(pht_registry *r, pht_error *err);

int reg_do(pht_registry *r, const reg_req *rq, pht_http_response *resp, pht_error *err)
{
    pht_http_response_clear(resp);
    memset(resp, 0, sizeof *resp);
    int rc = rq->repo ? ensure_ping(r, err) : 0;
    if (rc != 0) return rc;
    int tries = rq->retry ? r->max_tries : 1, again = 0;
    reg_try tr;
    memset(&tr, 0, sizeof tr);
    for (int t = 1;; t++) {
        rc = reg_send(r, rq, again, resp, &tr, err);
        if (rc == REG_AGAIN) {
            /* A token refused or too narrow, or a repository that wants what the ping did
               not: authenticate once more. Basic credentials refused stay refused. */
            if (!again && (tr.ch.kind == REG_AUTH_BEARER || r->auth != tr.ch.kind)) {
                take_challenge(r, &tr.ch);
                again = 1;
                t--;
                continue;
            }
            rc = REG_FAILED;
        }
        if (rc == REG_FAILED && reg_transient(resp) && t < tries) {
            reg_backoff(r, t, resp);
            continue;
        }
        if (rc == REG_FAILED)
            rc = reg_fail(r, rq, resp, t, tr.transport, tr.foreign[0] ? tr.foreign : NULL, err);
        break;
    }
    if (rc != 0) reg_scrub(r, err);
    return rc;
}

static int ensure_ping(pht_registry *r, pht_error *err)
{
    if (r->auth != REG_AUTH_UNKNOWN) return 0;
    return pht_registry_ping(r, err);
}

int pht_registry_ping(pht_registry *r, pht_error *err)
{
    reg_req rq = {
        .what = "GET /v2/", .url = "/v2/", .retry = 1, .max_body = 64 << 10, .ok_status = 401};
    pht_http_response resp = {0};
    int rc = reg_do(r, &rq, &resp, err);
    if (rc != 0 && !r->scheme_given && !r->tls_verify && strcmp(r->scheme, "https") == 0 &&
        resp.broken) {
        /* --tls-verify=false: a registry that does not speak TLS, as skopeo allows. */
        pht_error first;
        pht_error_clear(&first);
        if (err) first = *err;
        snprintf(r->scheme, sizeof r->scheme, "http");
        rc = connect_registry(r, err);
        if (rc == 0) rc = reg_do(r, &rq, &resp, err);
        if (rc != 0 && resp.broken) {
            snprintf(r->scheme, sizeof r->scheme, "https");
            connect_registry(r, NULL);
            if (err) *err = first;
        }
    }
    if (rc == 0 && resp.status == 401) {
        char v[2048];
        reg_challenge c;
        if (pht_http_response_header(&resp, "WWW-Authenticate", v, sizeof v) &&
            reg_parse_challenge(v, &c) == 0 && (c.kind != REG_AUTH_BEARER || c.realm[0]))
            take_challenge(r, &c);
        else
            rc = pht_error_set(err, PHT_EHTTP,
                               "registry %s: GET /v2/ answered 401 without a Basic or Bearer "
                               "challenge to follow",
                               r->host);
    } else if (rc == 0) {
        r->auth = REG_AUTH_NONE;
    }
    if (rc == 0) pht_error_clear(err);
    pht_http_response_clear(&resp);
    return rc;
}
