/*
 * The image writer: one new layer of streamed entries on top of base layers,
 * then a commit through the destination's transport.
 *
 * The new layer is a plain tar written by libarchive into an unlinked
 * temporary file in the writer's tmpdir (or beside the docker-archive it is
 * bound for) while its sha256 (the diff_id and, uncompressed, the blob
 * digest) is computed on the way, both by a layer_sink (layer_sink.c: on a
 * thread of its own once the layer is large). Entries of unknown
 * size spool to a second temporary file first. The config starts from the
 * source image's config; rootfs.diff_ids and history follow the layers.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "fs_private.h"
#include "hash_private.h"
#include "transport_private.h"
#include "pht/interrupt.h"

#define LAYER_BLOCK (128u << 10) /* bytes per write of the new layer */

struct pht_image_writer {
    int refs;
    pht_image *src, *base;
    long keep;
    char *tmpdir;
    char *near;    /* the directory of the docker-archive it is bound for, or NULL */
    uint64_t head; /* where the new layer starts in fd: 0, or IMG_ARCHIVE_HEAD */
    int fd;
    pht_hash *sha;    /* of the new layer: its diff_id and digest */
    layer_sink *sink; /* writes and hashes it (on a thread once it is large) */
    int flush_behind; /* bound for a docker-archive or OCI layout, whose commit fsyncs the file */
    uint64_t bytes, nentries;
    struct archive *a;
    pht_image_stream *active;
    int failed, done;
    pht_error why;
    int64_t now;
    cJSON *run;               /* the runtime config set_config made, or NULL */
    pht_progress_fn progress; /* and progress_ud: pht_image_writer_set_progress */
    void *progress_ud;
};

struct pht_image_stream {
    pht_image_writer *w;
    int64_t size;
    uint64_t written;
    int spool;
    char *path;
    pht_image_attrs attrs;
};

void pht_image_attrs_init(pht_image_attrs *a)
{
    *a = (pht_image_attrs){.mode = -1, .mtime = -1};
}

static void writer_unref(pht_image_writer *w)
{
    if (w == NULL || --w->refs > 0) return;
    if (w->a) archive_write_free(w->a);
    layer_sink_free(w->sink);
    if (w->fd >= 0) close(w->fd);
    pht_hash_free(w->sha);
    cJSON_Delete(w->run);
    pht_image_free(w->src);
    pht_image_free(w->base);
    free(w->tmpdir);
    free(w->near);
    free(w);
}

void pht_image_writer_free(pht_image_writer *w)
{
    writer_unref(w);
}

