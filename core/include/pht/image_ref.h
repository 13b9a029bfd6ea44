/*
 * libpht image references: the one grammar every image name is read in
 * (skopeo's transport syntax) and the transports libpht knows.
 *
 *   docker-archive:PATH[:NAME[:TAG]]   an image of a `docker save` tar
 *   docker-archive:PATH:@N             the N-th image of its manifest.json
 *   oci:DIR[:TAG]                      an image of an OCI image layout
 *   docker-daemon:NAME[:TAG]           an image of the local Docker engine
 *   docker-daemon:NAME@sha256:HEX      the same, by digest
 *   docker-daemon:sha256:HEX           the same, by image id
 *   docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX]   an image of a registry
 *
 * A NAME without a TAG means NAME:latest. A PATH or DIR holds no ':'. The
 * registry transport is parsed but cannot be opened yet.
 */
#ifndef PHT_IMAGE_REF_H
#define PHT_IMAGE_REF_H

#include <stddef.h>

#include "pht/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pht_image_ref pht_image_ref;

/*
 * A string without the prefix of a transport libpht knows (and not
 * docker://) is the name of an image in the Docker daemon: "busybox:latest"
 * reads as docker-daemon:busybox:latest, as the pht command takes its IMAGE
 * arguments.
 */
#define PHT_REF_BARE_DAEMON 1u

/*
 * Parse s (flags: 0 or PHT_REF_BARE_DAEMON) into a new *out; free it with
 * pht_image_ref_free. PHT_EINVAL quotes s and says what is wrong; an unknown
 * transport's message lists the transports libpht knows with their syntax.
 */
PHT_API int pht_image_ref_parse(const char *s, unsigned flags, pht_image_ref **out, pht_error *err);

/* NULL is fine. */
PHT_API void pht_image_ref_free(pht_image_ref *ref);

/* The transport's name: "docker-archive", "oci", "docker-daemon" or "docker". */
PHT_API const char *pht_image_ref_transport(const pht_image_ref *ref);

/* What follows "transport:", as written ("//HOST/REPO:TAG" for docker). */
PHT_API const char *pht_image_ref_location(const pht_image_ref *ref);

/* The archive file (docker-archive) or layout directory (oci); NULL for others. */
PHT_API const char *pht_image_ref_path(const pht_image_ref *ref);

/*
 * The repository: NAME of a docker-archive's NAME:TAG, the daemon's or the
 * registry's repository with its host when written ("localhost:5000/pht/train").
 * NULL for oci, for a docker-archive reference without NAME and for an image id.
 */
PHT_API const char *pht_image_ref_name(const pht_image_ref *ref);

/* The tag ("latest" for a NAME written without one), the oci TAG, or NULL. */
PHT_API const char *pht_image_ref_tag(const pht_image_ref *ref);

/* "sha256:<hex>" of NAME@sha256:HEX or of an image id; NULL otherwise. */
PHT_API const char *pht_image_ref_digest(const pht_image_ref *ref);

/* N of docker-archive:PATH:@N, or -1. */
PHT_API long pht_image_ref_index(const pht_image_ref *ref);

/* docker:// only: the registry's HOST[:PORT] ("docker.io" when REPO names none); else NULL. */
PHT_API const char *pht_image_ref_host(const pht_image_ref *ref);

/* The whole reference: s as given, with "docker-daemon:" in front of a bare name. */
PHT_API const char *pht_image_ref_string(const pht_image_ref *ref);

/*
 * A new *out naming image NAME:tag in the same archive, layout, daemon or
 * registry as ref (oci: DIR:tag). name may be NULL for ref's own repository;
 * a tag or digest on name is dropped, so an image's "repo:tag" can be passed
 * as is. PHT_EINVAL when ref has no repository and name is NULL (a
 * docker-archive reference without NAME, an image id) or the result does not
 * parse.
 */
PHT_API int pht_image_ref_with_tag(const pht_image_ref *ref, const char *name, const char *tag,
                                   pht_image_ref **out, pht_error *err);

/*
 * The transports libpht knows, i = 0, 1, ...: the name ("oci") and the
 * syntax for messages and help ("oci:DIR[:TAG]"). NULL past the last.
 */
PHT_API const char *pht_image_transport_name(size_t i);
PHT_API const char *pht_image_transport_syntax(size_t i);

#ifdef __cplusplus
}
#endif
#endif
