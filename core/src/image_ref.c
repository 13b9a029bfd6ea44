/*
 * Image references: the grammar of every transport and the table of
 * transports, in one place (as containers/image's alltransports.go). Each
 * transport's file reads the parsed parts; none splits a string itself. A new
 * transport is its own file plus one line of `transports` below.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash_private.h"
#include "transport_private.h"
#include "pht/docker.h"
#include "pht/image_ref.h"

struct pht_image_ref {
    const struct ref_transport *t;
    char *string;         /* the whole reference */
    const char *location; /* into string, after "transport:" */
    char *path, *name, *tag, *digest, *host;
    long index;
};

typedef int (*ref_parser)(pht_image_ref *r, const char *loc, pht_error *err);

typedef struct ref_transport {
    const char *name;
    const char *prefix; /* what a reference of the transport starts with */
    const char *syntax;
    ref_parser parse;        /* the location's grammar */
    const img_transport *tp; /* NULL: parsed, but not supported yet */
} ref_transport;

static int parse_archive(pht_image_ref *r, const char *loc, pht_error *err);
static int parse_oci(pht_image_ref *r, const char *loc, pht_error *err);
static int parse_daemon(pht_image_ref *r, const char *loc, pht_error *err);
static int parse_registry(pht_image_ref *r, const char *loc, pht_error *err);

static const ref_transport transports[] = {
    {"docker-archive", "docker-archive:", "docker-archive:PATH[:NAME[:TAG]|:@N]", parse_archive,
     &img_docker_archive},
    {"oci", "oci:", "oci:DIR[:TAG]", parse_oci, &img_oci},
    {"docker-daemon", "docker-daemon:", "docker-daemon:NAME[:TAG|@sha256:HEX]", parse_daemon,
     &img_docker_daemon},
    {"docker", "docker://", "docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX]", parse_registry,
     &img_registry},
    {"oci-archive", "oci-archive:", "oci-archive:PATH[:TAG]", parse_oci, &img_oci_archive},
};
#define NTRANSPORTS (sizeof transports / sizeof *transports)
#define DAEMON (&transports[2])

const char *pht_image_transport_name(size_t i)
{
    return i < NTRANSPORTS ? transports[i].name : NULL;
}

const char *pht_image_transport_syntax(size_t i)
{
    return i < NTRANSPORTS ? transports[i].syntax : NULL;
}

/* "docker-archive:PATH[...], oci:DIR[:TAG], ..." for messages. */
static void known_list(char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < NTRANSPORTS && used < cap; i++) {
        int n = snprintf(out + used, cap - used, "%s%s", i ? ", " : "", transports[i].syntax);
        if (n < 0) break;
        used += (size_t)n;
    }
}

/* A grammar error of transport t: the reason and the transport's syntax. */
static int bad(pht_error *err, const ref_transport *t, const char *why)
{
    return pht_error_set(err, PHT_EINVAL, "%s; expected %s", why, t->syntax);
}