int pht_image_writer_new(pht_image *img, const pht_image_writer_opts *opts, pht_image_writer **out,
                         pht_error *err)
{
    *out = NULL;
    pht_image_writer *w = calloc(1, sizeof *w);
    if (w == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    w->refs = 1;
    w->fd = -1;
    w->src = img;
    img_retain(img);
    w->keep = opts ? opts->keep_layers : -1;
    int rc = 0;
    if (opts && opts->base) {
        w->base = opts->base;
        img_retain(w->base);
    } else if (opts && opts->base_ref) {
        rc = pht_image_open(&w->base, opts->base_ref, &img->opts, err);
    }
    w->tmpdir = strdup(fs_tmpdir(opts && opts->tmpdir ? opts->tmpdir : img->tmpdir));
    if (opts && opts->dest) {
        /* bound for a docker-archive: the layer's file goes beside it (see IMG_ARCHIVE_HEAD) */
        pht_image_ref *d = NULL;
        int parsed = pht_image_ref_parse(opts->dest, 0, &d, NULL) == 0;
        /* a file its commit fsyncs (the archive, or the OCI blob it becomes): write it past the
           page cache; a layer sent elsewhere (an engine's load) is read back soon, from there */
        w->flush_behind = parsed && (strcmp(pht_image_ref_transport(d), "docker-archive") == 0 ||
                                     strcmp(pht_image_ref_transport(d), "oci") == 0);
        if (parsed && strcmp(pht_image_ref_transport(d), "docker-archive") == 0 &&
            pht_image_ref_path(d)) {
            const char *path = pht_image_ref_path(d), *slash = strrchr(path, '/');
            w->near =
                slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
        }
        pht_image_ref_free(d);
    }
    w->now = (int64_t)time(NULL);
    const pht_image *b = w->base ? w->base : img;
    if (rc) {
        pht_error_prefix(err, "base image");
    } else if (w->tmpdir == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    else if (w->keep > (long)b->nlayers)
        rc = pht_error_set(err, PHT_EINVAL, "keep_layers %ld: the base image has %zu layers",
                           w->keep, b->nlayers);
    if (rc) {
        writer_unref(w);
        return rc;
    }
    *out = w;
    return 0;
}

void pht_image_writer_set_progress(pht_image_writer *w, pht_progress_fn fn, void *ud)
{
    w->progress = fn;
    w->progress_ud = fn ? ud : NULL;
}

static la_ssize_t layer_write(struct archive *a, void *ud, const void *p, size_t n)
{
    pht_image_writer *w = ud;
    pht_error e;
    if (layer_sink_put(w->sink, p, n, &e)) {
        archive_set_error(a, EIO, "%s", e.message);
        return -1;
    }
    w->bytes += n;
    if (w->progress) w->progress(w->progress_ud, n);
    return (la_ssize_t)n;
}

/* Fail the writer for good: later calls report the first failure. */
static int w_fail(pht_image_writer *w, pht_error *err, int code, const char *fmt, const char *a1,
                  const char *a2)
{
    pht_error_set(&w->why, code, fmt, a1, a2);
    w->failed = 1;
    if (err) *err = w->why;
    return code;
}

static int w_ready(pht_image_writer *w, int streaming, pht_error *err)
{
    if (w->done) return pht_error_set(err, PHT_ESTATE, "image writer: already committed");
    if (w->failed)
        return pht_error_set(err, PHT_ESTATE, "image writer failed earlier: %s", w->why.message);
    if (!streaming && w->active)
        return pht_error_set(err, PHT_ESTATE, "image writer: a streamed file is still open");
    if (w->a) return 0;
    int rc = 1;
    if (w->near && fs_tmp_anon(w->near, &w->fd, NULL) == 0) {
        if (lseek(w->fd, IMG_ARCHIVE_HEAD, SEEK_SET) == (off_t)IMG_ARCHIVE_HEAD) {
            w->head = IMG_ARCHIVE_HEAD;
            rc = 0;
        } else {
            close(w->fd);
            w->fd = -1;
        }
    }
    if (rc && (rc = fs_tmp_anon(w->tmpdir, &w->fd, err)) != 0) return rc;
    if ((w->sha = hash_new_sha256(err)) == NULL) return PHT_ECRYPTO;
    if ((rc = layer_sink_new(&w->sink, w->fd, w->sha, w->flush_behind, err)) != 0) return rc;
    w->a = archive_write_new();
    if (w->a == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    archive_write_set_format_pax_restricted(w->a);
    /* writes of LAYER_BLOCK bytes: libarchive's 10 KiB blocks cost the kernel twice as much */
    archive_write_set_bytes_per_block(w->a, LAYER_BLOCK);
    archive_write_set_bytes_in_last_block(w->a, 1);
    if (archive_write_open2(w->a, w, NULL, layer_write, NULL, NULL) != ARCHIVE_OK)
        return w_fail(w, err, PHT_EIO, "new layer: %s%s", archive_error_string(w->a), "");
    return 0;
}

/* "opt/x" from a caller's "/opt/x"; PHT_EUNSAFE for "..", PHT_EINVAL for the root. */
static int w_path(pht_image_writer *w, const char *path, char **out, pht_error *err)
{
    const char *why;
    while (path && *path == '/')
        path++;
    int rc = tarsafe_path(path, w->src->opts.max_name, out, &why);
    if (rc)
        return pht_error_set(err, rc, "image writer: path \"%.300s\": %s", path ? path : "", why);
    if ((*out)[0] == '\0') {
        free(*out);
        return pht_error_set(err, PHT_EINVAL, "image writer: cannot add the root directory");
    }
    return 0;
}

static int put_header(pht_image_writer *w, const char *name, int type, uint64_t size,
                      const pht_image_attrs *at, int defmode, const char *link, pht_error *err)
{
    pht_image_attrs d;
    pht_image_attrs_init(&d);
    if (at == NULL) at = &d;
    struct archive_entry *e = archive_entry_new();
    if (e == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (type == AE_IFDIR) {
        size_t n = strlen(name);
        char *dn = malloc(n + 2);
        if (dn == NULL) {
            archive_entry_free(e);
            return pht_error_set(err, PHT_ENOMEM, "out of memory");
        }
        memcpy(dn, name, n);
        memcpy(dn + n, "/", 2);
        archive_entry_set_pathname(e, dn);
        free(dn);
    } else {
        archive_entry_set_pathname(e, name);
    }
    archive_entry_set_filetype(e, (unsigned)type);
    archive_entry_set_perm(e, (unsigned)(at->mode >= 0 ? at->mode & 07777 : defmode));
    archive_entry_set_uid(e, at->uid);
    archive_entry_set_gid(e, at->gid);
    archive_entry_set_mtime(e, at->mtime >= 0 ? at->mtime : w->now, 0);
    if (type == AE_IFREG) archive_entry_set_size(e, (la_int64_t)size);
    if (link) archive_entry_set_symlink(e, link);
    int r = archive_write_header(w->a, e);
    archive_entry_free(e);
    if (r != ARCHIVE_OK)
        return w_fail(w, err, PHT_EIO, "new layer: entry \"%.300s\": %s", name,
                      archive_error_string(w->a));
    w->nentries++;
    return 0;
}

static int put_data(pht_image_writer *w, const char *name, const void *p, size_t n, pht_error *err)
{
    if (n && archive_write_data(w->a, p, n) != (la_ssize_t)n)
        return w_fail(w, err, PHT_EIO, "new layer: entry \"%.300s\": %s", name,
                      archive_error_string(w->a));
    return 0;
}

int pht_image_writer_add_dir(pht_image_writer *w, const char *path, const pht_image_attrs *attrs,
                             pht_error *err)
{
    char *p;
    int rc = w_ready(w, 0, err);
    if (rc || (rc = w_path(w, path, &p, err))) return rc;
    rc = put_header(w, p, AE_IFDIR, 0, attrs, 0755, NULL, err);
    if (rc == 0 && attrs && attrs->opaque) {
        size_t n = strlen(p) + 16;
        char *o = malloc(n);
        if (o == NULL)
            rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        else {
            snprintf(o, n, "%s/.wh..wh..opq", p);
            pht_image_attrs z;
            pht_image_attrs_init(&z);
            rc = put_header(w, o, AE_IFREG, 0, &z, 0644, NULL, err);
            free(o);
        }
    }
    free(p);
    return rc;
}

int pht_image_writer_whiteout(pht_image_writer *w, const char *path, pht_error *err)
{
    char *p;
    int rc = w_ready(w, 0, err);
    if (rc || (rc = w_path(w, path, &p, err))) return rc;
    const char *slash = strrchr(p, '/');
    size_t dl = slash ? (size_t)(slash - p) + 1 : 0, n = strlen(p) + 8;
    char *o = malloc(n);
    if (o == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    else {
        snprintf(o, n, "%.*s.wh.%s", (int)dl, p, p + dl);
        rc = put_header(w, o, AE_IFREG, 0, NULL, 0644, NULL, err);
        free(o);
    }
    free(p);
    return rc;
}

int pht_image_writer_add_symlink(pht_image_writer *w, const char *path, const char *target,
                                 const pht_image_attrs *attrs, pht_error *err)
{
    char *p;
    const char *why;
    int rc = w_ready(w, 0, err);
    if (rc || (rc = w_path(w, path, &p, err))) return rc;
    if (tarsafe_symlink(p, target, &why))
        rc = pht_error_set(err, PHT_EUNSAFE, "image writer: symlink \"%.300s\": %s", p, why);
    else
        rc = put_header(w, p, AE_IFLNK, 0, attrs, 0777, target, err);
    free(p);
    return rc;
}

int pht_image_writer_add_bytes(pht_image_writer *w, const char *path, const void *data, size_t len,
                               const pht_image_attrs *attrs, pht_error *err)
{
    char *p;
    int rc = w_ready(w, 0, err);
    if (rc || (rc = w_path(w, path, &p, err))) return rc;
    rc = put_header(w, p, AE_IFREG, len, attrs, 0644, NULL, err);
    if (rc == 0) rc = put_data(w, p, data, len, err);
    free(p);
    return rc;
}

/* Copy exactly size bytes of fd (from its start) into the current entry. */
static int put_fd(pht_image_writer *w, const char *name, int fd, uint64_t size, const char *src,
                  pht_error *err)
{
    unsigned char *buf = malloc(PHT_CHUNK_SIZE);
    if (buf == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    uint64_t pos = 0;
    int rc = 0;
    while (pos < size && rc == 0) {
        size_t want = size - pos < PHT_CHUNK_SIZE ? (size_t)(size - pos) : PHT_CHUNK_SIZE;
        if ((rc = pht_interrupt_check(err))) break;
        ssize_t r = pread(fd, buf, want, (off_t)pos);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            rc = w_fail(w, err, PHT_EIO, "%s: %s", src,
                        r < 0 ? strerror(errno) : "file shrank while read");
            break;
        }
        rc = put_data(w, name, buf, (size_t)r, err);
        pos += (uint64_t)r;
    }
    free(buf);
    return rc;
}

int pht_image_writer_add_file(pht_image_writer *w, const char *path, const char *src,
                              const pht_image_attrs *attrs, pht_error *err)
{
    char *p;
    int rc = w_ready(w, 0, err);
    if (rc || (rc = w_path(w, path, &p, err))) return rc;
    int fd = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* FIFOs refused below */
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = pht_error_set(err, fd < 0 && errno == ENOENT ? PHT_ENOTFOUND : PHT_EIO,
                           "image writer: %s: %s", src,
                           fd < 0 ? strerror(errno) : "not a regular file");
    } else {
        rc = put_header(w, p, AE_IFREG, (uint64_t)st.st_size, attrs, (int)(st.st_mode & 07777),
                        NULL, err);
        if (rc == 0) rc = put_fd(w, p, fd, (uint64_t)st.st_size, src, err);
    }
    if (fd >= 0) close(fd);
    free(p);
    return rc;
}

int pht_image_writer_begin_file(pht_image_writer *w, const char *path, int64_t size,
                                const pht_image_attrs *attrs, pht_image_stream **out,
                                pht_error *err)
{
    *out = NULL;
    char *p;
    int rc = w_ready(w, 0, err);
    if (rc || (rc = w_path(w, path, &p, err))) return rc;
    pht_image_stream *s = calloc(1, sizeof *s);
    if (s == NULL) {
        free(p);
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    *s = (pht_image_stream){.w = w, .size = size, .spool = -1, .path = p};
    if (attrs)
        s->attrs = *attrs;
    else
        pht_image_attrs_init(&s->attrs);
    if (size < 0)
        rc = fs_tmp_anon(w->tmpdir, &s->spool, err);
    else
        rc = put_header(w, p, AE_IFREG, (uint64_t)size, &s->attrs, 0644, NULL, err);
    if (rc) {
        free(p);
        free(s);
        return rc;
    }
    w->refs++;
    w->active = s;
    *out = s;
    return 0;
}

int pht_image_stream_write(pht_image_stream *s, const void *data, size_t len, pht_error *err)
{
    pht_image_writer *w = s->w;
    if (w == NULL || w->active != s)
        return pht_error_set(err, PHT_ESTATE, "image stream is closed");
    int rc = w_ready(w, 1, err);
    if (rc) return rc;
    if (s->size >= 0 && s->written + len > (uint64_t)s->size)
        return w_fail(w, err, PHT_ELIMIT,
                      "new layer: entry \"%.300s\": more bytes than the size %s", s->path,
                      "announced");
    if (s->spool >= 0)
        rc = fs_write_all(s->spool, data, len, "spool file", err);
    else
        rc = put_data(w, s->path, data, len, err);
    if (rc)
        return w->failed ? rc : w_fail(w, err, rc, "%s%s", err ? err->message : "spool failed", "");
    s->written += len;
    return 0;
}

static void stream_detach(pht_image_stream *s)
{
    if (s->spool >= 0) close(s->spool);
    s->spool = -1;
    if (s->w) {
        if (s->w->active == s) s->w->active = NULL;
        writer_unref(s->w);
    }
    s->w = NULL;
}

int pht_image_stream_close(pht_image_stream *s, pht_error *err)
{
    pht_image_writer *w = s->w;
    if (w == NULL) return 0;
    int rc = w_ready(w, 1, err);
    if (rc == 0 && s->size >= 0 && s->written != (uint64_t)s->size)
        rc = w_fail(w, err, PHT_ESTATE, "new layer: entry \"%.300s\": fewer bytes than the size %s",
                    s->path, "announced");
    if (rc == 0 && s->spool >= 0) {
        rc = put_header(w, s->path, AE_IFREG, s->written, &s->attrs, 0644, NULL, err);
        if (rc == 0) rc = put_fd(w, s->path, s->spool, s->written, "spool file", err);
    }
    stream_detach(s);
    return rc;
}

void pht_image_stream_free(pht_image_stream *s)
{
    if (s == NULL) return;
    if (s->w && s->w->active == s && !s->w->done) {
        s->w->failed = 1;
        pht_error_set(&s->w->why, PHT_ESTATE, "streamed file \"%.300s\" was not closed", s->path);
    }
    stream_detach(s);
    free(s->path);
    free(s);
}

int pht_image_writer_set_config(pht_image_writer *w, const pht_image_config_spec *spec,
                                pht_error *err)
{
    if (w->done) return pht_error_set(err, PHT_ESTATE, "image writer: already committed");
    return img_runcfg_apply(&w->run, w->src->config, spec, err);
}

/* ---- commit ----------------------------------------------------------------- */

static void iso_time(int64_t t, char *out, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The new config: the source's, with rootfs and history for the new layers. */
static char *make_config(pht_image_writer *w, const pht_image *b, size_t keep, const img_layer *nl,
                         const pht_image_commit_opts *o, pht_error *err)
{
    cJSON *cfg = json_parse(w->src->config, "image config", err);
    cJSON *bcfg = json_parse(b->config, "base image config", err);
    char when[32], *text = NULL;
    iso_time(w->now, when, sizeof when);
    if (cfg == NULL || bcfg == NULL) goto done;
    cJSON *hist = cJSON_CreateArray(), *it;
    size_t seen = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(bcfg, "history"))
    {
        int empty = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "empty_layer"));
        if (!empty && seen == keep) break;
        cJSON_AddItemToArray(hist, cJSON_Duplicate(it, 1));
        seen += !empty;
    }
    for (; seen < keep; seen++) { /* a base without history: one entry per layer */
        cJSON *h = cJSON_CreateObject();
        cJSON_AddStringToObject(h, "created", when);
        cJSON_AddItemToArray(hist, h);
    }
    cJSON *diffs = cJSON_CreateArray();
    for (size_t i = 0; i < keep; i++)
        cJSON_AddItemToArray(diffs, cJSON_CreateString(b->layers[i].diff_id));
    if (nl || w->run) { /* a config change alone is an empty_layer entry, as docker build's */
        if (nl) cJSON_AddItemToArray(diffs, cJSON_CreateString(nl->diff_id));
        cJSON *h = cJSON_CreateObject();
        cJSON_AddStringToObject(h, "created", when);
        cJSON_AddStringToObject(h, "created_by", o && o->created_by ? o->created_by : "libpht");
        if (o && o->comment) cJSON_AddStringToObject(h, "comment", o->comment);
        if (!nl) cJSON_AddTrueToObject(h, "empty_layer");
        cJSON_AddItemToArray(hist, h);
    }
    cJSON *rootfs = cJSON_CreateObject();
    cJSON_AddStringToObject(rootfs, "type", "layers");
    cJSON_AddItemToObject(rootfs, "diff_ids", diffs);
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "rootfs");
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "history");
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "created");
    cJSON_AddStringToObject(cfg, "created", when);
    cJSON_AddItemToObject(cfg, "history", hist);
    cJSON_AddItemToObject(cfg, "rootfs", rootfs);
    if (w->run && img_runcfg_put(cfg, w->run, err)) goto done;
    if ((text = cJSON_PrintUnformatted(cfg)) == NULL)
        pht_error_set(err, PHT_ENOMEM, "out of memory");
done:
    cJSON_Delete(cfg);
    cJSON_Delete(bcfg);
    return text;
}

