/*
 * How the registry client authenticates: credentials from --creds or the
 * auth files containers/image reads (in its order), the WWW-Authenticate
 * challenge, and bearer tokens from the challenge's realm, cached per scope.
 * Secrets live in heap buffers wiped when dropped and never enter a message.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "pht/util.h"
#include "registry_internal.h"

#define AUTH_FILE_MAX (1u << 20)
#define TOKEN_ANSWER_MAX (1u << 20)

/* ---- small helpers ----------------------------------------------------------- */

static void secret_free(char *s)
{
    if (s) pht_secret_free(s, strlen(s) + 1);
}

char *reg_base64(const void *p, size_t n)
{
    if (n > (INT_MAX / 4) * 3 - 3) return NULL;
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out) EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

/* Decode standard base64 into a NUL-terminated secret; NULL when malformed. */
static char *unbase64(const char *s, size_t *outlen)
{
    size_t n = strlen(s);
    if (n == 0 || n % 4 != 0 || n > AUTH_FILE_MAX) return NULL;
    unsigned char *out = malloc(n / 4 * 3 + 1);
    if (out == NULL) return NULL;
    int got = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (got < 0) {
        pht_secret_free(out, n / 4 * 3 + 1);
        return NULL;
    }
    size_t pad = (s[n - 1] == '=') + (s[n - 2] == '=');
    *outlen = (size_t)got - pad;
    out[*outlen] = '\0';
    return (char *)out;
}

/* out = prefix + value, when it fits (a header line holding a secret). */
static int header_line(char *out, size_t cap, const char *prefix, const char *value)
{
    size_t a = strlen(prefix), b = strlen(value);
    if (a + b + 1 > cap) return -1;
    memcpy(out, prefix, a);
    memcpy(out + a, value, b + 1);
    return 0;
}

static void cred_clear(reg_cred *c)
{
    free(c->repo);
    free(c->user);
    secret_free(c->pass);
    memset(c, 0, sizeof *c);
}

void reg_auth_clear(pht_registry *r)
{
    for (size_t i = 0; i < REG_CREDS; i++)
        cred_clear(&r->creds[i]);
    for (size_t i = 0; i < REG_TOKENS; i++) {
        free(r->tokens[i].key);
        secret_free(r->tokens[i].token);
        memset(&r->tokens[i], 0, sizeof r->tokens[i]);
    }
    r->ncreds = r->next_cred = r->next_token = 0;
}

static void replace_all(char *msg, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    if (n < 3) return; /* a shorter one would mangle every message */
    const char *mark = "(secret)";
    char *p;
    while ((p = strstr(msg, secret)) != NULL) {
        size_t tail = strlen(p + n);
        size_t m = strlen(mark);
        if (m <= n) {
            memcpy(p, mark, m);
            memmove(p + m, p + n, tail + 1);
        } else {
            memmove(p, p + n, tail + 1); /* no room to mark it: drop it */
        }
    }
}

void reg_scrub(const pht_registry *r, pht_error *err)
{
    if (err == NULL) return;
    replace_all(err->message, r->creds_pass);
    for (size_t i = 0; i < REG_CREDS; i++)
        replace_all(err->message, r->creds[i].pass);
    for (size_t i = 0; i < REG_TOKENS; i++)
        replace_all(err->message, r->tokens[i].token);
}

void reg_cred_describe(const reg_cred *c, char *out, size_t cap)
{
    if (c->user)
        snprintf(out, cap, "the credentials of %.100s from %s", c->user, c->source);
    else
        snprintf(out, cap, "no credentials (%s)", c->source);
}

/* ---- credentials from the auth files ---------------------------------------- */

typedef struct auth_path {
    char path[PATH_MAX];
    const char *label; /* how a message names the file's origin, or NULL */
} auth_path;

