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
    int verified;     /* its bytes were hashed and matched digest and diff_id (but diff_pending) */
    /* a run's layer (above the layer holding the train's config, scanned under verify_behind):
       the index build sets defer_hash, and its scan then only decompresses and parses it; the
       blob digest is checked beside the steps (image_verify.c), the diff_id only by a
       layer_verify, which a commit keeping the layer and a master check run (diff_pending until
       then) */
    int defer_hash, diff_pending;
    int hashing_behind; /* its blob is being hashed on such a thread, the verdict not taken yet */
    int holds_opt; /* it names /opt or something below it, or deletes /opt (learned at index time)
                    */
    /* the first entry a layer above a master may not hold (tarsafe_master), learned by every
       scan: the path it adds, changes or deletes (malloc'ed, "" for the root) and why; NULL: none
     */
    char *outside;
    const char *outside_why;
    int outside_dir;  /* outside is only a directory restated: a later finding replaces it */
    int scanned;      /* a scan of its tar saw every entry: outside (above) is known */
    int holds_config; /* an entry names /opt/train_config.json (or deletes it) */
    /* during a scan of a plain tar: where the header passed to the callback starts, and (after
       the scan) where the end-of-archive starts; IMG_NO_OFFSET for a compressed layer */
    uint64_t scan_pos, scan_end;
} img_layer;

#define IMG_NO_OFFSET UINT64_MAX

/*
 * The directory of the protocol (PROTOCOL.md §1) as an index path: the layers
 * that hold or delete it are the ones an open digest-checks by default.
 */
#define IMG_PROTOCOL_DIR "opt"

/* Close the layer's file and free its history strings. */
void layer_clear(img_layer *l);

/* Report n bytes moved to the progress function of o (pht_progress_fn), if any. */
static inline void img_progress(const pht_image_opts *o, uint64_t n)
{
    if (o != NULL && o->progress != NULL && n > 0) o->progress(o->progress_ud, n);
}

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
 * The indexing pass: reads every header of the layer once, enforcing caps,
 * and for each entry calls cb (may be NULL) with the entry and its ordinal;
 * learns compression, diff_size and holds_opt. A compressed layer is read
 * whole, so both its streams are hashed and checked on the way (and its
 * headers cached, see below), unless the index cache has its headers and
 * o->verify_layers is 0; a plain tar skips file data by offset and is hashed
 * only with o->verify_layers. Hashed and matched: verified is set; an
 * unhashed plain tar's digest is taken to be its declared diff_id.
 * PHT_EVERIFY when a hashed layer does not match.
 */
typedef int (*layer_entry_cb)(void *ud, struct archive_entry *e, uint64_t ordinal, pht_error *err);
int layer_scan(img_layer *l, const pht_image_opts *o, layer_entry_cb cb, void *ud, pht_error *err);
/* Hash a scanned layer whose digest or diff_id is not verified yet (diff_pending) and check it
   (a full scan, both streams): PHT_EVERIFY on a mismatch. */
int layer_verify(img_layer *l, const pht_image_opts *o, pht_error *err);
/*
 * The SHA-256 of a plain layer's blob, its bytes read whole (no tar parsing: its headers were
 * scanned already), into dg; PHT_EINTR once *stop (may be NULL) is set. Any thread; l is only
 * read. layer_check_plain then compares dg with what the manifest and config declare, as a
 * verifying scan would (the layer is verified after).
 */
int layer_hash_blob(const img_layer *l, const int *stop, char *dg, pht_error *err);
int layer_check_plain(img_layer *l, const char *dg, pht_error *err);
/* The same for a compressed layer: dg is its blob's digest, so only the digest is compared (the
   layer is verified after; a diff_id its scan left pending stays so). */
int layer_check_blob(img_layer *l, const char *dg, pht_error *err);

/* ---- the index cache (layer_cache.c) ---------------------------------------- */
/*
 * The headers of a verified compressed layer that names nothing under /opt,
 * kept in o->cache_dir by its blob digest (layers with a declared digest
 * only). Nothing here fails an open: a cache that cannot be used is a miss.
 */
typedef struct layer_cache_rec layer_cache_rec;
typedef struct layer_cache_rd layer_cache_rd;
/* Start recording l's headers, in tar order; NULL when there is no cache to fill. */
layer_cache_rec *layer_cache_begin(const img_layer *l, const pht_image_opts *o);
void layer_cache_add(layer_cache_rec *r, struct archive_entry *e);
/* Finish: with keep (l was verified) the record becomes l's entry, else it goes. NULL is fine. */
void layer_cache_end(layer_cache_rec *r, const img_layer *l, int keep);
/* The cached headers of l's blob, or NULL on a miss. */
layer_cache_rd *layer_cache_open(const img_layer *l, const pht_image_opts *o);
/* The next header into e: 1, 0 at a well-formed end (l's diff_id, every line read), -1 if
 * malformed. */
