/*
 * The index cache: the tar headers of a compressed layer, kept by its blob
 * digest once that digest and its diff_id were verified. A compressed
 * layer's headers can only be reached by decompressing all of it; a layer
 * that names nothing under /opt needs no hashing (doc/images.md), so a later
 * open of the same blob takes its headers from here instead.
 *
 * One file per blob, DIR/<hex of the digest>, JSON lines written by cJSON:
 *   {"libpht_layer_index":1,"digest":"sha256:..."}
 *   {"p":PATH,"t":FILETYPE,"m":PERM,"u":UID,"g":GID,"mt":MTIME,"s":SIZE[,"h":LINK][,"l":LINK]}
 *   ... one line per header, in the order of the tar ...
 *   {"end":ENTRIES,"diff_id":"sha256:...","diff_size":BYTES}
 * A file is written beside its name and renamed, so a reader sees whole ones;
 * one that does not parse, names another blob or diff_id, or lists an entry
 * under /opt is a miss. The directory must be the user's own, writable by
 * no one else: what it says is trusted as the layer's headers (each still
 * goes through every tarsafe check). Nothing here fails an open.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive_entry.h>

#include "fs_private.h"
#include "hash_private.h"
#include "json_private.h"
#include "layer_private.h"

#define CACHE_LINE_MAX (64u << 10)
#define CACHE_MAGIC "libpht_layer_index"

struct layer_cache_rec {
    FILE *f;
    char *tmp, *path;
    uint64_t n;
    int failed;
};

struct layer_cache_rd {
    FILE *f;
    const img_layer *l;
    char *line;
    size_t cap;
    uint64_t n, diff_size;
};

/* 1 if dir is a directory of ours that no one else may write. */
static int dir_is_private(const char *dir)
{
    struct stat st;
    return lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
           (st.st_mode & 022) == 0;
}

/* DIR/<hex> for a layer with a declared sha256 digest, or NULL. */
static char *cache_path(const img_layer *l, const pht_image_opts *o)
{
    if (o->cache_dir == NULL || o->cache_dir[0] == '\0' || !l->digest_known ||
        !hash_sha256_valid(l->digest))
        return NULL;
    size_t n = strlen(o->cache_dir) + 72;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", o->cache_dir, l->digest + 7);
    return p;
}

/* ---- writing ------------------------------------------------------------------ */

static void rec_line(layer_cache_rec *r, cJSON *j)
{
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    if (text == NULL || fputs(text, r->f) == EOF || fputc('\n', r->f) == EOF) r->failed = 1;
    free(text);
    cJSON_Delete(j);
}

layer_cache_rec *layer_cache_begin(const img_layer *l, const pht_image_opts *o)
{
    char *path = cache_path(l, o);
    if (path == NULL) return NULL;
    pht_error e;
    layer_cache_rec *r = calloc(1, sizeof *r);
    int fd = -1;
    if (r == NULL || pht_mkdir(o->cache_dir, 0700, 1, &e) != 0 || !dir_is_private(o->cache_dir) ||
        fs_tmp_beside(path, &r->tmp, &fd, &e) != 0 || (r->f = fdopen(fd, "w")) == NULL) {
        if (fd >= 0) close(fd);
        if (r && r->tmp) unlink(r->tmp);
        if (r) free(r->tmp);
        free(r);
        free(path);
        return NULL;
    }
    r->path = path;
    cJSON *h = cJSON_CreateObject();
    if (h) {
        cJSON_AddNumberToObject(h, CACHE_MAGIC, 1);
        cJSON_AddStringToObject(h, "digest", l->digest);
    }
    rec_line(r, h);
    return r;
}

void layer_cache_add(layer_cache_rec *r, struct archive_entry *e)
{
    if (r == NULL || r->failed) return;
    cJSON *j = cJSON_CreateObject();
    const char *p = archive_entry_pathname(e), *h = archive_entry_hardlink(e),
               *s = archive_entry_symlink(e);
    if (j == NULL || p == NULL) {
        cJSON_Delete(j);
        r->failed = 1;
        return;
    }
    cJSON_AddStringToObject(j, "p", p);
    cJSON_AddNumberToObject(j, "t", (double)archive_entry_filetype(e));
    cJSON_AddNumberToObject(j, "m", (double)archive_entry_perm(e));
    cJSON_AddNumberToObject(j, "u", (double)archive_entry_uid(e));
    cJSON_AddNumberToObject(j, "g", (double)archive_entry_gid(e));
    cJSON_AddNumberToObject(j, "mt", (double)archive_entry_mtime(e));
    cJSON_AddNumberToObject(j, "s",
                            archive_entry_size_is_set(e) ? (double)archive_entry_size(e) : -1.0);
    if (h) cJSON_AddStringToObject(j, "h", h);
    if (s) cJSON_AddStringToObject(j, "l", s);
    rec_line(r, j);
    r->n++;
}

