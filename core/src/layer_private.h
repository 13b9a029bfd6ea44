/*
 * Layers of libpht's image layer (layer_stream.c, layer_index.c,
 * tarsafe.c): a layer is a blob, a byte range of an open file; it is read as
 * a libarchive stream, scanned once into the merged-filesystem index, and
 * every entry path is checked by tarsafe. Knows nothing of transports.
 * Not installed.
 */
#ifndef PHT_LAYER_PRIVATE_H
#define PHT_LAYER_PRIVATE_H

#include <stdint.h>

#include <archive.h>

#include "pht/hash.h" /* pht_path_walk_cmp: the index's order */
#include "pht/image.h"

#define IMG_DIGEST_MAX 80 /* "sha256:" + 64 hex + NUL, with room */

/* ---- layers (layer_stream.c) ----------------------------------------------- */
enum { IMG_COMP_NONE = 0, IMG_COMP_GZIP, IMG_COMP_ZSTD, IMG_COMP_OTHER };

typedef struct img_layer {
    int fd; /* owned; blob is [offset, offset+length) of it; -1: not landed (no bytes) */
    uint64_t offset, length;
    char digest[IMG_DIGEST_MAX];  /* blob digest; verified/learned at index time */
    char diff_id[IMG_DIGEST_MAX]; /* from the config; verified at index time */
    char media_type[96];
    int compression;    /* IMG_COMP_*, learned at index time */
    uint64_t diff_size; /* learned at index time */
    char *created_by, *comment;
    int digest_known; /* digest came from a manifest and must match */
} img_layer;

/* Close the layer's file and free its history strings. */
void layer_clear(img_layer *l);

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

/* The OCI media type for a layer of compression c. */
const char *layer_media_type(int c);

/*
 * Write the header of a regular 0644 member of the given size to a tar being
 * written (an archive's manifest, config or layer member). PHT_ENOMEM, or
 * PHT_EIO with the reason in archive_error_string(a); the caller names the
 * archive.
 */
int layer_tar_file_header(struct archive *a, const char *name, uint64_t size);

/* ---- path safety (tarsafe.c) ----------------------------------------------- */
/*
 * Normalize an entry path: strips "./" and '/' runs, rejects absolute paths
 * and ".." (PHT_EUNSAFE) and names over max_name (PHT_ELIMIT). *out is
 * malloc'ed ("" for the root). why gets a static reason on failure.
 */
int tarsafe_path(const char *in, uint64_t max_name, char **out, const char **why);
/* 0 if the symlink at path with target stays inside the root, else PHT_EUNSAFE. */
int tarsafe_symlink(const char *path, const char *target, const char **why);
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
    char *link; /* symlink target / hard link target path, or NULL */
    int type;   /* enum pht_image_type */
    uint32_t mode;
    int64_t uid, gid, mtime;
    uint64_t size;
    int layer;        /* layer that holds the entry; -1: the image's view */
    uint64_t ordinal; /* header number inside that layer */
    int data_layer;   /* where the bytes are (a hard link: its target's) */
    uint64_t data_ordinal;
    int implicit; /* parent directory no layer named */
} img_entry;

typedef struct img_index {
    img_entry **v; /* sorted in walk order (pht_path_walk_cmp) */
    size_t n;
} img_index;

/* Build the index from all layers of img, bottom first. */
int index_build(pht_image *img, pht_error *err);
/*
 * Build the index from img's view alone (entries of layer -1): every entry
 * must be img->view_root or below it, else PHT_EFORMAT.
 */
int index_build_view(pht_image *img, pht_error *err);
void index_free(img_index *ix);
/* Position of path in the index or -1. */
long index_find(const img_index *ix, const char *path);

#endif
