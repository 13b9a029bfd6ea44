/*
 * Internals of libpht's image layer, shared by image*.c, layer*.c and
 * tarsafe.c. Not installed.
 *
 * Shape: a pht_image holds a transport (a vtable: docker-archive, oci; later
 * docker-daemon and docker://), the manifest and config text, the layers as
 * blob ranges of open files, and the merged-filesystem index. Every layer
 * blob is a byte range of an open file descriptor, so a transport that
 * fetches images from elsewhere only has to land them in a file.
 */
#ifndef PHT_IMAGE_INTERNAL_H
#define PHT_IMAGE_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include <archive.h>
#include <cJSON.h>

#include "pht/image.h"

#define IMG_CHUNK 65536
#define IMG_JSON_MAX (16u << 20) /* manifest, config, index.json */
#define IMG_DIGEST_MAX 80        /* "sha256:" + 64 hex + NUL, with room */

/* ---- sha256 over OpenSSL EVP ----------------------------------------------- */
typedef struct img_sha img_sha;
img_sha *img_sha_new(pht_error *err);
void img_sha_update(img_sha *s, const void *p, size_t n);
/* Writes "sha256:<hex>" into out (IMG_DIGEST_MAX). The context can be reused after. */
int img_sha_final(img_sha *s, char *out, pht_error *err);
void img_sha_free(img_sha *s);
/* One-shot digest of a buffer. */
int img_sha_buf(const void *p, size_t n, char *out, pht_error *err);
/* "sha256:ab12cd34ef56…" for messages. */
const char *img_short(const char *digest, char *buf, size_t cap);
/* 1 if d is "sha256:" + 64 lowercase hex digits. */
int img_digest_valid(const char *d);

/* ---- layers ---------------------------------------------------------------- */
enum { IMG_COMP_NONE = 0, IMG_COMP_GZIP, IMG_COMP_ZSTD, IMG_COMP_OTHER };

typedef struct img_layer {
    int fd; /* owned; blob is [offset, offset+length) of it */
    uint64_t offset, length;
    char digest[IMG_DIGEST_MAX];  /* blob digest; verified/learned at index time */
    char diff_id[IMG_DIGEST_MAX]; /* from the config; verified at index time */
    char media_type[96];
    int compression;    /* IMG_COMP_*, learned at index time */
    uint64_t diff_size; /* learned at index time */
    char *created_by, *comment;
    int digest_known; /* digest came from a manifest and must match */
} img_layer;

void img_layer_clear(img_layer *l);

/* Write callback for copies: returns 0 or a PHT_E* code with err set. */
typedef int (*img_sink)(void *ud, const void *p, size_t n, pht_error *err);

/* Copy the blob as stored / its decompressed tar (diff_size bytes) to sink. */
int layer_copy_raw(const img_layer *l, img_sink sink, void *ud, pht_error *err);
int layer_copy_diff(const img_layer *l, const pht_image_opts *o, img_sink sink, void *ud,
                    pht_error *err);

/* A tar reader over a layer blob (decompressing), for reading content. */
struct archive *layer_tar_open(const img_layer *l, void **state, pht_error *err);
void layer_tar_close(struct archive *a, void *state);

/*
 * The indexing pass: reads every header of the layer once, hashing the blob
 * and its decompressed stream, enforcing caps. For each entry calls cb with
 * the normalized path (NULL-terminated), the entry, and its ordinal.
 */
typedef int (*layer_entry_cb)(void *ud, struct archive_entry *e, uint64_t ordinal, pht_error *err);
int layer_scan(img_layer *l, const pht_image_opts *o, layer_entry_cb cb, void *ud, pht_error *err);

/* ---- path safety (tarsafe.c) ----------------------------------------------- */
/*
 * Normalize an entry path: strips "./" and '/' runs, rejects absolute paths
 * and ".." (PHT_EUNSAFE) and names over max_name (PHT_ELIMIT). *out is
 * malloc'ed ("" for the root). why gets a static reason on failure.
 */
int tarsafe_path(const char *in, uint64_t max_name, char **out, const char **why);
/* 0 if the symlink at path with target stays inside the root, else PHT_EUNSAFE. */
int tarsafe_symlink(const char *path, const char *target, const char **why);
/*
 * Docker's archive walk order over a[0, an) and b[0, bn): component-wise
 * bytewise ("a/b" < "a-c"), comparing eight bytes at a time.
 */
