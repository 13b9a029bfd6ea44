/*
 * libpht's image registry client: the OCI distribution API (Docker Registry
 * HTTP API V2) over pht_http and libcurl, as Harbor and Debian's
 * docker-registry speak it.
 *
 * A pht_registry talks to one registry ("HOST[:PORT]"). It authenticates the
 * way docker and skopeo do: anonymous, HTTP basic, or bearer tokens fetched
 * from the realm a `WWW-Authenticate: Bearer` challenge names (cached per
 * scope, fetched again when they expire or the registry refuses them).
 * Credentials come from, in this order: the creds option (skopeo's
 * --creds), the auth_file option, $REGISTRY_AUTH_FILE (each of those two
 * alone, as skopeo's --authfile), else $XDG_RUNTIME_DIR/containers/auth.json,
 * $XDG_CONFIG_HOME/containers/auth.json (~/.config/…), $DOCKER_CONFIG/
 * config.json (~/.docker/config.json); in a file, the entry for
 * HOST/REPO, then its parent namespaces, then HOST. Error messages name the
 * registry, the repository and where the credentials came from, never a
 * password, token or auth file content.
 *
 * Blobs always stream: downloads go to a sink while their sha256 and size
 * are checked (a mismatch or a short blob fails the call, after the sink saw
 * the bytes: the caller keeps nothing until the call returned 0, as
 * pht_registry_get_blob_file does), uploads come from a source. Transient
 * failures (a broken connection, 429, 5xx) are retried with backoff, at most
 * max_tries times; a download resumes where it broke off. Redirects of
 * GET/HEAD are followed by the client itself, without the Authorization
 * header when they lead to another host.
 *
 * Handles are not thread-safe; use one per thread.
 */
#ifndef PHT_REGISTRY_H
#define PHT_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "pht/error.h"
#include "pht/http.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Room for "sha256:" + 64 hex digits + NUL. */
#define PHT_REGISTRY_DIGEST_MAX 80
/* Room for a manifest media type. */
#define PHT_REGISTRY_MEDIA_TYPE_MAX 128

/* The media types a manifest GET accepts. */
#define PHT_MEDIA_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define PHT_MEDIA_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define PHT_MEDIA_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define PHT_MEDIA_OCI_INDEX "application/vnd.oci.image.index.v1+json"

typedef struct pht_registry pht_registry;

typedef struct pht_registry_options {
    const char *creds;       /* "USER:PASS" for every repository (--creds), or NULL */
    const char *auth_file;   /* an auth.json or Docker config.json read alone (--authfile);
                                NULL: $REGISTRY_AUTH_FILE, else the default files */
    int anonymous;           /* 1: never send credentials (--no-creds) */
    const char *cert_dir;    /* a directory of *.crt CAs trusted besides the system's and
                                X.cert with X.key client pairs (--cert-dir), or NULL */
    int tls_verify;          /* 1: verify the registry's certificate, https only (the
                                default); 0: verify nothing, and fall back to plain http
                                when https does not answer (--tls-verify=false) */
    size_t max_manifest;     /* manifest size cap; 0: 4 MiB */
    int max_tries;           /* tries per request for transient failures; 0: 3 */
    unsigned retry_delay_ms; /* first backoff, doubled each try; 0: 200 ms */
} pht_registry_options;

/* The defaults: verify TLS, credentials from the usual files, 3 tries. */
PHT_API void pht_registry_options_init(pht_registry_options *o);

/*
 * A client for the registry at endpoint: "HOST[:PORT]" (https; http as a
 * fallback only without tls_verify), or "https://HOST[:PORT]", or
 * "http://HOST[:PORT]" (needs tls_verify 0). "docker.io" means Docker Hub.
 * o may be NULL (the defaults); its strings are copied. Reads the cert dir
 * now (PHT_EIO, PHT_EKEY naming the file); contacts nothing yet. Free *out
 * with pht_registry_free.
 */
PHT_API int pht_registry_open(pht_registry **out, const char *endpoint,
                              const pht_registry_options *o, pht_error *err);

/* Free the client, wiping credentials and tokens. NULL is fine. */
PHT_API void pht_registry_free(pht_registry *r);

/* "HOST[:PORT]" as given to pht_registry_open, without a scheme. */
PHT_API const char *pht_registry_host(const pht_registry *r);

/*
 * Which credentials the client uses for repo: the user name ("" when
 * anonymous) into user, and where they came from ("--creds", "auth file
 * PATH (entry KEY)", "anonymous: …") into source. Reads the auth files
 * (PHT_EFORMAT naming a malformed one). Never returns the password.
 */
PHT_API int pht_registry_credentials(pht_registry *r, const char *repo, char *user, size_t ucap,
                                     char *source, size_t scap, pht_error *err);

/*
 * GET /v2/: the registry answers, and how it wants to be authenticated is
 * learnt (every other call pings first when it has not been done).
 */
PHT_API int pht_registry_ping(pht_registry *r, pht_error *err);

/* A manifest as the registry stored it. */
typedef struct pht_registry_manifest {
    char *data; /* the exact bytes (NUL-terminated), or NULL after a HEAD */
    size_t len; /* their length (after a HEAD: Content-Length) */
    char media_type[PHT_REGISTRY_MEDIA_TYPE_MAX];
    char digest[PHT_REGISTRY_DIGEST_MAX]; /* "sha256:…" */
} pht_registry_manifest;

