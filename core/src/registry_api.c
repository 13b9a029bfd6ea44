/*
 * The distribution API calls of the registry client: manifests (get, head,
 * put), blobs (exists, get into a sink or a file, mount) and uploads
 * (monolithic or chunked, from a source or a file), each one reg_do
 * (registry.c) with the names checked first.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <openssl/crypto.h>

#include "hash_private.h"
#include "pht/interrupt.h"
#include "registry_internal.h"

static const char ACCEPT_MANIFESTS[] = "Accept: " PHT_MEDIA_OCI_MANIFEST ", " PHT_MEDIA_OCI_INDEX
                                       ", " PHT_MEDIA_DOCKER_MANIFEST ", " PHT_MEDIA_DOCKER_LIST;

/* ---- names ----------------------------------------------------------------- */

/*
 * Refuse what would not make a safe URL path. The full reference grammar
 * belongs to the image references; this only keeps the path well-formed.
 */
int reg_check_repo(const char *repo, pht_error *err)
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
    if (reg_check_repo(repo, err) != 0 || check_ref(ref, err) != 0)
        return err ? err->code : PHT_EINVAL;
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
    if (reg_check_repo(repo, err) != 0 || check_ref(ref, err) != 0)
        return err ? err->code : PHT_EINVAL;
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
    if (reg_check_repo(repo, err) != 0 || check_digest(digest, err) != 0)
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
    if (reg_check_repo(repo, err) != 0 || check_digest(digest, err) != 0)
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
                           r->host, repo, digest_short(digest, a, sizeof a),
                           (unsigned long long)b.got, (long long)b.want);
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
    if (reg_check_repo(repo, err) != 0 || check_digest(digest, err) != 0 ||
        reg_check_repo(from, err) != 0)
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
    if (reg_check_repo(repo, err) != 0) return err->code;
    if (up == NULL || up->read == NULL)
        return pht_error_set(err, PHT_EINVAL, "upload blob: no source");
    if (up->digest && check_digest(up->digest, err) != 0) return err->code;
    if (up->mount_from && (up->digest == NULL || reg_check_repo(up->mount_from, err) != 0))
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