/*
 * The dest's tag, the extra tags and the names an in-place commit moves from
 * the source, without repeats; docker-archive names get ":latest" when bare.
 */
static int collect_tags(const img_transport *tp, const char *tag, const pht_image_commit_opts *o,
                        char *const *own, size_t nown, char ***out, size_t *n, pht_error *err)
{
    size_t nopt = o ? o->ntags : 0, cap = (tag ? 1 : 0) + nopt + nown;
    char **v = calloc(cap + 1, sizeof *v);
    if (v == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    *out = v;
    *n = 0;
    for (size_t i = 0; i < cap; i++) {
        size_t k = i - (tag ? 1 : 0);
        const char *t = (tag && i == 0) ? tag : k < nopt ? o->tags[k] : own[k - nopt];
        if (t == NULL || t[0] == '\0' || strpbrk(t, " \t\n\"") != NULL)
            return pht_error_set(err, PHT_EINVAL, "image tag \"%.200s\" is not valid", t ? t : "");
        int bare = tp == &img_docker_archive && !img_ref_has_tag(t);
        size_t len = strlen(t) + 8, j = 0;
        if ((v[*n] = malloc(len)) == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
        snprintf(v[*n], len, bare ? "%s:latest" : "%s", t);
        while (j < *n && strcmp(v[j], v[*n]) != 0)
            j++;
        if (j < *n) {
            free(v[*n]);
            v[*n] = NULL;
        } else {
            (*n)++;
        }
    }
    return 0;
}

int pht_image_writer_commit(pht_image_writer *w, const char *dest_ref,
                            const pht_image_commit_opts *opts, pht_error *err)
{
    int rc = w_ready(w, 0, err);
    if (rc) return rc;
    /* nothing is written where dest_ref points before the images read are known to be theirs */
    if ((rc = img_verify_wait(w->src, err)) || (w->base && (rc = img_verify_wait(w->base, err))))
        return pht_error_prefix(err, "commit %.200s", dest_ref);
    pht_image_ref *dest;
    if ((rc = pht_image_ref_parse(dest_ref, 0, &dest, err))) return rc;
    const img_transport *tp = img_ref_transport(dest, err);
    if (tp == NULL) {
        pht_image_ref_free(dest);
        return PHT_EINVAL;
    }
    pht_image *b = w->base ? w->base : w->src;
    size_t keep = w->keep < 0 ? b->nlayers : (size_t)w->keep;
    /* a layer kept whose diff_id its scan left to check (a run's layer) is checked now */
    for (size_t i = 0; rc == 0 && i < keep; i++)
        if (b->layers[i].diff_pending) rc = layer_verify(&b->layers[i], &b->opts, err);
    if (rc) {
        pht_image_ref_free(dest);
        return pht_error_prefix(err, "commit %.200s", dest_ref);
    }
    img_layer nl = {.fd = -1, .compression = IMG_COMP_NONE};
    int has_new = w->nentries > 0;
    if (has_new) {
        pht_error he;
        if (archive_write_close(w->a) != ARCHIVE_OK)
            rc = w_fail(w, err, PHT_EIO, "new layer: %s%s", archive_error_string(w->a), "");
        else if (layer_sink_finish(w->sink, &he) != 0)
            rc = w_fail(w, err, he.code, "%s%s", he.message, "");
        else if ((rc = hash_final_sha256(w->sha, nl.diff_id, err)) == 0) {
            memcpy(nl.digest, nl.diff_id, sizeof nl.digest);
            nl.fd = w->fd;
            nl.offset = w->head;
            nl.length = nl.diff_size = w->bytes;
            strcpy(nl.media_type, layer_media_type(IMG_COMP_NONE));
        }
    }
    const img_layer **layers = rc ? NULL : calloc(keep + 2, sizeof *layers);
    char *where = NULL, *tag = NULL, **tags = NULL, *config = NULL, **own = NULL;
    char own_id[IMG_DIGEST_MAX] = "";
    size_t ntags = 0, nown = 0;
    if (rc || layers == NULL) {
        pht_image_ref_free(dest);
        return rc ? rc : pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < keep; i++)
        layers[i] = &b->layers[i];
    if (has_new) layers[keep] = &nl;
    /* the source's options, reporting to the writer's progress function */
    pht_image_opts popts = w->src->opts;
    popts.progress = w->progress;
    popts.progress_ud = w->progress_ud;
    img_plan plan = {.layers = layers,
                     .nlayers = keep + (has_new ? 1 : 0),
                     .opts = &popts,
                     .base = b,
                     .src = w->src,
                     .spent = has_new ? &nl : NULL};
    if ((rc = tp->dest_tag(dest, &where, &tag, err))) goto done;
    /* another transport needs the base layers' bytes, unless it lands what it sends;
       a transport lands its own on demand */
    if (tp != b->tp && !tp->lands_base && keep > 0 && (rc = img_land(b, IMG_LANDED_ALL, err)))
        goto done;
    /* untagged into the source's own archive/layout: take the source's place */
    if (tag == NULL && tp == w->src->tp && tp->own_names &&
        (rc = tp->own_names(w->src, where, &own, &nown, own_id, err)))
        goto done;
    if ((rc = collect_tags(tp, tag, opts, own, nown, &tags, &ntags, err))) goto done;
    plan.replaces = own_id[0] ? own_id : NULL;
    plan.keep_unreferenced = opts ? opts->keep_unreferenced : 0;
    plan.drop_plaintext = opts ? opts->drop_plaintext : 0;
    if (!has_new && !w->run && b == w->src && keep == b->nlayers) { /* a retag: same bytes */
        plan.config = w->src->config;
        plan.config_len = w->src->config_len;
        plan.retag = 1;
    } else {
        if ((config = make_config(w, b, keep, has_new ? &nl : NULL, opts, err)) == NULL) {
            rc = err && err->code ? err->code : PHT_EFORMAT;
            goto done;
        }
        plan.config = config;
        plan.config_len = strlen(config);
    }
    if ((rc = hash_sha256_buf(plan.config, plan.config_len, plan.config_digest, err))) goto done;
    plan.tags = (const char *const *)tags;
    plan.ntags = ntags;
    rc = tp->commit(where, &plan, err);
    if (rc) pht_error_prefix(err, "commit %.200s", dest_ref);
done:
    w->done = 1; /* the layer archive is closed either way */
    for (size_t i = 0; tags && i < ntags; i++)
        free(tags[i]);
    free(tags);
    for (size_t i = 0; own && i < nown; i++)
        free(own[i]);
    free(own);
    free(layers);
    free(where);
    free(tag);
    free(config);
    pht_image_ref_free(dest);
    return rc;
}
