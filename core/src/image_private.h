/*
 * The image handle of libpht's image layer (image.c, image_writer.c,
 * image_config.c, and the transports through transport_private.h): a
 * pht_image holds its parsed reference, its transport, the manifest and
 * config text, the layers as blob ranges of open files, and the
 * merged-filesystem index. Not installed.
 *
 * A transport may open an image without its layers' bytes (docker-daemon:
 * the config and the diff_ids come from the engine) and land them on
 * demand: the merged tree below view_root as one pseudo-layer (view), which
 * the index then holds alone, or every layer.
 */
#ifndef PHT_IMAGE_PRIVATE_H
#define PHT_IMAGE_PRIVATE_H

#include <stddef.h>

#include "json_private.h"
#include "layer_private.h"
#include "pht/image.h"
#include "pht/image_ref.h"

#define IMG_JSON_MAX (16u << 20) /* manifest, config, index.json */
/*
 * Where a writer bound for a docker-archive (pht_image_writer_opts.dest)
 * starts its new layer in its file: room for the layer's member header, so
 * the archive's commit can build the archive around the layer.
 */
#define IMG_ARCHIVE_HEAD 512u

typedef struct img_transport img_transport;

/* How much of an image is landed: what its index covers, whether its layers have bytes. */
enum {
    IMG_LANDED_ALL = 0, /* every layer, indexed (what most transports land at open) */
    IMG_LANDED_NONE,    /* no layer bytes; the index is empty */
    IMG_LANDED_VIEW     /* the index holds view_root's tree, read from view; layers have no bytes */
};

struct pht_image {
    int refs;
    const img_transport *tp;
    pht_image_ref *ref; /* as opened */
    pht_image_opts opts;
    char *tmpdir;
    char *cache_dir;        /* opts.cache_dir's copy, or NULL */
    char *registry_strs[4]; /* copies of opts' registry strings (creds wiped at free) */
    char *docker_timeout;   /* opts.docker_timeout's copy, or NULL */
    char *manifest;
    char *config;
    size_t config_len;
    img_layer *layers;
    size_t nlayers;
    img_index index;
    int landed;                /* IMG_LANDED_* */
    const char *view_root;     /* the tree a view holds ("opt"), when landed is not ALL */
    img_layer view;            /* index entries of layer -1 live here; fd -1 when none */
    void *tpdata;              /* the transport's own state */
    struct img_behind *behind; /* the open's digest checks on threads (verify_behind), or NULL */
    /* where a finished reader of a stream left its layer: the next pht_image_open_file of a
       later entry of that layer goes on from there instead of from the layer's start */
    struct {
        struct archive *a; /* NULL: none */
        void *state;
        int layer, fd;
        uint64_t ordinal;
    } cursor;
};

/* ---- the open's digest checks (image_verify.c) ------------------------------------- */
/* Digest-check the layers need[] marks that are not verified yet (opts.verify_behind: the
   plain ones on a thread, waited for by img_verify_wait). */
int img_verify_used(pht_image *img, const unsigned char *need, pht_error *err);
/* Start hashing layer i's blob on a thread of its own now (a run's layer, before its scan: see
   index_build); its verdict comes with img_verify_wait. Where no thread starts, the open's own
   check (img_verify_used) does it later. */
void img_verify_early(pht_image *img, size_t i);
/* Wait for the threads, if any: 0 or the first failing one's verdict (the same on every call). */
int img_verify_wait(pht_image *img, pht_error *err);
/* Stop the threads without a verdict and free them (pht_image_free). */
void img_verify_end(pht_image *img);

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
    int drop_plaintext;    /* docker-archive: do not keep other images marked by pre-run */
    pht_image *base;       /* the image the leading layers come from (landed on demand) */
    const pht_image *src;  /* the image the writer started from */
    int retag;             /* config and layers are src's, unchanged */
    /* the writer's new layer, whose file nothing reads after this commit: a transport that
       sends it may give back the pages and blocks of what it has sent (NULL: none) */
    const img_layer *spent;
} img_plan;

void img_retain(pht_image *img);

/* Parse the config's history into layers[i].created_by/comment. */
int img_apply_history(pht_image *img, pht_error *err);

/*
 * Land what a request needs (want: IMG_LANDED_VIEW or IMG_LANDED_ALL); 0 at
 * once when it is there. A transport that cannot land it says why.
 */
int img_land(pht_image *img, int want, pht_error *err);

/* The layer an index entry names (data_layer, layer): -1 is the view. */
const img_layer *img_layer_at(const pht_image *img, int i);

/*
 * Read len bytes at off of the file a reader reads in place (pht_image_in_place),
 * without moving it; PHT_EINVAL (err may be NULL) for a reader of a stream.
 */
int img_reader_pread(pht_image_reader *r, void *buf, size_t len, uint64_t off, pht_error *err);

/*
 * Open the file whose bytes an entry of a view holds (img_entry.source), checked to be a
 * regular file of the entry's size: the descriptor, or minus the PHT_E* code with err set.
 */
int img_open_source(const pht_image *img, const img_entry *e, pht_error *err);

/* 1 if an image config's history marks a layer (not an empty one) PHT_PRE_RUN_MARK. */
int img_config_pre_run(const cJSON *cfg);

/* ---- the runtime config a writer sets (image_config.c) -------------------- */
/*
 * Apply spec to *run, the "config" object of the new image (created from
 * src_config's on first use). Validates spec first: on failure *run is unchanged.
 */
int img_runcfg_apply(cJSON **run, const char *src_config, const pht_image_config_spec *spec,
                     pht_error *err);
/* Replace cfg's "config" object by a copy of run. */
int img_runcfg_put(cJSON *cfg, const cJSON *run, pht_error *err);

#endif
