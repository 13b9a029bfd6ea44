/*
 * The registry client: endpoint and TLS setup, one request with its
 * authentication, redirects and retries, and the distribution API calls on
 * manifests and blobs. Authentication itself is in registry_auth.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "hash_private.h"

/* "sha256:ab12cd34ef56…" (or the whole text when short) for messages. */
static const char *digest_short(const char *d, char *buf, size_t cap)
{
    if (d == NULL) d = "";
    if (strlen(d) > 19)
        snprintf(buf, cap, "%.19s\u2026", d);
    else
        snprintf(buf, cap, "%s", d);
    return buf;
}
#include "pht/fs.h"
#include "pht/interrupt.h"
#include "pht/util.h"
#include "registry_internal.h"

#define REG_MANIFEST_MAX (4u << 20) /* containers/image's cap */
#define REG_CERT_FILE_MAX (1u << 20)
#define REG_REDIRECTS 5
#define REG_BACKOFF_MAX_MS 10000

static const char ACCEPT_MANIFESTS[] = "Accept: " PHT_MEDIA_OCI_MANIFEST ", " PHT_MEDIA_OCI_INDEX
                                       ", " PHT_MEDIA_DOCKER_MANIFEST ", " PHT_MEDIA_DOCKER_LIST;

/* ---- names ----------------------------------------------------------------- */

/*
 * Refuse what would not make a safe URL path. The full reference grammar
 * belongs to the image references; this only keeps the path well-formed.
 */
static int check_repo(const char *repo, pht_error *err)
{
    size_t n = repo ? strlen(repo) : 0;
    int ok = n > 0 && n <= 255 && repo[0] != '/' && repo[n - 1] != '/' && !strstr(repo, "//");
    for (size_t i = 0; ok && i < n; i++) {
        char c = repo[i];
        ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
             c == '/';
        if (c == '.' && (i == 0 || repo[i - 1] == '/' || repo[i - 1] == '.')) ok = 0;
    }
    if (!ok)
        return pht_error_set(err, PHT_EINVAL,
                             "repository \"%.300s\": expected lowercase path components of "
                             "[a-z0-9._-] separated by /",
                             repo ? repo : "");
    return 0;
}