/* The files to search, in containers/image's order; *n of them. */
static void auth_paths(const pht_registry *r, auth_path *p, size_t *n)
{
    *n = 0;
    const char *env = getenv("REGISTRY_AUTH_FILE");
    if (r->auth_file) {
        snprintf(p[(*n)++].path, PATH_MAX, "%s", r->auth_file);
        return;
    }
    if (env && env[0]) {
        snprintf(p[*n].path, PATH_MAX, "%s", env);
        p[(*n)++].label = "REGISTRY_AUTH_FILE=";
        return;
    }
    const char *run = getenv("XDG_RUNTIME_DIR"), *home = getenv("HOME");
    const char *cfg = getenv("XDG_CONFIG_HOME"), *docker = getenv("DOCKER_CONFIG");
    if (run && run[0])
        snprintf(p[(*n)++].path, PATH_MAX, "%s/containers/auth.json", run);
    else
        snprintf(p[(*n)++].path, PATH_MAX, "/run/containers/%ld/auth.json", (long)getuid());
    if (cfg && cfg[0])
        snprintf(p[(*n)++].path, PATH_MAX, "%s/containers/auth.json", cfg);
    else if (home && home[0])
        snprintf(p[(*n)++].path, PATH_MAX, "%s/.config/containers/auth.json", home);
    if (docker && docker[0])
        snprintf(p[(*n)++].path, PATH_MAX, "%s/config.json", docker);
    else if (home && home[0])
        snprintf(p[(*n)++].path, PATH_MAX, "%s/.docker/config.json", home);
}

/* Read a whole auth file (a secret); NULL with *missing set when absent. */
static char *read_secret_file(const char *path, int *missing, pht_error *err)
{
    *missing = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (errno == ENOENT || errno == ENOTDIR) {
            *missing = 1;
            return NULL;
        }
        pht_error_set(err, PHT_EIO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(AUTH_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, AUTH_FILE_MAX + 1, f) : 0;
    int bad = buf == NULL || ferror(f) || n > AUTH_FILE_MAX;
    fclose(f);
    if (bad) {
        if (buf) pht_secret_free(buf, AUTH_FILE_MAX + 1);
        pht_error_set(err, buf ? PHT_ELIMIT : PHT_ENOMEM, "%s: %s", path,
                      buf ? "unreadable or larger than 1 MiB" : "out of memory");
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* An auths key as the registry part it names: schemes and "/v1/" dropped. */
static void normalize_key(const char *k, char *out, size_t cap)
{
    int schemed = 0;
    if (strncasecmp(k, "https://", 8) == 0)
        k += 8, schemed = 1;
    else if (strncasecmp(k, "http://", 7) == 0)
        k += 7, schemed = 1;
    snprintf(out, cap, "%s", k);
    size_t n = strlen(out);
    if (schemed)
        out[strcspn(out, "/")] = '\0';
    else
        while (n > 0 && out[n - 1] == '/')
            out[--n] = '\0';
    if (strcasecmp(out, "index.docker.io") == 0 || strcasecmp(out, "registry-1.docker.io") == 0)
        snprintf(out, cap, "docker.io");
}

/* The entry of auths for key, by normalized name. */
static cJSON *find_entry(cJSON *auths, const char *key, char *found, size_t cap)
{
    cJSON *e;
    cJSON_ArrayForEach(e, auths)
    {
        char k[512];
        if (e->string == NULL) continue;
        normalize_key(e->string, k, sizeof k);
        if (strcmp(k, key) == 0 && cJSON_IsObject(e)) {
            snprintf(found, cap, "%s", e->string);
            return e;
        }
    }
    return NULL;
}

/*
 * Look repo up in one file: HOST/REPO, its parents, HOST. 1 found (c
 * filled), 0 not, or a PHT_E* code.
 */
static int lookup_file(const pht_registry *r, const auth_path *ap, const char *repo, reg_cred *c,
                       pht_error *err)
{
    int missing;
    char *text = read_secret_file(ap->path, &missing, err);
    if (text == NULL) return missing ? 0 : err->code;
    cJSON *root = cJSON_Parse(text);
    pht_secret_free(text, AUTH_FILE_MAX + 1);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return pht_error_set(err, PHT_EFORMAT,
                             "%s: not a JSON object (an auth file is "
                             "{\"auths\": {\"HOST\": {\"auth\": \"…\"}}})",
                             ap->path);
    }
    cJSON *auths = cJSON_GetObjectItemCaseSensitive(root, "auths");
    int rc = 0;
    char key[768], found[512] = "";
    snprintf(key, sizeof key, "%s/%s", r->host, repo ? repo : "");
    for (;;) {
        size_t n = strlen(key);
        while (n > 0 && key[n - 1] == '/')
            key[--n] = '\0';
        cJSON *e = find_entry(auths, key, found, sizeof found);
        const char *b64 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "auth"));
        const char *idt =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "identitytoken"));
        if (e && idt && idt[0]) {
            rc = pht_error_set(err, PHT_EFORMAT,
                               "%s: the entry \"%.200s\" holds an identity token (an OAuth2 "
                               "refresh token), which libpht does not support",
                               ap->path, found);
            break;
        }
        if (e && b64 && b64[0]) { /* an empty entry belongs to a credential helper */
            size_t len = 0;
            char *plain = unbase64(b64, &len);
            char *colon = plain ? memchr(plain, ':', len) : NULL;
            if (colon == NULL || colon == plain) {
                if (plain) pht_secret_free(plain, len + 1);
                rc = pht_error_set(err, PHT_EFORMAT,
                                   "%s: the entry \"%.200s\" is not base64 of USER:PASSWORD",
                                   ap->path, found);
                break;
            }
            *colon = '\0';
            c->user = strdup(plain);
            c->pass = strdup(colon + 1);
            pht_secret_free(plain, len + 1);
            if (c->user == NULL || c->pass == NULL) {
                rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
                break;
            }
            snprintf(c->source, sizeof c->source, "%s%.300s (entry \"%.60s\")",
                     ap->label ? ap->label : "", ap->path, found);
            rc = 1;
            break;
        }
        char *slash = strrchr(key, '/');
        if (slash == NULL) break;
        *slash = '\0';
    }
    cJSON_Delete(root);
    return rc;
}

