/*
 * What the OCI layout transport (image_oci.c) and the layout's upkeep
 * (oci_layout.c: garbage collection, the commit's lock, plaintext left by a
 * pre-run) share. Not installed.
 */
#ifndef PHT_OCI_PRIVATE_H
#define PHT_OCI_PRIVATE_H

#include <stddef.h>

#include "pht/error.h"

#define REF_NAME "org.opencontainers.image.ref.name"
#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_CONFIG "application/vnd.oci.image.config.v1+json"

/* DIR/blobs/sha256/HEX for digest "sha256:HEX" (malloc'ed), or NULL without memory. */
char *oci_blob_path(const char *dir, const char *digest);

/* A small blob (manifest, config) read whole into *out (*len bytes) and checked against its digest.
 */
int oci_read_json_blob(const char *dir, const char *digest, char **out, size_t *len,
                       pht_error *err);

/* Whether media type mt is an image index (OCI or Docker's manifest list). */
int oci_is_index(const char *mt);

/* Write path atomically (a file beside it, fsync, rename) with text. */
int oci_write_small(const char *path, const char *text, pht_error *err);

/*
 * Remove the blobs of blobs/sha256 that no manifest of index.json reaches
 * (directly, through an image index, as config, layer or blob), like
 * `umoci gc`; *removed (may be NULL) counts them. Runs after the new
 * index.json is in place, so a failure here only leaves unreferenced blobs.
 */
int oci_gc(const char *dir, size_t *removed, pht_error *err);

/* Hold an exclusive lock on the layout directory in *fd: one commit (and its gc) at a time. */
int oci_lock_layout(const char *dir, int *fd, pht_error *err);

#endif
