/*
 * Transports of libpht's image layer: one file each (image_archive.c,
 * image_oci.c with oci_layout.c, image_daemon.c, image_registry.c,
 * image_oci_archive.c) behind one vtable, found through the table in
 * image_ref.c. A transport opens an image by landing its layers in files (so
 * every layer is a byte range of an open file), or lands them later through
 * land (image_private.h: IMG_LANDED_*), and commits a plan atomically. Not
 * installed.
 */
#ifndef PHT_TRANSPORT_PRIVATE_H
#define PHT_TRANSPORT_PRIVATE_H

#include "image_private.h"

struct img_transport {
    /*
     * Fill manifest/config/layers (unindexed) of the image ref names; or, with
     * img->landed set to IMG_LANDED_NONE, only manifest, config and the layers'
     * diff_ids (fd -1), leaving the bytes to land.
     */
    int (*open)(pht_image *img, const pht_image_ref *ref, pht_error *err);
    /* Land the view (index it) or every layer (and index them all); NULL if open lands all. */
    int (*land)(pht_image *img, int want, pht_error *err);
    /*
     * The bytes of layers first.. (digest-checked, fd set) without indexing
     * them, for a commit that only sends them; NULL: land every layer instead.
     */
    int (*fetch)(pht_image *img, size_t first, pht_error *err);
    /*
     * Learn layers [from, to)'s outside (the master rule, layer_note_outside) without landing
     * them, where the transport can read their entries cheaply: 0; 1 if it cannot here (nothing
     * learned); PHT_E* with err set. NULL: land them instead.
     */
    int (*scan_above)(pht_image *img, size_t from, size_t to, pht_error *err);
    void (*close)(pht_image *img);
    /* Where a commit to ref writes and the tag it names there (both malloc'ed; tag may be NULL). */
    int (*dest_tag)(const pht_image_ref *ref, char **where, char **tag, pht_error *err);
    /* Write plan to where atomically. */
    int (*commit)(const char *where, const img_plan *plan, pht_error *err);
    /*
     * For a commit to where without a tag: when where is src's own archive or
     * layout, the names src has there (*names: malloc'ed strings) and the
     * digest of its entry (id, IMG_DIGEST_MAX); else *n = 0 and id "". May be NULL.
     */
    int (*own_names)(const pht_image *src, const char *where, char ***names, size_t *n, char *id,
                     pht_error *err);
    /*
     * 1: commit lands plan->base itself when it must send a base layer the
     * destination lacks, so a writer from another transport need not land
     * every base layer first.
     */
    int lands_base;
};

extern const img_transport img_docker_archive; /* image_archive.c */
extern const img_transport img_oci;            /* image_oci.c */
extern const img_transport img_docker_daemon;  /* image_daemon.c */
extern const img_transport img_registry;       /* image_registry.c */
extern const img_transport img_oci_archive;    /* image_oci_archive.c */

/* ---- a Docker engine's overlay2 layer store (daemon_store.c) ----------------------- */
/*
 * The engine's data root from an image inspect's GraphDriver object (malloc'ed), or NULL when
 * the driver is not overlay2, the path is not one, or PHT_DOCKER_STORE=0.
 */
char *daemon_store_root(const cJSON *graph);
/* scan_above for docker-daemon images whose store root is root (may be NULL: 1). */
int daemon_store_scan(pht_image *img, const char *root, size_t from, size_t to, pht_error *err);
/* A regular file of a view read from the engine's store: its path there holds its bytes. */
typedef struct daemon_store_src {
    char *name; /* in the view: "opt/..." */
    char *full; /* the file in the store's layer directory */
    uint64_t size;
} daemon_store_src;
/*
 * The merged /opt of img as the engine's store holds it, written to fd as the tar of its
 * entries (entries "opt/..."), every regular file with no data: *srcs (n of them, freed with
 * daemon_store_srcs_free) says where each one's bytes lie, read there later (img_entry.source),
 * so no byte of /opt is copied: 0; 1 when the store cannot be read here (the caller asks the
 * engine); PHT_ENOTFOUND when the image has no /opt; PHT_E* with err set. fd holds partial
 * bytes after anything but 0.
 */
int daemon_store_view(const pht_image *img, const char *root, int fd, daemon_store_src **srcs,
                      size_t *n, pht_error *err);
void daemon_store_srcs_free(daemon_store_src *s, size_t n);

/* ---- a docker-daemon image from the engine's answers (daemon_config.c) -------------- */
/*
 * The config's history from GET /images/{id}/history h (newest first) for an image of nlayers
 * layers, oldest first, with empty_layer where an entry has none; NULL when the answer does
 * not tell that for certain (read the config's bytes then) or out of memory.
 */
cJSON *daemon_history(const cJSON *h, size_t nlayers);
/* img->layers from the inspect's RootFS.Layers diffs, without bytes (plain tars, as saved). */
int daemon_layers(pht_image *img, const cJSON *diffs, pht_error *err);
/*
 * The image config rebuilt from the inspect answer ij, the history (taken over) and the
 * diff_ids, as malloc'ed JSON text; NULL out of memory. Not the bytes the engine holds.
 */
char *daemon_config(const cJSON *ij, cJSON *history, const cJSON *diffs);
/* The manifest.json entry `docker save` would write for image id with tags; NULL out of memory. */
char *daemon_manifest(const char *id, const cJSON *tags, const pht_image *img);

/* ---- the docker load stream (daemon_load.c) --------------------------------------- */
typedef struct daemon_load daemon_load;
/* The load stream of plan p: its tags, its first `known` layers (the engine has them) not sent. */
int daemon_load_new(const img_plan *p, const char *const *tags, size_t ntags, size_t known,
                    daemon_load **out, pht_error *err);
/* The next bytes of the stream (a pht_docker_image_load body reader; ud is the daemon_load). */
int daemon_load_read(void *ud, void *buf, size_t cap, size_t *got, pht_error *err);
void daemon_load_free(daemon_load *g);

/* ---- references (image_ref.c) ------------------------------------------------ */
/* The transport of ref; NULL and PHT_EINVAL when libpht cannot open it yet. */
const img_transport *img_ref_transport(const pht_image_ref *ref, pht_error *err);
/* 1 if a repository name ends in ":TAG" (a ':' after its last '/'). */
int img_ref_has_tag(const char *name);
/*
 * What an engine or a RepoTags entry calls ref's image: NAME:TAG,
 * NAME[:TAG]@DIGEST, or the image id (malloc'ed). PHT_EINVAL if ref names none.
 */
int img_ref_image_name(const pht_image_ref *ref, char **out, pht_error *err);

#endif
