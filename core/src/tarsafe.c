/*
 * Path safety for layer entries: normalization, traversal and link checks,
 * and Docker's archive walk order. Every check errs on rejecting: a layer
 * entry must name a path inside the image root.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"

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

size_t tarsafe_common(const char *a, const char *b, size_t n)
{
    /* Deep hostile paths share thousands of leading bytes: compare words. */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y) break;
    }
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

int tarsafe_walk_cmpn(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i = tarsafe_common(a, b, an < bn ? an : bn);
    /* '/' ends a component, so it sorts before every byte of a name. */
    unsigned cx = i == an ? 0u : a[i] == '/' ? 1u : (unsigned)(unsigned char)a[i] + 1u;
    unsigned cy = i == bn ? 0u : b[i] == '/' ? 1u : (unsigned)(unsigned char)b[i] + 1u;
    return cx < cy ? -1 : cx > cy ? 1 : 0;
}

int tarsafe_below(const char *p, const char *dir)
{
    size_t dl = strlen(dir);
    if (dl == 0) return p[0] != '\0';
    return strncmp(p, dir, dl) == 0 && p[dl] == '/';
}

const char *img_short(const char *digest, char *buf, size_t cap)
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
                             img_short(dg, d, sizeof d), entry, why);
    return pht_error_set(err, code, "layer %s: %s", img_short(dg, d, sizeof d), why);
}