int reg_creds_for(pht_registry *r, const char *repo, const reg_cred **out, pht_error *err)
{
    for (size_t i = 0; i < r->ncreds; i++) {
        reg_cred *c = &r->creds[i];
        if (c->repo == NULL ? repo == NULL || r->creds_user || r->anonymous
                            : repo && strcmp(c->repo, repo) == 0) {
            *out = c;
            return 0;
        }
    }
    reg_cred *c = &r->creds[r->next_cred];
    cred_clear(c);
    int rc = 0;
    if (r->anonymous) {
        snprintf(c->source, sizeof c->source, "anonymous, as asked");
    } else if (r->creds_user) {
        c->user = strdup(r->creds_user);
        c->pass = strdup(r->creds_pass);
        snprintf(c->source, sizeof c->source, "--creds");
        if (c->user == NULL || c->pass == NULL)
            rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    } else {
        auth_path paths[4];
        size_t n;
        memset(paths, 0, sizeof paths);
        auth_paths(r, paths, &n);
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = lookup_file(r, &paths[i], repo, c, err);
        if (rc == 0) {
            int k =
                snprintf(c->source, sizeof c->source, "anonymous: no entry for %.200s in", r->host);
            for (size_t i = 0; i < n && k > 0 && (size_t)k < sizeof c->source; i++)
                k += snprintf(c->source + k, sizeof c->source - (size_t)k, "%s %s%.150s",
                              i ? (i + 1 == n ? " or" : ",") : "",
                              paths[i].label ? paths[i].label : "", paths[i].path);
        }
        if (rc == 1) rc = 0;
    }
    if (rc == 0 && !r->anonymous && !r->creds_user && repo && (c->repo = strdup(repo)) == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc != 0) {
        cred_clear(c);
        return rc;
    }
    if (r->ncreds < REG_CREDS) r->ncreds++;
    r->next_cred = (r->next_cred + 1) % REG_CREDS;
    *out = c;
    return 0;
}

/* ---- the challenge ------------------------------------------------------------ */

/* Copy an auth-param value (a token or a quoted string) at *p into out. */
static const char *param_value(const char *p, char *out, size_t cap)
{
    size_t n = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1]) p++;
            if (n + 1 < cap) out[n++] = *p;
        }
        if (*p == '"') p++;
    } else {
        for (; *p && *p != ',' && *p != ' ' && *p != '\t'; p++)
            if (n + 1 < cap) out[n++] = *p;
    }
    if (cap) out[n] = '\0';
    return p;
}