static int is_tag(const char *ref)
{
    size_t n = strlen(ref);
    if (n == 0 || n > 128 || ref[0] == '.' || ref[0] == '-') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = ref[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static int check_digest(const char *digest, pht_error *err)
{
    if (digest && hash_sha256_valid(digest)) return 0;
    return pht_error_set(err, PHT_EINVAL,
                         "digest \"%.100s\": expected sha256: and 64 lowercase hex digits",
                         digest ? digest : "");
}

static int check_ref(const char *ref, pht_error *err)
{
    if (ref && strncmp(ref, "sha256:", 7) == 0) return check_digest(ref, err);
    if (ref && is_tag(ref)) return 0;
    return pht_error_set(err, PHT_EINVAL,
                         "reference \"%.200s\": expected a tag ([A-Za-z0-9_][A-Za-z0-9._-]*, at "
                         "most 128) or a sha256: digest",
                         ref ? ref : "");
}

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
    if (repo && check_repo(repo, err) != 0) return err->code;
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

typedef struct reg_req {
    const char *method;         /* NULL: GET */
    const char *what;           /* "GET manifest latest", for messages */
    const char *repo;           /* scope, credentials and messages; NULL: the ping */
    int push;                   /* the scope needs push */
    const char *from;           /* a second repository read from (mount) */
    const char *url;            /* "/v2/…" on the registry, or an absolute URL (a Location) */
    const char *const *headers; /* more header lines, NULL-terminated */
    const void *body;
    size_t body_len;
    const char *content_type;
    pht_http_source source;
    void *source_ud;
    int64_t source_len;
    pht_http_sink sink;
    void *sink_ud;
    size_t max_body;
    int follow;     /* follow redirects (GET, HEAD) */
    int retry;      /* retry transient failures here */
    long ok_status; /* an error status that is an answer here (HEAD: 404 absent) */
} reg_req;

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

/*
 * A request with authentication, redirects and (rq->retry) retries. Returns
 * 0 for a 2xx answer (or rq->ok_status), else the error in err.
 */
static int reg_do(pht_registry *r, const reg_req *rq, pht_http_response *resp, pht_error *err)
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

/* ---- manifests -------------------------------------------------------------------- */

void pht_registry_manifest_clear(pht_registry_manifest *m)
{
    if (m == NULL) return;
    free(m->data);
    memset(m, 0, sizeof *m);
}

static int repo_ref_path(char *out, size_t cap, const char *repo, const char *kind, const char *ref)
{
    int n = snprintf(out, cap, "/v2/%s/%s/%s", repo, kind, ref);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* The media type: Content-Type unless it is generic, else the document's mediaType. */
static void manifest_media_type(const pht_http_response *resp, pht_registry_manifest *m)
{
    char ct[PHT_REGISTRY_MEDIA_TYPE_MAX];
    pht_http_response_header(resp, "Content-Type", ct, sizeof ct);
    ct[strcspn(ct, ";")] = '\0';
    while (strlen(ct) && ct[strlen(ct) - 1] == ' ')
        ct[strlen(ct) - 1] = '\0';
    int generic = ct[0] == '\0' || strcmp(ct, "application/json") == 0 ||
                  strcmp(ct, "text/plain") == 0 || strcmp(ct, "application/octet-stream") == 0;
    if (generic && m->data) {
        cJSON *j = cJSON_ParseWithLength(m->data, m->len);
        const char *mt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "mediaType"));
        if (mt) snprintf(ct, sizeof ct, "%s", mt);
        cJSON_Delete(j);
    }
    snprintf(m->media_type, sizeof m->media_type, "%s", ct);
}

static int manifest_request(pht_registry *r, const char *method, const char *repo, const char *ref,
                            pht_registry_manifest *m, pht_error *err)
{
    memset(m, 0, sizeof *m);
    if (check_repo(repo, err) != 0 || check_ref(ref, err) != 0) return err ? err->code : PHT_EINVAL;
    char path[512], what[300];
    if (repo_ref_path(path, sizeof path, repo, "manifests", ref) != 0)
        return pht_error_set(err, PHT_EINVAL, "repository name too long");
    snprintf(what, sizeof what, "%s manifest %.200s", method, ref);
    const char *hdrs[] = {ACCEPT_MANIFESTS, NULL};
    reg_req rq = {.method = method,
                  .what = what,
                  .repo = repo,
                  .url = path,
                  .headers = hdrs,
                  .follow = 1,
                  .retry = 1,
                  .max_body = r->max_manifest};
    pht_http_response resp = {0};
    int rc = reg_do(r, &rq, &resp, err);
    if (rc == PHT_ELIMIT)
        rc = pht_error_set(err, PHT_ELIMIT,
                           "registry %s, repository %s: manifest %.200s is larger than %zu bytes",
                           r->host, repo, ref, r->max_manifest);
    char header[PHT_REGISTRY_DIGEST_MAX + 16] = "";
    if (rc == 0) pht_http_response_header(&resp, "Docker-Content-Digest", header, sizeof header);
    if (rc == 0 && strcmp(method, "GET") == 0) {
        m->data = resp.body ? resp.body : strdup("");
        m->len = resp.body_len;
        resp.body = NULL;
        if (m->data == NULL) rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        if (rc == 0) rc = hash_sha256_buf(m->data, m->len, m->digest, err);
        char a[32], b[32];
        if (rc == 0 && strncmp(ref, "sha256:", 7) == 0 && strcmp(ref, m->digest) != 0)
            rc = pht_error_set(err, PHT_EVERIFY,
                               "registry %s, repository %s: manifest %s: the registry sent bytes "
                               "whose digest is %s; refused",
                               r->host, repo, digest_short(ref, a, sizeof a),
                               digest_short(m->digest, b, sizeof b));
        else if (rc == 0 && header[0] && strcmp(header, m->digest) != 0)
            rc = pht_error_set(err, PHT_EVERIFY,
                               "registry %s, repository %s: manifest %.200s: Docker-Content-Digest "
                               "%.80s does not match the bytes sent (%s); refused",
                               r->host, repo, ref, header, digest_short(m->digest, b, sizeof b));
    } else if (rc == 0) {
        char len[32] = "";
        pht_http_response_header(&resp, "Content-Length", len, sizeof len);
        m->len = (size_t)strtoull(len, NULL, 10);
        if (strncmp(ref, "sha256:", 7) == 0)
            snprintf(m->digest, sizeof m->digest, "%s", ref);
        else if (hash_sha256_valid(header))
            snprintf(m->digest, sizeof m->digest, "%s", header);
        else
            rc = pht_error_set(err, PHT_EFORMAT,
                               "registry %s, repository %s: HEAD manifest %.200s: no sha256 "
                               "Docker-Content-Digest in the answer",
                               r->host, repo, ref);
    }
    if (rc == 0) manifest_media_type(&resp, m);
    pht_http_response_clear(&resp);
    if (rc != 0) pht_registry_manifest_clear(m);
    return rc;
}

int pht_registry_get_manifest(pht_registry *r, const char *repo, const char *ref,
                              pht_registry_manifest *m, pht_error *err)
{
    return manifest_request(r, "GET", repo, ref, m, err);
}

int pht_registry_head_manifest(pht_registry *r, const char *repo, const char *ref,
                               pht_registry_manifest *m, pht_error *err)
{
    return manifest_request(r, "HEAD", repo, ref, m, err);
}

int pht_registry_put_manifest(pht_registry *r, const char *repo, const char *ref,
                              const char *media_type, const void *data, size_t len, char *digest,
                              pht_error *err)
{
    digest[0] = '\0';
    if (check_repo(repo, err) != 0 || check_ref(ref, err) != 0) return err ? err->code : PHT_EINVAL;
    if (media_type == NULL || media_type[0] == '\0' ||
        strlen(media_type) >= PHT_REGISTRY_MEDIA_TYPE_MAX || strpbrk(media_type, "\r\n"))
        return pht_error_set(err, PHT_EINVAL, "put manifest: a media type is needed");
    if (len > r->max_manifest)
        return pht_error_set(err, PHT_ELIMIT, "put manifest: %zu bytes is more than %zu", len,
                             r->max_manifest);
    char mine[PHT_REGISTRY_DIGEST_MAX];
    int rc = hash_sha256_buf(data, len, mine, err);
    if (rc != 0) return rc;
    if (strncmp(ref, "sha256:", 7) == 0 && strcmp(ref, mine) != 0)
        return pht_error_set(err, PHT_EVERIFY, "put manifest: the bytes have digest %s, not %s",
                             mine, ref);
    char path[512], what[300];
    if (repo_ref_path(path, sizeof path, repo, "manifests", ref) != 0)
        return pht_error_set(err, PHT_EINVAL, "repository name too long");
    snprintf(what, sizeof what, "PUT manifest %.200s", ref);
    reg_req rq = {.method = "PUT",
                  .what = what,
                  .repo = repo,
                  .push = 1,
                  .url = path,
                  .body = data ? data : "",
                  .body_len = len,
                  .content_type = media_type,
                  .retry = 1};
    pht_http_response resp = {0};
    rc = reg_do(r, &rq, &resp, err);
    char header[PHT_REGISTRY_DIGEST_MAX + 16] = "";
    if (rc == 0 &&
        pht_http_response_header(&resp, "Docker-Content-Digest", header, sizeof header) &&
        strcmp(header, mine) != 0)
        rc = pht_error_set(err, PHT_EVERIFY,
                           "registry %s, repository %s: PUT manifest %.200s: the registry "
                           "stored it as %.80s, not %s",
                           r->host, repo, ref, header, mine);
    pht_http_response_clear(&resp);
    if (rc == 0) snprintf(digest, PHT_REGISTRY_DIGEST_MAX, "%s", mine);
    return rc;
}

/* ---- blobs ------------------------------------------------------------------------- */

int pht_registry_blob_exists(pht_registry *r, const char *repo, const char *digest, int *exists,
                             int64_t *size, pht_error *err)
{
    *exists = 0;
    if (size) *size = -1;
    if (check_repo(repo, err) != 0 || check_digest(digest, err) != 0)
        return err ? err->code : PHT_EINVAL;
    char path[512], what[160], s[32];
    if (repo_ref_path(path, sizeof path, repo, "blobs", digest) != 0)
        return pht_error_set(err, PHT_EINVAL, "repository name too long");
    snprintf(what, sizeof what, "HEAD blob %s", digest_short(digest, s, sizeof s));
    reg_req rq = {.method = "HEAD",
                  .what = what,
                  .repo = repo,
                  .url = path,
                  .follow = 1,
                  .retry = 1,
                  .ok_status = 404};
    pht_http_response resp = {0};
    int rc = reg_do(r, &rq, &resp, err);
    if (rc == 0 && resp.status >= 200 && resp.status < 300) {
        *exists = 1;
        char len[32];
        if (size && pht_http_response_header(&resp, "Content-Length", len, sizeof len))
            *size = (int64_t)strtoll(len, NULL, 10);
    }
    pht_http_response_clear(&resp);
    return rc;
}

typedef struct blob_rx {
    pht_hash *sha;
    int64_t want;  /* -1: unknown */
    uint64_t got;  /* bytes passed on so far, over all tries */
    uint64_t skip; /* bytes of this answer already passed on in an earlier one */
    int started;   /* this answer's first bytes came */
    pht_http_response *resp;
    pht_http_sink sink;
    void *ud;
    int sink_failed;
} blob_rx;

static int blob_take(void *ud, const void *p, size_t n, pht_error *err)
{
    blob_rx *b = ud;
    if (!b->started) {
        b->started = 1;
        /* A resumed try: 206 goes on where the last stopped, 200 starts over. */
        if (b->got > 0 && b->resp->status == 206) {
            char cr[96];
            unsigned long long start = 0;
            if (!pht_http_response_header(b->resp, "Content-Range", cr, sizeof cr) ||
                sscanf(cr, "bytes %llu-", &start) != 1 || start != b->got)
                return pht_error_set(err, PHT_EFORMAT,
                                     "the resumed download starts at the wrong byte (%s)", cr);
        } else {
            b->skip = b->got;
        }
    }
    const unsigned char *q = p;
    if (b->skip) {
        size_t k = n < b->skip ? n : (size_t)b->skip;
        b->skip -= k;
        q += k;
        n -= k;
    }
    if (n == 0) return 0;
    if (b->want >= 0 && b->got + n > (uint64_t)b->want)
        return pht_error_set(err, PHT_ELIMIT, "the registry sent more than the %lld bytes expected",
                             (long long)b->want);
    int rc = pht_hash_update(b->sha, q, n, err);
    if (rc != 0) return rc;
    b->got += n;
    rc = b->sink(b->ud, q, n, err);
    if (rc != 0) b->sink_failed = 1;
    return rc;
}

int pht_registry_get_blob(pht_registry *r, const char *repo, const char *digest, int64_t size,
                          pht_http_sink sink, void *ud, pht_error *err)
{
    if (check_repo(repo, err) != 0 || check_digest(digest, err) != 0)
        return err ? err->code : PHT_EINVAL;
    char path[512], what[160], s[32], range[64];
    if (repo_ref_path(path, sizeof path, repo, "blobs", digest) != 0)
        return pht_error_set(err, PHT_EINVAL, "repository name too long");
    snprintf(what, sizeof what, "GET blob %s", digest_short(digest, s, sizeof s));
    blob_rx b = {.want = size < 0 ? -1 : size, .sink = sink, .ud = ud};
    b.sha = hash_new_sha256(err);
    if (b.sha == NULL) return err ? err->code : PHT_ENOMEM;
    const char *hdrs[] = {range, NULL};
    pht_http_response resp = {0};
    int rc = 0;
    for (int t = 1;; t++) {
        snprintf(range, sizeof range, "Range: bytes=%llu-", (unsigned long long)b.got);
        reg_req rq = {.what = what,
                      .repo = repo,
                      .url = path,
                      .headers = b.got ? hdrs : NULL,
                      .follow = 1,
                      .sink = blob_take,
                      .sink_ud = &b};
        b.started = 0;
        b.skip = 0;
        b.resp = &resp;
        rc = reg_do(r, &rq, &resp, err);
        if (rc == 0 || b.sink_failed || !reg_transient(&resp) || t >= r->max_tries) {
            if (rc != 0 && !b.sink_failed && reg_transient(&resp) && t > 1)
                pht_error_prefix(err, "after %d tries", t);
            break;
        }
        reg_backoff(r, t, &resp);
    }
    pht_http_response_clear(&resp);
    char got[PHT_REGISTRY_DIGEST_MAX], a[32];
    if (rc == 0 && b.want >= 0 && b.got != (uint64_t)b.want)
        rc = pht_error_set(err, PHT_EVERIFY,
                           "registry %s, repository %s: blob %s: %llu bytes came, %lld expected",
                           r->host, repo, digest_short(digest, a, sizeof a), (unsigned long long)b.got,
                           (long long)b.want);
    if (rc == 0) rc = hash_final_sha256(b.sha, got, err);
    if (rc == 0 && strcmp(got, digest) != 0)
        rc = pht_error_set(err, PHT_EVERIFY,
                           "registry %s, repository %s: blob %s: the bytes sent have digest %s; "
                           "refused",
                           r->host, repo, digest_short(digest, a, sizeof a), got);
    else if (rc != 0 && (rc == PHT_ELIMIT || rc == PHT_EFORMAT) && b.sink_failed == 0)
        pht_error_prefix(err, "registry %s, repository %s: blob %s", r->host, repo,
                         digest_short(digest, a, sizeof a));
    pht_hash_free(b.sha);
    reg_scrub(r, err);
    return rc;
}

/* An open file of a blob, for the sink and source below. */
typedef struct file_io {
    int fd;
    const char *path;
} file_io;

static int file_write(void *ud, const void *p, size_t n, pht_error *err)
{
    file_io *f = ud;
    const char *q = p;
    while (n > 0) {
        ssize_t w = write(f->fd, q, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return pht_error_set(err, PHT_EIO, "%s: write failed: %s", f->path, strerror(errno));
        q += w;
        n -= (size_t)w;
    }
    return 0;
}

int pht_registry_get_blob_file(pht_registry *r, const char *repo, const char *digest, int64_t size,
                               const char *path, pht_error *err)
{
    if (path == NULL || path[0] == '\0') return pht_error_set(err, PHT_EINVAL, "get blob: no path");
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (tmp == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    snprintf(tmp, n, "%s.partial-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int rc = pht_error_set(err, PHT_EIO, "%s: cannot create a file beside it: %s", path,
                               strerror(errno));
        free(tmp);
        return rc;
    }
    file_io f = {fd, tmp};
    int rc = pht_registry_get_blob(r, repo, digest, size, file_write, &f, err);
    if (close(fd) != 0 && rc == 0)
        rc = pht_error_set(err, PHT_EIO, "%s: close failed: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = pht_error_set(err, PHT_EIO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (rc != 0) unlink(tmp);
    free(tmp);
    return rc;
}

/* ---- uploads ------------------------------------------------------------------------ */

/* Start an upload (optionally a mount): 201 mounted, or the session's Location. */
static int upload_start(pht_registry *r, const char *repo, const char *digest, const char *from,
                        int *mounted, char *loc, size_t cap, pht_error *err)
{
    char path[1024], what[300], s[32];
    *mounted = 0;
    if (from) {
        char *d = pht_http_escape(digest), *f = pht_http_escape(from);
        if (d && f)
            snprintf(path, sizeof path, "/v2/%s/blobs/uploads/?mount=%s&from=%s", repo, d, f);
        free(d);
        free(f);
        if (!(d && f)) return pht_error_set(err, PHT_ENOMEM, "out of memory");
        snprintf(what, sizeof what, "mount blob %s from %.200s", digest_short(digest, s, sizeof s),
                 from);
    } else {
        snprintf(path, sizeof path, "/v2/%s/blobs/uploads/", repo);
        snprintf(what, sizeof what, "start an upload");
    }
    reg_req rq = {.method = "POST",
                  .what = what,
                  .repo = repo,
                  .push = 1,
                  .from = from,
                  .url = path,
                  .retry = 1};
    pht_http_response resp = {0};
    int rc = reg_do(r, &rq, &resp, err);
    if (rc == 0 && resp.status == 201 && from) {
        *mounted = 1;
    } else if (rc == 0 && (resp.status != 202 ||
                           !pht_http_response_header(&resp, "Location", loc, cap) || !loc[0])) {
        rc = pht_error_set(err, PHT_EHTTP,
                           "registry %s, repository %s: %s: HTTP %ld without an upload Location",
                           r->host, repo, what, resp.status);
    }
    pht_http_response_clear(&resp);
    /*
     * A refused mount (the credentials may not read from, or the registry
     * does not mount) is no failure: a plain upload follows, as in skopeo.
     * That one's error is the one that counts.
     */
    if (rc != 0 && from && rc != PHT_ENOMEM)
        return upload_start(r, repo, digest, NULL, mounted, loc, cap, err);
    return rc;
}

/* Cancel an upload session, as well as the registry lets us. */
static void upload_cancel(pht_registry *r, const char *repo, const char *loc)
{
    reg_req rq = {
        .method = "DELETE", .what = "cancel an upload", .repo = repo, .push = 1, .url = loc};
    pht_http_response resp = {0};
    pht_error ignore;
    reg_do(r, &rq, &resp, &ignore);
    pht_http_response_clear(&resp);
}

int pht_registry_mount_blob(pht_registry *r, const char *repo, const char *digest, const char *from,
                            int *mounted, pht_error *err)
{
    *mounted = 0;
    if (check_repo(repo, err) != 0 || check_digest(digest, err) != 0 || check_repo(from, err) != 0)
        return err ? err->code : PHT_EINVAL;
    char loc[4096];
    int rc = upload_start(r, repo, digest, from, mounted, loc, sizeof loc, err);
    if (rc == 0 && !*mounted) upload_cancel(r, repo, loc);
    return rc;
}

typedef struct blob_tx {
    const pht_registry_upload *up;
    pht_hash *sha;
    uint64_t sent;
} blob_tx;

static int blob_give(void *ud, void *buf, size_t cap, size_t *got, pht_error *err)
{
    blob_tx *t = ud;
    int rc = t->up->read(t->up->ud, buf, cap, got, err);
    if (rc != 0) return rc;
    if (*got == 0 && t->up->size >= 0 && t->sent != (uint64_t)t->up->size)
        return pht_error_set(err, PHT_EVERIFY, "the blob ended after %llu of %lld bytes",
                             (unsigned long long)t->sent, (long long)t->up->size);
    if (t->up->size >= 0 && t->sent + *got > (uint64_t)t->up->size)
        return pht_error_set(err, PHT_EVERIFY, "the blob is longer than %lld bytes",
                             (long long)t->up->size);
    if ((rc = pht_hash_update(t->sha, buf, *got, err)) != 0) return rc;
    t->sent += *got;
    return 0;
}

/* Append "?digest=D" (or "&digest=D") to a Location. */
static char *with_digest(const char *loc, const char *digest)
{
    char *d = pht_http_escape(digest);
    size_t n = strlen(loc) + (d ? strlen(d) : 0) + 16;
    char *out = d ? malloc(n) : NULL;
    if (out) snprintf(out, n, "%s%cdigest=%s", loc, strchr(loc, '?') ? '&' : '?', d);
    free(d);
    return out;
}

/* One upload try after the session is open: PATCH the bytes, PUT ?digest=. */
static int upload_send(pht_registry *r, const char *repo, const pht_registry_upload *up, char *loc,
                       size_t cap, char *digest, int *broken, pht_error *err)
{
    blob_tx tx = {.up = up};
    tx.sha = hash_new_sha256(err);
    if (tx.sha == NULL) return err ? err->code : PHT_ENOMEM;
    const char *octets[] = {"Content-Type: application/octet-stream", NULL};
    reg_req rq = {.method = "PATCH",
                  .what = "upload blob",
                  .repo = repo,
                  .push = 1,
                  .url = loc,
                  .headers = octets,
                  .source = blob_give,
                  .source_ud = &tx,
                  .source_len = up->size > 0 ? up->size : 0};
    pht_http_response resp = {0};
    int rc = reg_do(r, &rq, &resp, err);
    *broken = rc != 0 && reg_transient(&resp);
    char next[4096];
    if (rc == 0 && (!pht_http_response_header(&resp, "Location", next, sizeof next) || !next[0]))
        rc = pht_error_set(err, PHT_EHTTP,
                           "registry %s, repository %s: upload blob: HTTP %ld without a Location",
                           r->host, repo, resp.status);
    if (rc == 0) snprintf(loc, cap, "%s", next);
    pht_http_response_clear(&resp);
    char mine[PHT_REGISTRY_DIGEST_MAX], s[32];
    if (rc == 0) rc = hash_final_sha256(tx.sha, mine, err);
    pht_hash_free(tx.sha);
    if (rc == 0 && up->digest && strcmp(mine, up->digest) != 0)
        rc = pht_error_set(err, PHT_EVERIFY,
                           "registry %s, repository %s: upload blob %s: the bytes have digest "
                           "%s; not committed",
                           r->host, repo, digest_short(up->digest, s, sizeof s), mine);
    if (rc != 0) return rc;
    char *put = with_digest(loc, mine);
    if (put == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    char what[160];
    snprintf(what, sizeof what, "commit blob %s", digest_short(mine, s, sizeof s));
    reg_req done = {.method = "PUT",
                    .what = what,
                    .repo = repo,
                    .push = 1,
                    .url = put,
                    .body = "",
                    .body_len = 0,
                    .retry = 1};
    rc = reg_do(r, &done, &resp, err);
    free(put);
    char header[PHT_REGISTRY_DIGEST_MAX + 16];
    if (rc == 0 &&
        pht_http_response_header(&resp, "Docker-Content-Digest", header, sizeof header) &&
        strcmp(header, mine) != 0)
        rc = pht_error_set(err, PHT_EVERIFY,
                           "registry %s, repository %s: %s: the registry stored %.80s", r->host,
                           repo, what, header);
    pht_http_response_clear(&resp);
    if (rc == 0) snprintf(digest, PHT_REGISTRY_DIGEST_MAX, "%s", mine);
    return rc;
}

int pht_registry_upload_blob(pht_registry *r, const char *repo, const pht_registry_upload *up,
                             char *digest, int *how, pht_error *err)
{
    digest[0] = '\0';
    *how = 0;
    if (check_repo(repo, err) != 0) return err->code;
    if (up == NULL || up->read == NULL)
        return pht_error_set(err, PHT_EINVAL, "upload blob: no source");
    if (up->digest && check_digest(up->digest, err) != 0) return err->code;
    if (up->mount_from && (up->digest == NULL || check_repo(up->mount_from, err) != 0))
        return up->digest ? err->code
                          : pht_error_set(err, PHT_EINVAL, "upload blob: a mount needs the digest");
    int rc = 0;
    for (int t = 1;; t++) {
        char loc[4096] = "";
        int mounted = 0, broken = 0;
        rc = upload_start(r, repo, up->digest, t == 1 ? up->mount_from : NULL, &mounted, loc,
                          sizeof loc, err);
        if (rc == 0 && mounted) {
            snprintf(digest, PHT_REGISTRY_DIGEST_MAX, "%s", up->digest);
            *how = PHT_REGISTRY_MOUNTED;
            return 0;
        }
        if (rc == 0) rc = upload_send(r, repo, up, loc, sizeof loc, digest, &broken, err);
        if (rc == 0) {
            *how = PHT_REGISTRY_UPLOADED;
            return 0;
        }
        if (rc != PHT_ENOMEM && loc[0] && !mounted) upload_cancel(r, repo, loc);
        if (!broken || up->rewind == NULL || t >= r->max_tries) {
            if (broken && t > 1) pht_error_prefix(err, "after %d tries", t);
            break;
        }
        pht_error rerr;
        if (up->rewind(up->ud, &rerr) != 0) {
            if (err) *err = rerr;
            rc = rerr.code;
            break;
        }
        reg_backoff(r, t, NULL);
    }
    reg_scrub(r, err);
    return rc;
}

static int file_read(void *ud, void *buf, size_t cap, size_t *got, pht_error *err)
{
    file_io *f = ud;
    int irc = pht_interrupt_check(err);
    if (irc) return irc;
    for (;;) {
        ssize_t n = read(f->fd, buf, cap);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            return pht_error_set(err, PHT_EIO, "%s: read failed: %s", f->path, strerror(errno));
        *got = (size_t)n;
        return 0;
    }
}

static int file_rewind(void *ud, pht_error *err)
{
    file_io *f = ud;
    if (lseek(f->fd, 0, SEEK_SET) != 0)
        return pht_error_set(err, PHT_EIO, "%s: cannot seek: %s", f->path, strerror(errno));
    return 0;
}

int pht_registry_upload_file(pht_registry *r, const char *repo, const char *path,
                             const char *digest, const char *mount_from, char *digest_out, int *how,
                             pht_error *err)
{
    digest_out[0] = '\0';
    *how = 0;
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) : -1;
    if (fd < 0)
        return pht_error_set(err, PHT_EIO, "%s: cannot open: %s", path ? path : "(null)",
                             strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pht_error_set(err, PHT_EIO, "%s: not a regular file", path);
    }
    file_io f = {fd, path};
    pht_registry_upload up;
    pht_registry_upload_init(&up);
    up.digest = digest;
    up.size = (int64_t)st.st_size;
    up.read = file_read;
    up.rewind = file_rewind;
    up.ud = &f;
    up.mount_from = mount_from;
    int rc = pht_registry_upload_blob(r, repo, &up, digest_out, how, err);
    close(fd);
    return rc;
}