int tarsafe_walk_cmpn(const char *a, size_t an, const char *b, size_t bn);
/* Length of the common prefix of a[0, n) and b[0, n). */
size_t tarsafe_common(const char *a, const char *b, size_t n);
/* 1 if p is strictly below dir ("" is the root). */
int tarsafe_below(const char *p, const char *dir);
/* Format "layer sha256:ab12…: entry "x": why" into err. */
int tarsafe_fail(pht_error *err, int code, const img_layer *l, const char *entry, const char *fmt,
                 ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* ---- merged filesystem index (layer_index.c) ------------------------------- */
typedef struct img_entry {
    char *path; /* normalized, "" never stored */
    size_t plen;
    char *link; /* symlink target / hard link target path, or NULL */
    int type;   /* enum pht_image_type */
    uint32_t mode;
    int64_t uid, gid, mtime;
    uint64_t size;
    int layer;        /* layer that holds the entry */
    uint64_t ordinal; /* header number inside that layer */
    int data_layer;   /* where the bytes are (a hard link: its target's) */
    uint64_t data_ordinal;
} img_entry;

typedef struct img_index {
    img_entry **v; /* the entries layers named, sorted in walk order */
    size_t n;
    img_entry implicit; /* the parent directory index_lookup found last */
} img_index;

/* Build the index from all layers of img, bottom first. */
int index_build(pht_image *img, pht_error *err);
void index_free(img_index *ix);
/* Position of path among the entries layers named, or -1. */
long index_find(const img_index *ix, const char *path);
/*
 * The entry at path (not ""): one a layer named, or for a directory that only
 * appears as a parent an implicit one (0755, root, mtime 0) that stays valid
 * until the next call. PHT_ENOTFOUND or PHT_ENOMEM, err not set.
 */
int index_lookup(img_index *ix, const char *path, const img_entry **out);
/*
 * Visit the entries below dir ("" is the root) in walk order, implicit parents
 * included, with their paths relative to dir; recursive == 0: only the direct
 * children. An implicit entry and its paths are valid during the call only.
 * Returns the first non-zero return of visit.
 */
typedef int (*index_visit)(void *ud, const char *rel, const img_entry *e);
int index_walk(const img_index *ix, const char *dir, int recursive, index_visit visit, void *ud,
               pht_error *err);

/* ---- the image and its transports ------------------------------------------ */
typedef struct img_transport img_transport;

struct pht_image {
    int refs;
    const img_transport *tp;
    char *ref;
    char *location; /* the part after "transport:" */
    pht_image_opts opts;
    char *tmpdir;
    char *manifest;
    char *config;
    size_t config_len;
    img_layer *layers;
    size_t nlayers;
    img_index index;
    void *tpdata; /* the transport's own state */
};

/* A new image as a commit writes it: layers bottom first, config text. */
typedef struct img_plan {
    const img_layer *const *layers;
    size_t nlayers;
    const char *config;
    size_t config_len;
    char config_digest[IMG_DIGEST_MAX];
    const char *const *tags; /* names to point at the new image */
    size_t ntags;
    const pht_image_opts *opts;
    /* an untagged in-place commit: the digest of the source's entry (docker-archive:
       its config, oci: its index.json descriptor), dropped when left without names */
    const char *replaces;
    int keep_unreferenced; /* oci: skip removing unreferenced blobs */
    const pht_image *base; /* the image the leading layers come from */
} img_plan;

struct img_transport {
    const char *name;
    /* Parse location, fill manifest/config/layers (unindexed). */
    int (*open)(pht_image *img, const char *location, pht_error *err);
    void (*close)(pht_image *img);
    /* Split a destination location into where and an optional tag (malloc'ed). */
    int (*dest_tag)(const char *location, char **where, char **tag, pht_error *err);
    /* Write plan to where atomically. */
    int (*commit)(const char *where, const img_plan *plan, pht_error *err);
    /*
     * For a commit to where without a tag: when where is src's own archive or
     * layout, the names src has there (*names: malloc'ed strings) and the
     * digest of its entry (id, IMG_DIGEST_MAX); else *n = 0 and id "". May be NULL.
     */
    int (*own_names)(const pht_image *src, const char *where, char ***names, size_t *n, char *id,
                     pht_error *err);
};

extern const img_transport img_docker_archive;
extern const img_transport img_oci;
extern const img_transport img_docker_daemon; /* image_daemon.c */

/* Find a transport by reference prefix; *location points after the colon. */
const img_transport *img_transport_find(const char *ref, const char **location, pht_error *err);

void img_retain(pht_image *img);

/* Parse the config's history into layers[i].created_by/comment. */
int img_apply_history(pht_image *img, pht_error *err);

/* ---- the runtime config a writer sets (image_config.c) -------------------- */
/*
 * Apply spec to *run, the "config" object of the new image (created from
 * src_config's on first use). Validates spec first: on failure *run is unchanged.
 */
int img_runcfg_apply(cJSON **run, const char *src_config, const pht_image_config_spec *spec,
                     pht_error *err);
/* Replace cfg's "config" object by a copy of run. */
int img_runcfg_put(cJSON *cfg, const cJSON *run, pht_error *err);

/* ---- small file helpers (image_util.c) ------------------------------------ */
/* Read [off, off+len) of fd into a NUL-terminated malloc'ed buffer (len <= cap). */
int img_pread_all(int fd, uint64_t off, uint64_t len, uint64_t cap, char **out, const char *what,
                  pht_error *err);
/* Whole small file into memory (<= cap), NUL-terminated. */
int img_read_small(const char *path, uint64_t cap, char **out, size_t *len, pht_error *err);
/* Write all of p to fd, retrying short writes. */
int img_write_all(int fd, const void *p, size_t n, const char *what, pht_error *err);
/* Temporary file beside path (".NAME.XXXXXX"), fd open; *tmp malloc'ed. */
int img_tmp_beside(const char *path, char **tmp, int *fd, pht_error *err);
/* Anonymous temporary file in dir (unlinked at once). */
int img_tmp_anon(const char *dir, int *fd, pht_error *err);
/* fsync fd, rename tmp over path, fsync the directory. */
int img_commit_file(int fd, const char *tmp, const char *path, pht_error *err);
/* fsync a directory by path. */
int img_fsync_dir(const char *dir, pht_error *err);
/* The directory part of path ("." if none), malloc'ed. */
char *img_dirname(const char *path);
/* Resolve $TMPDIR / /tmp when dir is NULL; malloc'ed. */
char *img_tmpdir(const char *dir);
/* Parse JSON text, PHT_EFORMAT naming what on failure. */
cJSON *img_json_parse(const char *text, const char *what, pht_error *err);
/*
 * Write the header of a regular 0644 file entry of the given size to a tar
 * being written. PHT_ENOMEM, or PHT_EIO with the reason in
 * archive_error_string(a); the caller names the archive.
 */
int img_tar_file_header(struct archive *a, const char *name, uint64_t size);
/* The OCI media type for a layer of compression c. */
const char *img_layer_media_type(int c);
/* Compression implied by a layer media type (-1 when unknown: detect). */
int img_media_compression(const char *mt);

#endif