int layer_cache_next(layer_cache_rd *r, struct archive_entry *e);
/* The layer's decompressed size, once layer_cache_next returned 0. */
uint64_t layer_cache_diff_size(const layer_cache_rd *r);
void layer_cache_close(layer_cache_rd *r);

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
/*
 * 1 if the entry name in (one tarsafe_path accepted) is the top-level
 * directory dir, lies below it, or deletes it in lower layers: ".wh.DIR" or
 * the root's opaque marker.
 */
int tarsafe_touches(const char *in, const char *dir);
/* 1 if the entry name in is /opt/train_config.json or its whiteout, else 0. */
int tarsafe_names_config(const char *in);
/*
 * Whether entry e (whose name tarsafe_path accepted) may lie in a layer above
 * a master image (pht_image_check_master): 0 if it may; 1 if not, or 2 if
 * not but it is only a directory restated (a weaker finding: a later entry
 * below it tells more), with *path (malloc'ed: the path it adds, changes or
 * deletes, "" for the root) and *why (static) set; PHT_ENOMEM. Only the train's paths under /opt
 * may change there, and nothing anywhere may be a device, FIFO, socket, setuid or setgid file, or a
 * link leaving /opt.
 */
int tarsafe_master(struct archive_entry *e, char **path, const char **why);
/* Learn from entry e what l->outside keeps: the first entry tarsafe_master refuses (a
   directory restated only until a stronger finding). 0 or PHT_ENOMEM. */
int layer_note_outside(img_layer *l, struct archive_entry *e, pht_error *err);
/* Forget what l->outside holds. */
void layer_forget_outside(img_layer *l);
/* Format "layer sha256:ab12…: entry "x": why" into err. */
int tarsafe_fail(pht_error *err, int code, const img_layer *l, const char *entry, const char *fmt,
                 ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* ---- the image writer's new layer (layer_sink.c) ------------------------------ */
typedef struct layer_sink layer_sink;
/*
 * A sink for the bytes of a new layer: written at fd's file position and fed to sha, inline
 * while the layer is small, on a thread of the sink's own past that (the bytes are copied; a
 * failure there is returned by a later put or by finish). flush_behind: start the writeback of
 * what is written as it goes, for a file a commit will fsync.
 */
int layer_sink_new(layer_sink **out, int fd, pht_hash *sha, int flush_behind, pht_error *err);
int layer_sink_put(layer_sink *s, const void *p, size_t n, pht_error *err);
/* Wait until every byte put is written and hashed: 0 or the first failure. */
int layer_sink_finish(layer_sink *s, pht_error *err);
/* Stop (what is not written yet is dropped) and free; NULL is fine. */
void layer_sink_free(layer_sink *s);

/* ---- merged filesystem index (layer_index.c) ------------------------------- */
typedef struct img_entry {
    char *path; /* normalized, "" never stored */
    size_t plen;
    char *link; /* symlink target / hard link target path, or NULL */
    int type;   /* enum pht_image_type */
    uint32_t mode;
    int64_t uid, gid, mtime;
    uint64_t size;
    int layer;        /* layer that holds the entry; -1: the image's view */
    uint64_t ordinal; /* header number inside that layer */
    int data_layer;   /* where the bytes are (a hard link: its target's) */
    uint64_t data_ordinal;
    /* where the bytes start in the data layer's blob, when it is a plain tar: the file can be
       read with pread; IMG_NO_OFFSET otherwise */
    uint64_t data_offset;
    /* a view's regular file whose bytes are this file (the engine's store: daemon_store_view),
       read from there; NULL otherwise */
    char *source;
} img_entry;

typedef struct img_index {
    img_entry **v; /* the entries layers named, sorted in walk order (pht_path_walk_cmp) */
    size_t n;
    img_entry implicit; /* the parent directory index_lookup found last */
} img_index;

/*
 * Build the index from all layers of img, bottom first. With defer, a compressed layer above the
 * one holding the train's config whose blob digest the manifest declares (a run's layer) is
 * scanned without hashing (img_layer.defer_hash): the caller checks it behind (verify_behind).
 */
int index_build(pht_image *img, int defer, pht_error *err);
/*
 * Build the index from img's view alone (entries of layer -1): every entry
 * must be img->view_root or below it, else PHT_EFORMAT.
 */
int index_build_view(pht_image *img, pht_error *err);
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

#endif
