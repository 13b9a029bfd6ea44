/*
 * Path safety for layer entries: normalization, traversal and link checks,
 * and the messages that name a layer and its entry. Every check errs on
 * rejecting: a layer entry must name a path inside the image root. (The
 * archive walk order is pht_path_walk_cmp, hash.c.)
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_private.h"

enum { COMP_END, COMP_NAME, COMP_UP };

/*
 * The next component of a slash-separated path after *p, skipping empty and
 * "." ones: COMP_NAME (with *s and *len set), COMP_UP for "..", or COMP_END.
 */
static int next_component(const char **p, const char **s, size_t *len)
{
    const char *c = *p;
    for (;;) {
        while (*c == '/')
            c++;
        if (*c == '\0') {
            *p = c;
            return COMP_END;
        }
        *s = c;
        while (*c && *c != '/')
            c++;
        *len = (size_t)(c - *s);
        if (*len == 1 && (*s)[0] == '.') continue;
        *p = c;
        return *len == 2 && (*s)[0] == '.' && (*s)[1] == '.' ? COMP_UP : COMP_NAME;
    }
}

int tarsafe_path(const char *in, uint64_t max_name, char **out, const char **why)
{
    *out = NULL;
    if (in == NULL) {
        *why = "entry has no name";
        return PHT_EFORMAT;
    }
    size_t n = strlen(in);
    if (max_name && n > max_name) {
        *why = "name is longer than the cap";
        return PHT_ELIMIT;
    }
    if (in[0] == '/') {
        *why = "path is absolute";
        return PHT_EUNSAFE;
    }
    char *o = malloc(n + 1);
    if (o == NULL) {
        *why = "out of memory";
        return PHT_ENOMEM;
    }
    size_t len = 0;
    const char *p = in;
    const char *s;
    size_t cl;
    int k;
    while ((k = next_component(&p, &s, &cl)) != COMP_END) {
        if (k == COMP_UP) {
            free(o);
            *why = "path leaves the image root";
            return PHT_EUNSAFE;
        }
        if (len) o[len++] = '/';
        memcpy(o + len, s, cl);
        len += cl;
    }
    o[len] = '\0';
    *out = o;
    return 0;
}

int tarsafe_symlink(const char *path, const char *target, const char **why)
{
    if (target == NULL || target[0] == '\0') {
        *why = "symlink has an empty target";
        return PHT_EUNSAFE;
    }
    /* Depth of the link's directory; an absolute target starts at the root. */
    long depth = 0;
    if (target[0] != '/') {
        for (const char *c = path; *c; c++)
            if (*c == '/') depth++;
    }
    const char *p = target;
    const char *s;
    size_t cl;
    int k;
    while ((k = next_component(&p, &s, &cl)) != COMP_END) {
        if (k == COMP_UP) {
            if (--depth < 0) {
                *why = "symlink target leaves the image root";
                return PHT_EUNSAFE;
            }
        } else {
            depth++;
        }
    }
    return 0;
}

int tarsafe_below(const char *p, const char *dir)
{
    size_t dl = strlen(dir);
    if (dl == 0) return p[0] != '\0';
    return strncmp(p, dir, dl) == 0 && p[dl] == '/';
}

int tarsafe_touches(const char *in, const char *dir)
{
    const char *p = in, *s, *s2;
    size_t cl, cl2, dl = strlen(dir);
    if (in == NULL || next_component(&p, &s, &cl) != COMP_NAME) return 0;
    if (cl == dl && memcmp(s, dir, dl) == 0) return 1;
    if (next_component(&p, &s2, &cl2) != COMP_END) return 0;
    if (cl == 12 && memcmp(s, ".wh..wh..opq", 12) == 0) return 1;
    return cl == dl + 4 && memcmp(s, ".wh.", 4) == 0 && memcmp(s + 4, dir, dl) == 0;
}

/* "sha256:ab12cd34ef56…" for messages. */
static const char *short_digest(const char *digest, char *buf, size_t cap)
{
    if (digest == NULL || digest[0] == '\0') {
        snprintf(buf, cap, "(unknown digest)");
        return buf;
    }
    const char *colon = strchr(digest, ':');
    size_t pre = colon ? (size_t)(colon - digest) + 1 : 0;
    snprintf(buf, cap, "%.*s%.12s\xe2\x80\xa6", (int)pre, digest, digest + pre);
    return buf;
}

int tarsafe_fail(pht_error *err, int code, const img_layer *l, const char *entry, const char *fmt,
                 ...)
{
    char why[512], d[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    const char *dg = l ? (l->digest_known || l->digest[0] ? l->digest : l->diff_id) : NULL;
    if (entry)
        return pht_error_set(err, code, "layer %s: entry \"%.300s\": %s",
                             short_digest(dg, d, sizeof d), entry, why);
    return pht_error_set(err, code, "layer %s: %s", short_digest(dg, d, sizeof d), why);
}
