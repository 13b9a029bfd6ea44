/*
 * Wrap a layer blob into a one-image docker-archive, as `docker save` lays
 * it out (<hex>.tar layer, <hex>.json config, manifest.json), with the
 * config's diff_id computed from the blob's decompressed content so that the
 * image opens and the layer reaches libpht's index. Used by the hostile-image
 * generator and the fuzz harnesses; not part of the library.
 */
#ifndef PHT_TOOLS_IMAGE_WRAP_H
#define PHT_TOOLS_IMAGE_WRAP_H

#include <stddef.h>

/* "sha256:<hex>" of the decompressed blob (any libarchive filter), at most cap bytes. */
int wrap_diff_id(const void *blob, size_t n, size_t cap, char out[80]);

/* Member names (without .tar / .json) when the caller gives the manifest. */
#define WRAP_LAYER_MEMBER "layer"
#define WRAP_CONFIG_MEMBER "config"

/*
 * Write the archive at out. config_json / manifest_json NULL: the default
 * config (diff_ids = [diff_id]) and manifest ([{Config, RepoTags: [tag],
 * Layers}]), members named by their sha256 as `docker save` names them. Given
 * texts are written as they are; with a given manifest the members are
 * "layer.tar" and "config.json". 0 or -1 with a message on stderr.
 */
int wrap_write_archive(const char *out, const void *blob, size_t n, const char *diff_id,
                       const char *tag, const char *config_json, const char *manifest_json);

/*
 * Write an OCI image layout at dir (created) holding one image named
 * ref_name: the blob as its one layer (media type from its magic: gzip,
 * zstd, else plain tar), a config with diff_ids = [diff_id], its manifest
 * and index.json. 0 or -1.
 */
int wrap_write_oci(const char *dir, const void *blob, size_t n, const char *diff_id,
                   const char *ref_name);

#endif
