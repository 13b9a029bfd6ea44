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

#include <archive_entry.h>

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

/*
 * The paths a train may change above its master (doc/protocol.md §1): the
 * config, the wrapped key for the creator, and the two trees. /opt itself
 * only as the directory they live in; the root only as it stands.
 */
static int protocol_path(const char *p)
{
    static const char *const files[] = {"opt/train_config.json", "opt/user_sym_key.key"};
    static const char *const trees[] = {"opt/pht_train", "opt/pht_results"};
    for (size_t i = 0; i < 2; i++)
        if (strcmp(p, files[i]) == 0) return 1;
    for (size_t i = 0; i < 2; i++)
        if (strcmp(p, trees[i]) == 0 || tarsafe_below(p, trees[i])) return 1;
    return 0;
}

int tarsafe_names_config(const char *in)
{
    static const char dir[] = IMG_PROTOCOL_DIR, name[] = "train_config.json";
    const char *p = in, *s;
    size_t cl;
    if (in == NULL || next_component(&p, &s, &cl) != COMP_NAME || cl != sizeof dir - 1 ||
        memcmp(s, dir, cl) != 0 || next_component(&p, &s, &cl) != COMP_NAME)
        return 0;
    if (cl > 4 && memcmp(s, ".wh.", 4) == 0) { /* deleting it names it too */
        s += 4;
        cl -= 4;
    }
    return cl == sizeof name - 1 && memcmp(s, name, cl) == 0 &&
           next_component(&p, &s, &cl) == COMP_END;
}

static int in_opt(const char *p)
{
    return strcmp(p, IMG_PROTOCOL_DIR) == 0 || tarsafe_below(p, IMG_PROTOCOL_DIR);
}

/*
 * Where the symlink at path with target points, lexically, as a normalized
 * path (malloc'ed; ".." at the root stays there, as the kernel resolves it).
 */
static char *link_dest(const char *path, const char *target)
{
    size_t cap = strlen(path) + strlen(target) + 2, len = 0;
    char *o = malloc(cap);
    if (o == NULL) return NULL;
    if (target[0] != '/') { /* from the link's directory */
        const char *slash = strrchr(path, '/');
        len = slash ? (size_t)(slash - path) : 0;
        memcpy(o, path, len);
    }
    const char *p = target, *s;
    size_t cl;
    int k;
    while ((k = next_component(&p, &s, &cl)) != COMP_END) {
        if (k == COMP_UP) {
            while (len > 0 && o[len - 1] != '/')
                len--;
            if (len > 0) len--;
            continue;
        }
        if (len) o[len++] = '/';
        memcpy(o + len, s, cl);
        len += cl;
    }
    o[len] = '\0';
    return o;
}

static int master_refuse(char *p, char **path, const char **why, const char *reason)
{
    *path = p;
    *why = reason;
    return 1;
}

int tarsafe_master(struct archive_entry *e, char **path, const char **why)
{
    *path = NULL;
    char *p;
    const char *w;
    if (tarsafe_path(archive_entry_pathname(e), 0, &p, &w) != 0) {
        const char *name = archive_entry_pathname(e);
        if ((p = strdup(name ? name : "")) == NULL) return PHT_ENOMEM;
        return master_refuse(p, path, why, w);
    }
    const char *slash = strrchr(p, '/'), *base = slash ? slash + 1 : p;
    size_t dlen = slash ? (size_t)(slash - p) : 0;
    unsigned ft = (unsigned)archive_entry_filetype(e);
    const char *hl = archive_entry_hardlink(e);
    if (strncmp(base, ".wh.", 4) == 0 && strncmp(base, ".wh..wh.", 8) != 0) {
        /* ".wh.NAME" deletes the master's NAME: that path must be the train's */
        memmove(p + dlen + (dlen ? 1 : 0), base + 4, strlen(base + 4) + 1);
        if (protocol_path(p)) goto ok;
        return master_refuse(p, path, why, "deletes a path outside the train's (a whiteout)");
    }
    if (strcmp(base, ".wh..wh..opq") == 0) {
        p[dlen] = '\0';
        if (protocol_path(p)) goto ok;
        return master_refuse(p, path, why,
                             "makes a directory outside the train's opaque, deleting what lies "
                             "below it");
    }
    if (hl == NULL && (ft == AE_IFCHR || ft == AE_IFBLK || ft == AE_IFIFO || ft == AE_IFSOCK))
        return master_refuse(p, path, why, "is a device node, FIFO or socket");
    if (ft != AE_IFDIR && (archive_entry_perm(e) & 06000))
        return master_refuse(p, path, why, "is a setuid or setgid file");
    if (p[0] == '\0') { /* the root, as a layer may restate it */
        if (ft == AE_IFDIR && hl == NULL && (archive_entry_perm(e) & 07777) == 0755 &&
            archive_entry_uid(e) == 0 && archive_entry_gid(e) == 0)
            goto ok;
        return master_refuse(p, path, why, "changes the root directory");
    }
    if (strcmp(p, IMG_PROTOCOL_DIR) == 0) {
        if (ft == AE_IFDIR && hl == NULL) goto ok;
        return master_refuse(p, path, why, "replaces /opt with something other than a directory");
    }
    if (!protocol_path(p)) {
        master_refuse(p, path, why,
                      in_opt(p) ? "adds or changes a path under /opt outside the train's"
                                : "adds, changes or re-modes a path outside /opt");
        /* a directory restated: a tool writes its parents so; what changed below says more */
        return ft == AE_IFDIR && hl == NULL ? 2 : 1;
    }
    if (hl) {
        char *t;
        if (tarsafe_path(hl, 0, &t, &w) != 0 || !in_opt(t)) {
            free(t);
            return master_refuse(p, path, why, "is a hard link to a path outside /opt");
        }
        free(t);
    } else if (ft == AE_IFLNK) {
        const char *target = archive_entry_symlink(e);
        char *t = link_dest(p, target ? target : "");
        if (t == NULL) {
            free(p);
            return PHT_ENOMEM;
        }
        int out = !in_opt(t);
        free(t);
        if (out) return master_refuse(p, path, why, "is a symlink whose target leaves /opt");
    }
ok:
    free(p);
    return 0;
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
