/*
 * What the docker:// transport's two files share (image_registry.c: open,
 * land, close; image_registry_push.c: the commit's push): the media types,
 * the transport's state, and the small helpers and cache files both use.
 * Not installed.
 */
#ifndef PHT_IMAGE_REGISTRY_PRIVATE_H
#define PHT_IMAGE_REGISTRY_PRIVATE_H

#include <stdint.h>

#include "json_private.h"
#include "pht/registry.h"
#include "transport_private.h"

#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_DOCKER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define MT_DOCKER_TAR "application/vnd.docker.image.rootfs.diff.tar"
#define BLOB_SUBDIR "registry-blobs"

typedef struct rg_state {
    pht_registry *reg;
    char *host, *repo;
    char *blobdir;   /* where layer blobs land */
    int own_blobdir; /* a temporary directory removed at close */
    int docker;      /* the manifest was Docker schema 2 */
    int failed;      /* a landing failed: its error is returned again */
    pht_error why;
} rg_state;
/* PHT_ENOMEM, "out of memory". */
int rg_oom(pht_error *err);
/* The registry options of an image's options. */
void rg_reg_opts(const pht_image_opts *io, pht_registry_options *o);
/*
 * HOST and REPO of a docker:// name ("HOST/REPO", or "REPO" on docker.io,
 * where a one-part name is library/NAME), malloc'ed.
 */
int rg_split_name(const char *host, const char *name, char **h, char **repo, pht_error *err);
/* The string member k of o, or NULL. */
const char *rg_jstr(const cJSON *o, const char *k);

/*
 * The cache dir's memory of pushes (both best effort: a cache that cannot be
 * read or written only costs an upload): the gzip blob a plain tar with this
 * diff_id became (1 with digest and size, else 0), remembered after a push;
 * and the repositories of a registry known to hold a blob, one "HOST REPO"
 * line each (malloc'ed text, NULL when none), added to after a push.
 */
int rg_gz_known(const char *cache_dir, const char *diff_id, char *digest, uint64_t *size);
void rg_gz_remember(const char *cache_dir, const char *diff_id, const char *digest, uint64_t size);
char *rg_loc_read(const char *cache_dir, const char *digest);
void rg_loc_add(const char *cache_dir, const char *digest, const char *host, const char *repo);

/* The transport's commit (img_transport.commit): a push (image_registry_push.c). */
int rg_commit(const char *where, const img_plan *plan, pht_error *err);

#endif