int reg_parse_challenge(const char *value, reg_challenge *ch)
{
    memset(ch, 0, sizeof *ch);
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "Bearer", 6) == 0 && (p[6] == ' ' || p[6] == '\0'))
        ch->kind = REG_AUTH_BEARER, p += 6;
    else if (strncasecmp(p, "Basic", 5) == 0 && (p[5] == ' ' || p[5] == '\0'))
        ch->kind = REG_AUTH_BASIC, p += 5;
    else
        return -1;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *name = p;
        while (*p && *p != '=' && *p != ' ' && *p != ',')
            p++;
        size_t nl = (size_t)(p - name);
        if (*p != '=') continue;
        p++;
        char *dst = NULL, skip[8];
        size_t cap = sizeof skip;
        if (nl == 5 && strncasecmp(name, "realm", 5) == 0)
            dst = ch->realm, cap = sizeof ch->realm;
        else if (nl == 7 && strncasecmp(name, "service", 7) == 0)
            dst = ch->service, cap = sizeof ch->service;
        else if (nl == 5 && strncasecmp(name, "scope", 5) == 0)
            dst = ch->scope, cap = sizeof ch->scope;
        else if (nl == 5 && strncasecmp(name, "error", 5) == 0)
            dst = ch->error, cap = sizeof ch->error;
        p = param_value(p, dst ? dst : skip, cap);
    }
    return 0;
}

/* ---- bearer tokens -------------------------------------------------------------- */

/* Append the scopes of more (space-separated) to buf that it lacks. */
static void add_scopes(char *buf, size_t cap, const char *more)
{
    char one[512];
    while (more && *more) {
        while (*more == ' ')
            more++;
        size_t n = strcspn(more, " ");
        if (n == 0) break;
        snprintf(one, sizeof one, "%.*s", (int)(n < sizeof one - 1 ? n : sizeof one - 1), more);
        more += n;
        int have = 0;
        for (const char *p = buf; (p = strstr(p, one)) != NULL; p++)
            if ((p == buf || p[-1] == ' ') && (p[strlen(one)] == ' ' || p[strlen(one)] == '\0'))
                have = 1;
        size_t len = strlen(buf);
        if (!have) snprintf(buf + len, cap - len, "%s%s", len ? " " : "", one);
    }
}

/* Append "&scope=ESC" for each scope, "&service=ESC" first. */
static int token_query(char *q, size_t cap, const char *service, const char *scopes,
                       const char *user)
{
    char *e = pht_http_escape(service);
    if (e == NULL) return -1;
    size_t n = strlen(q);
    n += (size_t)snprintf(q + n, cap - n, "service=%s", e);
    free(e);
    if (user && n < cap) {
        e = pht_http_escape(user);
        if (e == NULL) return -1;
        n += (size_t)snprintf(q + n, cap - n, "&account=%s", e);
        free(e);
    }
    char one[512];
    for (const char *p = scopes; *p && n < cap;) {
        size_t k = strcspn(p, " ");
        snprintf(one, sizeof one, "%.*s", (int)(k < sizeof one - 1 ? k : sizeof one - 1), p);
        p += k;
        while (*p == ' ')
            p++;
        e = pht_http_escape(one);
        if (e == NULL) return -1;
        n += (size_t)snprintf(q + n, cap - n, "&scope=%s", e);
        free(e);
    }
    return n < cap ? 0 : -1;
}