static int oom(pht_error *err)
{
    return pht_error_set(err, PHT_ENOMEM, "out of memory");
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

int img_ref_has_tag(const char *name)
{
    const char *slash = strrchr(name, '/'), *colon = strrchr(name, ':');
    return colon && (!slash || colon > slash);
}

/* 1 if s[0..n) is all decimal digits (n >= 1). */
static int all_digits(const char *s, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

/*
 * NAME[:TAG][@sha256:HEX] of a daemon or registry reference: the tag is what
 * follows the last ':' after the last '/'; another ':' may only separate
 * HOST and PORT in front of the first '/'.
 */
static int split_docker_name(pht_image_ref *r, const char *s, pht_error *err)
{
    const char *at = strchr(s, '@');
    size_t end = at ? (size_t)(at - s) : strlen(s), nlen = end;
    if (at && !hash_sha256_valid(at + 1))
        return bad(err, r->t, "a digest is sha256: and 64 lowercase hex digits");
    for (size_t i = end; i > 0 && s[i - 1] != '/'; i--)
        if (s[i - 1] == ':') {
            nlen = i - 1;
            break;
        }
    if (nlen == 0) return bad(err, r->t, "empty NAME");
    if (s[nlen - 1] == '/') return bad(err, r->t, "NAME ends in '/'");
    if (nlen < end && nlen + 1 == end) return bad(err, r->t, "empty TAG");
    if (end - nlen > 129) return bad(err, r->t, "TAG is longer than 128 characters");
    const char *first_slash = memchr(s, '/', nlen), *colon = memchr(s, ':', nlen);
    if (colon) {
        const char *port = colon + 1;
        if (first_slash == NULL || colon > first_slash ||
            !all_digits(port, (size_t)(first_slash - port)))
            return bad(err, r->t, "a ':' in NAME must separate HOST and PORT");
    }
    r->name = dupn(s, nlen);
    if (nlen < end)
        r->tag = dupn(s + nlen + 1, end - nlen - 1);
    else if (at == NULL)
        r->tag = strdup("latest");
    if (at) r->digest = strdup(at + 1);
    if (r->name == NULL || (r->tag == NULL && (nlen < end || at == NULL)) ||
        (at && r->digest == NULL))
        return oom(err);
    return 0;
}

/* PATH[:NAME[:TAG]|:@N]: the PATH ends at the first ':'. */
static int parse_archive(pht_image_ref *r, const char *loc, pht_error *err)
{
    const char *colon = strchr(loc, ':');
    size_t plen = colon ? (size_t)(colon - loc) : strlen(loc);
    if (plen == 0) return bad(err, r->t, "empty PATH");
    if ((r->path = dupn(loc, plen)) == NULL) return oom(err);
    const char *rest = colon ? colon + 1 : "";
    if (rest[0] == '\0') return 0;
    if (rest[0] == '@') {
        size_t n = strlen(rest + 1);
        if (!all_digits(rest + 1, n) || n > 9) return bad(err, r->t, "@N needs a number N");
        r->index = strtol(rest + 1, NULL, 10);
        return 0;
    }
    if (strchr(rest, '@')) return bad(err, r->t, "a docker-archive names images by NAME:TAG");
    size_t len = strlen(rest), nlen = len;
    if (img_ref_has_tag(rest)) nlen = (size_t)(strrchr(rest, ':') - rest);
    if (nlen == 0) return bad(err, r->t, "empty NAME");
    if (nlen + 1 == len) return bad(err, r->t, "empty TAG");
    r->name = dupn(rest, nlen);
    r->tag = nlen < len ? strdup(rest + nlen + 1) : strdup("latest");
    return r->name && r->tag ? 0 : oom(err);
}

/* DIR[:TAG]: the DIR ends at the first ':'; the TAG is the rest, any text. */
static int parse_oci(pht_image_ref *r, const char *loc, pht_error *err)
{
    const char *colon = strchr(loc, ':');
    size_t dlen = colon ? (size_t)(colon - loc) : strlen(loc);
    if (dlen == 0) return bad(err, r->t, "empty DIR");
    if ((r->path = dupn(loc, dlen)) == NULL) return oom(err);
    if (colon && colon[1] && (r->tag = strdup(colon + 1)) == NULL) return oom(err);
    return 0;
}

/* NAME[:TAG], NAME[:TAG]@sha256:HEX, or an image id sha256:HEX. */
static int parse_daemon(pht_image_ref *r, const char *loc, pht_error *err)
{
    if (!pht_docker_name_valid(loc, err)) return PHT_EINVAL;
    if (strncmp(loc, "sha256:", 7) == 0) {
        size_t n = strlen(loc + 7);
        if (n == 0 || n > 64 || strspn(loc + 7, "0123456789abcdef") != n)
            return bad(err, r->t, "an image id is sha256: and lowercase hex digits");
        return (r->digest = strdup(loc)) ? 0 : oom(err);
    }
    return split_docker_name(r, loc, err);
}

/* //HOST[:PORT]/REPO[:TAG|@sha256:HEX]; without a HOST, REPO is on docker.io. */
static int parse_registry(pht_image_ref *r, const char *loc, pht_error *err)
{
    if (strncmp(loc, "//", 2) != 0) return bad(err, r->t, "no // after docker:");
    const char *s = loc + 2;
    if (!pht_docker_name_valid(s, err)) return PHT_EINVAL;
    int rc = split_docker_name(r, s, err);
    if (rc) return rc;
    const char *slash = strchr(r->name, '/');
    size_t hlen = slash ? (size_t)(slash - r->name) : 0;
    int has_host = slash && (memchr(r->name, '.', hlen) || memchr(r->name, ':', hlen) ||
                             (hlen == 9 && strncmp(r->name, "localhost", 9) == 0));
    r->host = has_host ? dupn(r->name, hlen) : strdup("docker.io");
    return r->host ? 0 : oom(err);
}

/* The transport whose prefix s starts with, or NULL. */
static const ref_transport *transport_of(const char *s)
{
    for (size_t i = 0; i < NTRANSPORTS; i++)
        if (strncmp(s, transports[i].prefix, strlen(transports[i].prefix)) == 0)
            return &transports[i];
    return NULL;
}

/* Why s names no transport: an unknown "word:" prefix or none, and what libpht knows. */
static int unknown(const char *s, pht_error *err)
{
    char list[512];
    known_list(list, sizeof list);
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-");
    if (n > 0 && s[n] == ':') {
        for (size_t i = 0; i < NTRANSPORTS; i++)
            if (strlen(transports[i].name) == n && strncmp(s, transports[i].name, n) == 0)
                return bad(err, &transports[i], "malformed reference");
        return pht_error_set(err, PHT_EINVAL, "unknown transport \"%.*s\"; libpht knows %s",
                             (int)(n > 40 ? 40 : n), s, list);
    }
    return pht_error_set(err, PHT_EINVAL, "no transport; libpht knows %s", list);
}

void pht_image_ref_free(pht_image_ref *r)
{
    if (r == NULL) return;
    free(r->string);
    free(r->path);
    free(r->name);
    free(r->tag);
    free(r->digest);
    free(r->host);
    free(r);
}

int pht_image_ref_parse(const char *s, unsigned flags, pht_image_ref **out, pht_error *err)
{
    *out = NULL;
    if (s == NULL) return pht_error_set(err, PHT_EINVAL, "image reference is NULL");
    const ref_transport *t = transport_of(s);
    int bare = t == NULL && (flags & PHT_REF_BARE_DAEMON);
    if (t == NULL && !bare) {
        unknown(s, err);
        return pht_error_prefix(err, "image reference \"%.200s\"", s);
    }
    if (bare) t = DAEMON;
    pht_image_ref *r = calloc(1, sizeof *r);
    if (r == NULL) return oom(err);
    r->t = t;
    r->index = -1;
    size_t n = strlen(s) + strlen(t->prefix) + 1;
    if ((r->string = malloc(n)) == NULL) {
        pht_image_ref_free(r);
        return oom(err);
    }
    snprintf(r->string, n, "%s%s", bare ? t->prefix : "", s);
    r->location = r->string + strlen(t->name) + 1;
    int rc = t->parse(r, r->location, err);
    if (rc) {
        if (rc == PHT_EINVAL) pht_error_prefix(err, "image reference \"%.200s\"", s);
        pht_image_ref_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

const char *pht_image_ref_transport(const pht_image_ref *r)
{
    return r->t->name;
}

const char *pht_image_ref_location(const pht_image_ref *r)
{
    return r->location;
}

const char *pht_image_ref_path(const pht_image_ref *r)
{
    return r->path;
}

const char *pht_image_ref_name(const pht_image_ref *r)
{
    return r->name;
}

const char *pht_image_ref_tag(const pht_image_ref *r)
{
    return r->tag;
}

const char *pht_image_ref_digest(const pht_image_ref *r)
{
    return r->digest;
}

long pht_image_ref_index(const pht_image_ref *r)
{
    return r->index;
}

const char *pht_image_ref_host(const pht_image_ref *r)
{
    return r->host;
}

const char *pht_image_ref_string(const pht_image_ref *r)
{
    return r->string;
}

int pht_image_ref_with_tag(const pht_image_ref *ref, const char *name, const char *tag,
                           pht_image_ref **out, pht_error *err)
{
    *out = NULL;
    if (tag == NULL || tag[0] == '\0') return pht_error_set(err, PHT_EINVAL, "empty tag");
    const char *repo = ref->name;
    size_t rlen = repo ? strlen(repo) : 0;
    if (name) { /* its repository: without @digest and :tag */
        repo = name;
        rlen = strcspn(name, "@");
        for (size_t i = rlen; i > 0 && name[i - 1] != '/'; i--)
            if (name[i - 1] == ':') {
                rlen = i - 1;
                break;
            }
    }
    const char *t = ref->t->name;
    if (ref->t->parse != parse_oci && (repo == NULL || rlen == 0))
        return pht_error_set(err, PHT_EINVAL, "%.200s names no repository: give a NAME",
                             ref->string);
    size_t n = strlen(ref->string) + rlen + strlen(tag) + 8;
    char *s = malloc(n);
    if (s == NULL) return oom(err);
    if (ref->t->parse == parse_oci)
        snprintf(s, n, "%s:%s:%s", t, ref->path, tag);
    else if (ref->path)
        snprintf(s, n, "%s:%s:%.*s:%s", t, ref->path, (int)rlen, repo, tag);
    else
        snprintf(s, n, "%s%.*s:%s", ref->t->prefix, (int)rlen, repo, tag);
    int rc = pht_image_ref_parse(s, 0, out, err);
    free(s);
    return rc;
}

/* ---- the image layer's side ------------------------------------------------ */

const img_transport *img_ref_transport(const pht_image_ref *r, pht_error *err)
{
    if (r->t->tp == NULL)
        pht_error_set(err, PHT_EINVAL, "image reference \"%.200s\": transport not supported yet",
                      r->string);
    return r->t->tp;
}

int img_ref_image_name(const pht_image_ref *r, char **out, pht_error *err)
{
    *out = NULL;
    if (r->name == NULL && r->digest == NULL)
        return pht_error_set(err, PHT_EINVAL, "%.200s names no image", r->string);
    size_t n = (r->name ? strlen(r->name) : 0) + (r->tag ? strlen(r->tag) : 0) +
               (r->digest ? strlen(r->digest) : 0) + 4;
    if ((*out = malloc(n)) == NULL) return oom(err);
    if (r->name == NULL)
        snprintf(*out, n, "%s", r->digest);
    else
        snprintf(*out, n, "%s%s%s%s%s", r->name, r->tag ? ":" : "", r->tag ? r->tag : "",
                 r->digest ? "@" : "", r->digest ? r->digest : "");
    return 0;
}