/*
 * GET the manifest repo:ref, where ref is a tag or "sha256:…": Docker schema
 * 2, manifest list, OCI manifest or index. Its sha256 must equal ref when ref
 * is a digest, and the Docker-Content-Digest header when the registry sends
 * one (PHT_EVERIFY otherwise); PHT_ELIMIT above max_manifest; PHT_ENOTFOUND
 * for an unknown manifest or repository. The media type is Content-Type, or
 * the document's mediaType when Content-Type says nothing better. Release m
 * with pht_registry_manifest_clear (also after a failure).
 */
PHT_API int pht_registry_get_manifest(pht_registry *r, const char *repo, const char *ref,
                                      pht_registry_manifest *m, pht_error *err);

/*
 * HEAD the manifest: digest, media type and length, no data. PHT_ENOTFOUND
 * when there is none. The digest is the registry's (Docker-Content-Digest),
 * or ref itself when ref is a digest.
 */
PHT_API int pht_registry_head_manifest(pht_registry *r, const char *repo, const char *ref,
                                       pht_registry_manifest *m, pht_error *err);

/* Free m's data and zero it. NULL is fine. */
PHT_API void pht_registry_manifest_clear(pht_registry_manifest *m);

/*
 * PUT len bytes of a manifest of media_type as repo:ref (a tag, or the
 * manifest's own digest). Its digest goes into digest
 * (PHT_REGISTRY_DIGEST_MAX bytes); PHT_EVERIFY when the registry reports
 * another one. Every blob it names must be in the repository already.
 */
PHT_API int pht_registry_put_manifest(pht_registry *r, const char *repo, const char *ref,
                                      const char *media_type, const void *data, size_t len,
                                      char *digest, pht_error *err);

/*
 * HEAD the blob: *exists 1 (and *size its length, when size is not NULL)
 * or 0. Other answers fail.
 */
PHT_API int pht_registry_blob_exists(pht_registry *r, const char *repo, const char *digest,
                                     int *exists, int64_t *size, pht_error *err);

/*
 * GET the blob digest ("sha256:…") of repo into sink, size bytes (-1:
 * unknown). Fails with PHT_ELIMIT as soon as more than size bytes come,
 * PHT_EVERIFY when fewer came or their sha256 is not digest, after up to
 * max_tries attempts for a broken connection (each resuming with a Range
 * request). The sink has then seen bytes the caller must discard.
 */
PHT_API int pht_registry_get_blob(pht_registry *r, const char *repo, const char *digest,
                                  int64_t size, pht_http_sink sink, void *ud, pht_error *err);

/*
 * pht_registry_get_blob into the file path (mode 0600), written as a
 * temporary file beside it and renamed into place only when the blob
 * verified; on failure nothing is left at path (an existing file there is
 * kept as it was).
 */
PHT_API int pht_registry_get_blob_file(pht_registry *r, const char *repo, const char *digest,
                                       int64_t size, const char *path, pht_error *err);

/*
 * Ask the registry to mount digest from the repository from into repo (a
 * cross-repository blob mount, how Harbor moves a train from one project to
 * the next without a download): *mounted 1 when it did (201). When it
 * answered with an upload session instead (202: it does not have the blob,
 * or the credentials may not read from), the session is cancelled and
 * *mounted is 0.
 */
PHT_API int pht_registry_mount_blob(pht_registry *r, const char *repo, const char *digest,
                                    const char *from, int *mounted, pht_error *err);

/* Back to the first byte of an upload's source, for a retry. */
typedef int (*pht_registry_rewind)(void *ud, pht_error *err);

/* What pht_registry_upload_blob sends. */
typedef struct pht_registry_upload {
    const char *digest;         /* "sha256:…" the bytes must have, or NULL: learnt from them */
    int64_t size;               /* their count, or -1: unknown */
    pht_http_source read;       /* the bytes */
    pht_registry_rewind rewind; /* NULL: a broken upload is not retried */
    void *ud;                   /* for read and rewind */
    const char *mount_from;     /* a repository of this registry that may hold the blob
                                   (needs digest), or NULL */
} pht_registry_upload;

/* How the blob got there. */
enum pht_registry_how { PHT_REGISTRY_UPLOADED = 1, PHT_REGISTRY_MOUNTED = 2 };

/* An upload with every field zero and size -1. */
PHT_API void pht_registry_upload_init(pht_registry_upload *up);

/*
 * Put a blob into repo: mounted from up->mount_from when the registry can
 * (*how = PHT_REGISTRY_MOUNTED), else streamed from up->read (POST, one
 * streamed PATCH, PUT ?digest=; *how = PHT_REGISTRY_UPLOADED). The digest
 * goes into digest (PHT_REGISTRY_DIGEST_MAX bytes). When the bytes do not
 * have up->digest or up->size (PHT_EVERIFY), the upload is cancelled before
 * it completes, so the registry never holds the wrong blob under that name.
 */
PHT_API int pht_registry_upload_blob(pht_registry *r, const char *repo,
                                     const pht_registry_upload *up, char *digest, int *how,
                                     pht_error *err);

/*
 * pht_registry_upload_blob from the regular file at path (retried from its
 * start when the connection breaks). digest and mount_from may be NULL.
 */
PHT_API int pht_registry_upload_file(pht_registry *r, const char *repo, const char *path,
                                     const char *digest, const char *mount_from, char *digest_out,
                                     int *how, pht_error *err);

#ifdef __cplusplus
}
#endif
#endif