/* Turn the token service's error answer into err. */
static int token_fail(pht_registry *r, const char *repo, const char *origin, const reg_cred *c,
                      const char *scopes, const pht_http_response *resp, int tries, const char *why,
                      pht_error *err)
{
    char who[600], text[300];
    reg_cred_describe(c, who, sizeof who);
    reg_error_text(resp, text, sizeof text);
    const char *pre = "registry";
    if (resp->status == 401)
        return pht_error_set(err, PHT_EHTTP,
                             "%s %s, repository %s: the token service at %s refused %s "
                             "(HTTP 401: %s)",
                             pre, r->host, repo, origin, who, text);
    if (resp->status == 403)
        return pht_error_set(err, PHT_EHTTP,
                             "%s %s, repository %s: the token service at %s denied access "
                             "to %.300s (HTTP 403: %s) for %s",
                             pre, r->host, repo, origin, scopes, text, who);
    if (resp->status == 0 || resp->broken)
        return pht_error_set(err, PHT_EHTTP,
                             "%s %s, repository %s: the token service at %s did not answer "
                             "(%d tries): %s",
                             pre, r->host, repo, origin, tries, why);
    return pht_error_set(err, PHT_EHTTP,
                         "%s %s, repository %s: the token service at %s answered HTTP %ld "
                         "(%d tries): %s",
                         pre, r->host, repo, origin, resp->status, tries, text);
}

/* GET a token for scopes from the realm; *token malloc'ed (a secret). */
static int fetch_token(pht_registry *r, const char *repo, const reg_cred *c, const char *scopes,
                       char **token, long *expires_in, pht_error *err)
{
    char origin[1100], *path = NULL;
    int rc = reg_split_url(r->realm, r->realm, origin, sizeof origin, &path, err);
    if (rc != 0) return pht_error_prefix(err, "registry %s: token realm", r->host);
    if (c->user && r->tls_verify && strncmp(origin, "https://", 8) != 0) {
        free(path);
        return pht_error_set(err, PHT_EHTTP,
                             "registry %s: the token realm %s is not https: refusing to send "
                             "%s's password there (set tls_verify off to allow it)",
                             r->host, origin, c->user);
    }
    size_t cap = strlen(path) + strlen(scopes) * 3 + 1024;
    char *q = malloc(cap);
    pht_http *h = NULL;
    if (q == NULL) rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc == 0) {
        snprintf(q, cap, "%s%c", path, strchr(path, '?') ? '&' : '?');
        if (token_query(q, cap, r->service, scopes, c->user) != 0)
            rc = pht_error_set(err, PHT_ELIMIT, "registry %s: the token request is too long",
                               r->host);
    }
    free(path);
    if (rc == 0) rc = reg_origin_http(r, origin, &h, err);
    char auth[REG_HDR_MAX] = "";
    if (rc == 0 && c->user) {
        size_t ul = strlen(c->user), pl = strlen(c->pass);
        char *up = malloc(ul + pl + 2);
        char *b64 = NULL;
        if (up) {
            snprintf(up, ul + pl + 2, "%s:%s", c->user, c->pass);
            b64 = reg_base64(up, ul + pl + 1);
            pht_secret_free(up, ul + pl + 2);
        }
        if (b64 == NULL || header_line(auth, sizeof auth, "Authorization: Basic ", b64) != 0)
            rc = pht_error_set(err, PHT_ENOMEM, "registry %s: credentials too long", r->host);
        secret_free(b64);
    }
    const char *hdrs[] = {auth, "Accept: application/json", NULL};
    pht_http_response resp = {0};
    for (int t = 1; rc == 0; t++) {
        pht_http_request req;
        pht_http_request_init(&req);
        req.path = q;
        req.headers = auth[0] ? hdrs : hdrs + 1;
        req.max_body = TOKEN_ANSWER_MAX;
        pht_error herr;
        pht_http_response_clear(&resp);
        int hr = pht_http_do(h, &req, &resp, &herr);
        if (hr == 0) break;
        if (reg_transient(&resp) && t < r->max_tries) {
            reg_backoff(r, t, &resp);
            continue;
        }
        rc = token_fail(r, repo, origin, c, scopes, &resp, t, herr.message, err);
    }
    OPENSSL_cleanse(auth, sizeof auth);
    free(q);
    if (rc != 0) {
        pht_http_response_clear(&resp);
        return rc;
    }
    cJSON *j = cJSON_ParseWithLength(resp.body ? resp.body : "", resp.body_len);
    if (resp.body) OPENSSL_cleanse(resp.body, resp.body_len);
    pht_http_response_clear(&resp);
    const char *tok = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "token"));
    if (tok == NULL || tok[0] == '\0')
        tok = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "access_token"));
    cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
    *expires_in = cJSON_IsNumber(exp) && exp->valuedouble > 0 && exp->valuedouble < 1e9
                      ? (long)exp->valuedouble
                      : 60; /* the distribution spec's default */
    if (tok && tok[0] && strlen(tok) < REG_HDR_MAX - 32 && strcspn(tok, "\r\n") == strlen(tok)) {
        *token = strdup(tok);
        if (*token == NULL) rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    } else {
        rc = pht_error_set(err, PHT_EFORMAT,
                           "registry %s, repository %s: the token service at %s answered "
                           "without a usable token",
                           r->host, repo, origin);
    }
    if (j) {
        cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "token");
        if (cJSON_IsString(t)) OPENSSL_cleanse(t->valuestring, strlen(t->valuestring));
        t = cJSON_GetObjectItemCaseSensitive(j, "access_token");
        if (cJSON_IsString(t)) OPENSSL_cleanse(t->valuestring, strlen(t->valuestring));
    }
    cJSON_Delete(j);
    return rc;
}