void layer_cache_end(layer_cache_rec *r, const img_layer *l, int keep)
{
    if (r == NULL) return;
    if (keep && !r->failed) {
        cJSON *t = cJSON_CreateObject();
        if (t) {
            cJSON_AddNumberToObject(t, "end", (double)r->n);
            cJSON_AddStringToObject(t, "diff_id", l->diff_id);
            cJSON_AddNumberToObject(t, "diff_size", (double)l->diff_size);
        }
        rec_line(r, t);
    }
    /* committed through the open stream: an O_TMPFILE file has no name until then */
    pht_error e;
    int ok = fflush(r->f) == 0 && keep && !r->failed &&
             fs_commit_file(fileno(r->f), r->tmp, r->path, &e) == 0;
    fclose(r->f);
    if (!ok) unlink(r->tmp);
    free(r->tmp);
    free(r->path);
    free(r);
}

/* ---- reading ------------------------------------------------------------------ */

/* The next line as JSON, or NULL at the end or on anything malformed. */
static cJSON *rd_json(layer_cache_rd *r)
{
    ssize_t n = getline(&r->line, &r->cap, r->f);
    if (n <= 0 || (size_t)n > CACHE_LINE_MAX || r->line[n - 1] != '\n') return NULL;
    r->line[n - 1] = '\0';
    return json_parse(r->line, "layer index cache", NULL);
}

/* 1 if nothing follows the trailer. */
static int rd_json_end(layer_cache_rd *r)
{
    return getline(&r->line, &r->cap, r->f) <= 0 && feof(r->f);
}

static const char *str_of(const cJSON *j, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, k));
}

static int num_of(const cJSON *j, const char *k, double *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, k);
    if (!cJSON_IsNumber(x)) return 0;
    *v = x->valuedouble;
    return 1;
}

void layer_cache_close(layer_cache_rd *r)
{
    if (r == NULL) return;
    if (r->f) fclose(r->f);
    free(r->line);
    free(r);
}

int layer_cache_next(layer_cache_rd *r, struct archive_entry *e)
{
    cJSON *j = rd_json(r);
    double t, m, u, g, mt, s, end;
    int got = -1;
    if (j && num_of(j, "end", &end)) {
        const char *d = str_of(j, "diff_id");
        double size;
        if (end == (double)r->n && d && strcmp(d, r->l->diff_id) == 0 &&
            num_of(j, "diff_size", &size) && size >= 0 && rd_json_end(r)) {
            r->diff_size = (uint64_t)size;
            got = 0;
        }
    } else if (j && str_of(j, "p") && num_of(j, "t", &t) && num_of(j, "m", &m) &&
               num_of(j, "u", &u) && num_of(j, "g", &g) && num_of(j, "mt", &mt) &&
               num_of(j, "s", &s)) {
        archive_entry_clear(e);
        archive_entry_copy_pathname(e, str_of(j, "p"));
        archive_entry_set_filetype(e, (unsigned)t);
        archive_entry_set_perm(e, (mode_t)m);
        archive_entry_set_uid(e, (la_int64_t)u);
        archive_entry_set_gid(e, (la_int64_t)g);
        archive_entry_set_mtime(e, (time_t)mt, 0);
        if (s >= 0) archive_entry_set_size(e, (la_int64_t)s);
        if (str_of(j, "h")) archive_entry_copy_hardlink(e, str_of(j, "h"));
        if (str_of(j, "l")) archive_entry_copy_symlink(e, str_of(j, "l"));
        r->n++;
        got = 1;
    }
    cJSON_Delete(j);
    return got;
}

uint64_t layer_cache_diff_size(const layer_cache_rd *r)
{
    return r->diff_size;
}

layer_cache_rd *layer_cache_open(const img_layer *l, const pht_image_opts *o)
{
    char *path = cache_path(l, o);
    if (path == NULL || !dir_is_private(o->cache_dir)) {
        free(path);
        return NULL;
    }
    layer_cache_rd *r = calloc(1, sizeof *r);
    struct stat st;
    if (r) {
        r->l = l;
        r->f = fopen(path, "re");
    }
    free(path);
    int ok =
        r && r->f && fstat(fileno(r->f), &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid();
    cJSON *h = ok ? rd_json(r) : NULL;
    double v;
    const char *d = str_of(h, "digest");
    ok = h && num_of(h, CACHE_MAGIC, &v) && v == 1 && d && strcmp(d, l->digest) == 0;
    cJSON_Delete(h);
    if (!ok) {
        layer_cache_close(r);
        return NULL;
    }
    return r;
}
