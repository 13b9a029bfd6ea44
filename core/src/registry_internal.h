/*
 * Internals of the registry client, shared by registry.c (requests,
 * manifests, blobs) and registry_auth.c (credentials, challenges, tokens).
 * Not installed.
 */
#ifndef PHT_REGISTRY_INTERNAL_H
#define PHT_REGISTRY_INTERNAL_H

#include <time.h>

#include "pht/registry.h"

#define REG_CREDS 16  /* repositories whose credentials are remembered */
#define REG_TOKENS 16 /* bearer tokens cached, one per scope set and user */
#define REG_ORIGINS 4 /* connections kept to other hosts (token realm, blob storage) */
#define REG_HDR_MAX 8192
#define REG_MANIFEST_MAX (4u << 20) /* containers/image's cap */

enum { REG_AUTH_UNKNOWN, REG_AUTH_NONE, REG_AUTH_BASIC, REG_AUTH_BEARER };

/* Credentials for one repository (or, with --creds, for all). */
typedef struct reg_cred {
    char *repo;        /* the repository they were looked up for; NULL: all */
    char *user, *pass; /* NULL user: anonymous */
    char source[400];  /* where they came from, for messages */
} reg_cred;

typedef struct reg_token {
    char *key;   /* user + "\n" + the scopes asked for */
    char *token; /* secret */
    time_t expires;
} reg_token;

typedef struct reg_origin {
    char *origin; /* "https://host:port" */
    pht_http *http;
} reg_origin;

/* A parsed WWW-Authenticate challenge. */
typedef struct reg_challenge {
    int kind; /* REG_AUTH_BASIC or REG_AUTH_BEARER; 0: none or another scheme */
    char realm[1024], service[256], scope[1024], error[64];
} reg_challenge;

struct pht_registry {
    char *host;       /* as given, without a scheme: auth-file key, messages */
    char *api_host;   /* what is contacted (docker.io: registry-1.docker.io) */
    char scheme[8];   /* "https" or "http" */
    int scheme_given; /* the endpoint named it: no fallback */
    int tls_verify, anonymous, max_tries;
    unsigned retry_ms;
    size_t max_manifest;
    char *creds_user, *creds_pass; /* the creds option */
    char *auth_file;               /* the auth_file option */
    char *ca_pem;                  /* the cert dir's CAs */
    size_t ca_len;
    char *client_cert, *client_key;
    pht_http *http; /* the registry */
    reg_origin origins[REG_ORIGINS];
    int auth; /* REG_AUTH_* learnt from the ping */
    char realm[1024], service[256];
    reg_cred creds[REG_CREDS];
    size_t ncreds, next_cred;
    reg_token tokens[REG_TOKENS];
    size_t next_token;
};

/* ---- registry.c ------------------------------------------------------------ */

/*
 * Resolve url against base: its origin ("https://host:port") into origin
 * and its path and query into *path (malloc'ed). PHT_EFORMAT for a URL that
 * is not http(s).
 */
int reg_split_url(const char *base, const char *url, char *origin, size_t cap, char **path,
                  pht_error *err);

/* The connection to origin ("https://host:port"), kept for reuse. */
int reg_origin_http(pht_registry *r, const char *origin, pht_http **out, pht_error *err);

/* Sleep before try t+1 (t >= 1): retry_ms doubled per try, or Retry-After. */
void reg_backoff(const pht_registry *r, int t, const pht_http_response *resp);

/* A transient failure worth another try: a broken connection, 429, 5xx. */
int reg_transient(const pht_http_response *resp);

/* The registry's error text of a response body ("message (CODE)"). */
void reg_error_text(const pht_http_response *resp, char *out, size_t cap);

/* ---- registry_auth.c ------------------------------------------------------- */

/* The credentials for repo (NULL: the registry as a whole), looked up once. */
int reg_creds_for(pht_registry *r, const char *repo, const reg_cred **out, pht_error *err);

/* "the credentials of USER from SOURCE", or "no credentials (SOURCE)". */
void reg_cred_describe(const reg_cred *c, char *out, size_t cap);

/* Parse a WWW-Authenticate value; 0 when it is a Basic or Bearer challenge. */
int reg_parse_challenge(const char *value, reg_challenge *ch);

/*
 * The Authorization header line for a request on repo (push: pull,push;
 * from: a second repository read from) into out, or "" when none is due.
 * force skips the token cache; extra_scope is a challenge's scope to add.
 */
int reg_auth_line(pht_registry *r, const char *repo, int push, const char *from, int force,
                  const char *extra_scope, char *out, size_t cap, pht_error *err);

/* Forget the cached tokens and credentials, wiping them. */
void reg_auth_clear(pht_registry *r);

/* Replace every password and token the client holds in err's message. */
void reg_scrub(const pht_registry *r, pht_error *err);

/* Standard base64 (OpenSSL EVP); malloc'ed, NUL-terminated, NULL without memory. */
char *reg_base64(const void *p, size_t n);

/* One request of the registry client (reg_do). */
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

/*
 * A request with authentication, redirects and (rq->retry) retries. Returns
 * 0 for a 2xx answer (or rq->ok_status), else the error in err.
 */
int reg_do(pht_registry *r, const reg_req *rq, pht_http_response *resp, pht_error *err);

/* PHT_EINVAL unless repo makes a safe URL path (lowercase components of [a-z0-9._-]). */
int reg_check_repo(const char *repo, pht_error *err);

#endif