/* A token for the scopes, from the cache unless force. */
static int bearer_line(pht_registry *r, const char *repo, const reg_cred *c, const char *scopes,
                       int force, char *out, size_t cap, pht_error *err)
{
    size_t kl = strlen(scopes) + (c->user ? strlen(c->user) : 0) + 2;
    char *key = malloc(kl);
    if (key == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    snprintf(key, kl, "%s\n%s", c->user ? c->user : "", scopes);
    time_t now = time(NULL);
    reg_token *hit = NULL;
    for (size_t i = 0; i < REG_TOKENS; i++)
        if (r->tokens[i].key && strcmp(r->tokens[i].key, key) == 0) hit = &r->tokens[i];
    if (hit && !force && now < hit->expires) {
        free(key);
        header_line(out, cap, "Authorization: Bearer ", hit->token);
        return 0;
    }
    char *token = NULL;
    long expires_in = 0;
    int rc = fetch_token(r, repo, c, scopes, &token, &expires_in, err);
    if (rc != 0) {
        free(key);
        return rc;
    }
    if (hit == NULL) {
        hit = &r->tokens[r->next_token];
        r->next_token = (r->next_token + 1) % REG_TOKENS;
    }
    free(hit->key);
    secret_free(hit->token);
    hit->key = key;
    hit->token = token;
    /* Renew a little early, so a token does not expire on its way. */
    hit->expires = now + expires_in - (expires_in >= 30 ? 10 : 0);
    header_line(out, cap, "Authorization: Bearer ", token);
    return 0;
}

int reg_auth_line(pht_registry *r, const char *repo, int push, const char *from, int force,
                  const char *extra_scope, char *out, size_t cap, pht_error *err)
{
    out[0] = '\0';
    if (r->auth != REG_AUTH_BASIC && r->auth != REG_AUTH_BEARER) return 0;
    const reg_cred *c = NULL;
    int rc = reg_creds_for(r, repo, &c, err);
    if (rc != 0) return rc;
    if (r->auth == REG_AUTH_BASIC) {
        if (c->user == NULL) return 0;
        size_t ul = strlen(c->user), pl = strlen(c->pass);
        char *up = malloc(ul + pl + 2);
        if (up == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
        snprintf(up, ul + pl + 2, "%s:%s", c->user, c->pass);
        char *b64 = reg_base64(up, ul + pl + 1);
        pht_secret_free(up, ul + pl + 2);
        rc = b64 ? header_line(out, cap, "Authorization: Basic ", b64) : -1;
        secret_free(b64);
        if (rc != 0)
            return pht_error_set(err, PHT_ENOMEM, "registry %s: credentials too long", r->host);
        return 0;
    }
    if (repo == NULL) return 0;
    char scopes[2048] = "", one[600];
    snprintf(one, sizeof one, "repository:%.300s:%s", repo, push ? "pull,push" : "pull");
    add_scopes(scopes, sizeof scopes, one);
    if (from) {
        snprintf(one, sizeof one, "repository:%.300s:pull", from);
        add_scopes(scopes, sizeof scopes, one);
    }
    add_scopes(scopes, sizeof scopes, extra_scope);
    return bearer_line(r, repo, c, scopes, force, out, cap, err);
}
