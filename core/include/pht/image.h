/*
 * libpht images: read and write container images named by reference
 * (pht/image_ref.h has the grammar):
 *
 *   docker-archive:PATH[:NAME[:TAG]|:@N]
 *       the `docker save` tar (several images/tags; without NAME:TAG the only
 *       image, or the train beside its own REPO:base; @N: the Nth image)
 *   oci:DIR[:TAG]
 *       an OCI image layout directory
 *   oci-archive:PATH[:TAG]
 *       an OCI image layout in a tar (skopeo's oci-archive:): unpacked into
 *       a private temporary directory to be read; a commit repacks it and
 *       renames it over PATH
 *   docker-daemon:NAME[:TAG|@sha256:HEX]
 *       an image in the Docker engine at $DOCKER_HOST (Engine API over its socket)
 *   docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX]
 *       an image in a registry (OCI distribution API): an open fetches the
 *       manifest and config, a layer blob lands (digest-checked) when a read
 *       first needs it; a commit sends only the blobs the registry lacks
 *       (HEAD checks, cross-repository mounts)
 *
 * An image handle holds the manifest, the config and an index of the merged
 * filesystem of all layers (whiteouts and opaque directories applied), built
 * in one streaming pass per layer at open. File content is read by re-opening
 * the layer stream on demand; no layer or file is ever held whole in memory.
 * Layers may be plain tar, gzip or zstd.
 *
 * A writer builds a new image from base layers (all or the first N layers of
 * the image, or the layers of another image) plus one new layer of streamed
 * entries, and commits it atomically (temporary file beside the target, fsync,
 * rename). Hostile layers fail with PHT_EUNSAFE (traversal, absolute paths,
 * escaping links) or PHT_ELIMIT (caps on names, entries and sizes), naming the
 * layer digest and the entry.
 *
 * Handles are not thread-safe; use one handle per thread.
 */
#ifndef PHT_IMAGE_H
#define PHT_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "pht/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pht_image pht_image;
typedef struct pht_image_reader pht_image_reader;
typedef struct pht_image_writer pht_image_writer;
typedef struct pht_image_stream pht_image_stream;

/*
 * Progress of the long calls: fn(ud, bytes) is called on the calling thread,
 * during the call, with each number of bytes moved: read from a layer by an
 * open (or sent by the daemon as a docker-daemon image lands, a registry
 * blob once downloaded), written to files by an extract, put into a
 * writer's new layer, or written to the destination by a commit or uploaded
 * by a push (a copy the kernel makes counts per piece of up to 32 MiB). At
 * most once per chunk, so it must be cheap; it must not call into the image
 * or writer that reports.
 */
typedef void (*pht_progress_fn)(void *ud, uint64_t bytes);

/*
 * Caps against hostile layers, the directory for temporary files, and how
 * many layers an open digest-checks. Every header of every layer is checked
 * whatever verify_layers says; by default the open hashes only the layers
 * whose bytes it reads (those that hold or delete /opt, those an /opt hard
 * link reads) and compressed ones it must decompress to list (not those
 * whose headers cache_dir holds); verify_layers hashes every layer.
 */
typedef struct pht_image_opts {
    const char *tmpdir;   /* NULL: $TMPDIR, else /tmp */
    uint64_t max_entries; /* entries per layer, members of an archive, entries an extract writes */
    uint64_t max_entry_bytes; /* size of one entry */
    uint64_t max_layer_bytes; /* decompressed size of one layer */
    uint64_t max_name;        /* length of an entry path in bytes */
    uint64_t max_path_bytes;  /* paths and link targets the index holds at once; 0: no cap */
    int verify_layers;        /* 1: check every layer's digest and diff_id at open */
    const char *cache_dir;    /* index cache of verified compressed layers; NULL: none */
    /* docker:// (doc/registry.md): how the registry is reached; NULL/0 are the defaults */
    const char *registry_creds;     /* "USER:PASS" for every repository (--creds); wiped */
    const char *registry_auth_file; /* an auth.json read alone (--authfile) */
    const char *registry_cert_dir;  /* extra CAs and client pairs (--cert-dir) */
    int registry_tls_insecure;      /* 1: --tls-verify=false (also allows plain http) */
    const char *platform; /* "OS/ARCH[/VARIANT]" an image index resolves to; NULL: linux/amd64 */
    const char
        *docker_timeout;      /* docker-daemon: limits of the Engine calls, as
                                 $PHT_DOCKER_TIMEOUT (pht/docker.h), applied after it; NULL: none */
    pht_progress_fn progress; /* the open's progress, not kept after it; NULL: none */
    void *progress_ud;        /* progress's first argument */
    int no_index;      /* 1: read the manifest, config and layer list only, no layer's headers (a
                          master for pht_image_check_master, a writer's base); stat, walk, reads and
                          extracts then fail with PHT_ESTATE */
    int verify_behind; /* 1: the open's digest checks of plain tar layers run on a thread of
                          their own while the caller goes on; pht_image_verified waits for them,
                          as every commit of a writer on the image and the master check do. A
                          run's compressed layer (above the layer holding the train's config)
                          is then only decompressed and parsed by the open: its blob digest is
                          checked on that thread, its diff_id by a commit that keeps the layer
                          (doc/images.md, "What an open verifies") */
} pht_image_opts;

/*
 * Fill opts with the defaults: 1e6 entries, 64 GiB per entry and per layer,
 * 4096-byte names, 32 MiB of paths, verify_layers 0, no cache_dir, no
 * progress. cache_dir (created 0700 if missing; used only when it is the
 * user's own and writable by no one else) keeps the headers of each
 * compressed layer that names nothing under /opt, by blob digest, once its
 * digest was verified, so that a later open of the same blob need not
 * decompress it (doc/images.md).
 */
PHT_API void pht_image_opts_init(pht_image_opts *opts);

enum pht_image_type {
    PHT_IMAGE_FILE = 1,
    PHT_IMAGE_DIR = 2,
    PHT_IMAGE_SYMLINK = 3,
    PHT_IMAGE_HARDLINK = 4,
    PHT_IMAGE_OTHER = 5
};

/*
 * What pht_image_stat reports. link and path point into the handle: valid
 * while it lives, except that the path of a directory no layer named (an
 * implicit parent) is valid until the next call on the handle, and in a walk
 * callback only during the call.
 */
typedef struct pht_image_stat {
    int type;      /* enum pht_image_type */
    uint64_t size; /* content size (a hard link: its target's) */
    uint32_t mode; /* permission bits (07777) */
    int64_t uid, gid;
    int64_t mtime;    /* seconds since the epoch */
    const char *link; /* symlink target as stored, hard link target path; else NULL */
    const char *path; /* normalized path without a leading '/', "" for the root */
} pht_image_stat;

/* One layer of the image, bottom first. Strings point into the handle. */
typedef struct pht_image_layer {
    const char *digest;     /* "sha256:<hex>" of the blob as stored */
    const char *diff_id;    /* "sha256:<hex>" of the uncompressed tar */
    const char *media_type; /* OCI media type of the blob */
    uint64_t size;          /* blob size in bytes (0: not read, see pht_image_config) */
    uint64_t diff_size;     /* uncompressed size in bytes (0: not read) */
    const char *created_by; /* from the config history, or NULL */
    const char *comment;    /* from the config history, or NULL */
    int verified;           /* 1 if it was hashed and matched digest and diff_id (0 while a
                               run's layer under verify_behind has its diff_id unchecked) */
} pht_image_layer;

/*
 * Open an image from a reference (see above) and index its layers. opts may be
 * NULL for the defaults. *out is freed with pht_image_free. PHT_ENOTFOUND for
 * a missing file/tag, PHT_EFORMAT for a malformed archive or JSON, PHT_EUNSAFE /
 * PHT_ELIMIT for hostile layers, PHT_EVERIFY when a layer it hashes (see
 * pht_image_opts) does not match its digest or diff_id.
 */
PHT_API int pht_image_open(pht_image **out, const char *ref, const pht_image_opts *opts,
                           pht_error *err);

/* Release the handle; readers and writers made from it keep it alive. NULL is fine. */
PHT_API void pht_image_free(pht_image *img);

/*
 * Report the progress of img's later extracts, and of the calls that land
 * a docker-daemon or docker:// image's /opt or layers (stat, walk,
 * open_file, extract), through fn (NULL: stop). The open's opts.progress is
 * not kept. A writer reports through pht_image_writer_set_progress.
 */
PHT_API void pht_image_set_progress(pht_image *img, pht_progress_fn fn, void *ud);

/* The reference the image was opened with. */
PHT_API const char *pht_image_reference(const pht_image *img);

/* The transport name: "docker-archive", "oci", "oci-archive", "docker-daemon" or "docker". */
PHT_API const char *pht_image_transport(const pht_image *img);

/*
 * The manifest as JSON text: the OCI/Docker image manifest for oci, the
 * image's manifest.json entry (Config, RepoTags, Layers) for docker-archive.
 */
PHT_API const char *pht_image_manifest(const pht_image *img);

/*
 * The image config JSON text, byte for byte as stored; for docker-daemon,
 * rebuilt from what the engine reports (its digest is not the image id),
 * and layers whose bytes were not read (only /opt was) report size 0.
 */
PHT_API const char *pht_image_config(const pht_image *img);

/* Number of layers and one layer's description (i < count), bottom first. */
PHT_API size_t pht_image_layer_count(const pht_image *img);
PHT_API int pht_image_layer_info(const pht_image *img, size_t i, pht_image_layer *out,
                                 pht_error *err);

/*
 * How many layers of img stay when a new layer restates the train's paths
 * whole: /opt as a directory, /opt/pht_train and /opt/pht_results as opaque
 * directories, /opt/train_config.json and /opt/user_sym_key.key (copied, or
 * deleted when absent). Every layer above the result holds nothing else
 * (what a layer above a master may hold, pht_image_check_master, without
 * restating anything outside /opt) and lies above the lowest layer that
 * names the config, so such a new layer shadows them whole and they can be
 * left out. pht_image_layer_count(img) when there is none, or when the
 * layers were not read (a docker-daemon image's are the engine's).
 */
PHT_API size_t pht_image_protocol_top(const pht_image *img);

/* Stat a path of the merged filesystem ("/opt/x" or "opt/x"). PHT_ENOTFOUND if absent. */
PHT_API int pht_image_stat_path(pht_image *img, const char *path, pht_image_stat *st,
                                pht_error *err);

/*
 * Visit the entries under dir in Docker's archive walk order (entries of each
 * directory sorted by name bytewise, depth-first). With recursive == 0 only
 * the direct children. rel is the path relative to dir; copy what you keep. A
 * non-zero return of cb stops the walk and is returned. PHT_ENOTFOUND if dir
 * is absent or not a directory. Cost is linear in the bytes of the paths
 * visited, whatever their depth.
 */
typedef int (*pht_image_walk_cb)(void *ud, const char *rel, const pht_image_stat *st);
PHT_API int pht_image_walk(pht_image *img, const char *dir, int recursive, pht_image_walk_cb cb,
                           void *ud, pht_error *err);

/*
 * Open a regular file (or a hard link to one) for streaming. The reader keeps
 * the image alive; free it with pht_image_reader_free.
 */
PHT_API int pht_image_open_file(pht_image *img, const char *path, pht_image_reader **out,
                                pht_error *err);

/* The size of the file the reader reads. */
PHT_API uint64_t pht_image_reader_size(const pht_image_reader *r);

/*
 * *yes = 1 if every regular file at or below path can be read in place: its
 * bytes are one byte range of a plain (uncompressed) tar layer, so
 * pht_image_open_file reads them with pread, without reading a header or
 * decompressing anything. Layers pulled compressed (gzip, zstd) are not;
 * docker save archives and layers written by libpht are. PHT_ENOTFOUND if
 * path is absent.
 */
PHT_API int pht_image_in_place(pht_image *img, const char *path, int *yes, pht_error *err);

/*
 * *yes = 1 if opening the regular files at or below path one after another
 * in walk order (each reader freed before the next is opened) reads every
 * compressed layer at most once: a file not read in place lies after the
 * previous one in the same layer, or in a layer not visited before. A
 * finished reader leaves its place in the layer for the next open of a later
 * entry of it; a layer written by `docker commit` holds its files in walk
 * order. PHT_ENOTFOUND if path is absent.
 */
PHT_API int pht_image_in_order(pht_image *img, const char *path, int *yes, pht_error *err);

/* Read up to cap bytes into buf; *got == 0 at the end. */
PHT_API int pht_image_reader_read(pht_image_reader *r, void *buf, size_t cap, size_t *got,
                                  pht_error *err);

/* NULL is fine. */
PHT_API void pht_image_reader_free(pht_image_reader *r);

/*
 * Extract the subtree at dir into dest_dir (created if missing). Every entry
 * is created beneath dest_dir relative to its parent's descriptor, never
 * through a symlink. Devices and FIFOs are skipped. Owners are kept only as
 * root. Each layer is read once. PHT_ELIMIT past max_entries entries
 * (implicit parents included), PHT_EIO naming the entry.
 */
PHT_API int pht_image_extract(pht_image *img, const char *dir, const char *dest_dir,
                              pht_error *err);

/* ---- the master image ---------------------------------------------------------- */

/*
 * The verdict of the open's digest checks: 0 once every layer the open checks matched; with
 * opts.verify_behind this waits for the checks to end (PHT_EVERIFY naming the layer that did
 * not match). Before it returns 0, bytes read from those layers are not known to be img's.
 * Without verify_behind the open did them already: 0.
 */
PHT_API int pht_image_verified(pht_image *img, pht_error *err);

/*
 * Check that img was built on the master image a station trusts
 * (doc/station-guide.md, "Trusted master images"): its layers must begin with
 * exactly master's (diff_ids, as the config declares them: every runtime that
 * loads the image checks its layers against them), and the layers above, up
 * to the first top ones of img (0: all), may only change the train's paths
 * under /opt (PROTOCOL.md §1: /opt as their directory, train_config.json,
 * user_sym_key.key, pht_train/, pht_results/), and nowhere create a device,
 * FIFO, socket, setuid or setgid file, or a link leaving /opt. Only tar
 * headers are read, each layer above the master's once (the open's scan, or
 * a digest check that lands its bytes first: docker:// fetches those layers,
 * docker-daemon saves the image); master may be opened with no_index.
 * PHT_EVERIFY naming the first offending layer (number and digest) and
 * path, or the first layer that differs from the master's.
 */
PHT_API int pht_image_check_master(pht_image *img, const pht_image *master, size_t top,
                                   pht_error *err);

/* ---- writing ---------------------------------------------------------------- */

/* Base of the new image: the source image itself, or another image. */
typedef struct pht_image_writer_opts {
    pht_image *base;      /* NULL: the source image (or base_ref) */
    const char *base_ref; /* opened with the source's caps when base is NULL */
    long keep_layers;     /* < 0: all layers of the base; else its first N */
    const char *tmpdir;   /* NULL: the source image's tmpdir */
    /*
     * The reference the writer will most likely commit to, or NULL. For a
     * docker-archive the new layer's file is made (nameless) in that
     * archive's directory with room for its member header, so a commit
     * there builds the archive around it instead of copying the layer in;
     * a commit elsewhere still works, copying it.
     */
    const char *dest;
} pht_image_writer_opts;

/* Attributes of a new entry. */
typedef struct pht_image_attrs {
    int32_t mode; /* < 0: 0644 for files (add_file: the source's), 0755 for dirs */
    int64_t uid, gid;
    int64_t mtime; /* < 0: the writer's creation time */
    int opaque;    /* directories: hide all lower content of this directory */
} pht_image_attrs;

/* Defaults: mode -1, uid/gid 0, mtime -1, not opaque. */
PHT_API void pht_image_attrs_init(pht_image_attrs *a);

/*
 * A writer whose config starts from img's config and whose layers are
 * opts->base's (or img's), optionally only the first keep_layers. opts may be
 * NULL. The writer keeps both images alive. Free with pht_image_writer_free.
 */
PHT_API int pht_image_writer_new(pht_image *img, const pht_image_writer_opts *opts,
                                 pht_image_writer **out, pht_error *err);

/*
 * Report the progress of w's later adds and its commit through fn (NULL:
 * stop): the bytes of the new layer, then those the commit writes.
 */
PHT_API void pht_image_writer_set_progress(pht_image_writer *w, pht_progress_fn fn, void *ud);

/* Add a directory (opaque: hides lower content under it). attrs may be NULL. */
PHT_API int pht_image_writer_add_dir(pht_image_writer *w, const char *path,
                                     const pht_image_attrs *attrs, pht_error *err);

/* Add a regular file from disk, streamed. */
PHT_API int pht_image_writer_add_file(pht_image_writer *w, const char *path, const char *src,
                                      const pht_image_attrs *attrs, pht_error *err);

/* Add a regular file from a buffer. */
PHT_API int pht_image_writer_add_bytes(pht_image_writer *w, const char *path, const void *data,
                                       size_t len, const pht_image_attrs *attrs, pht_error *err);

/* Add a symbolic link (target stays inside the image). */
PHT_API int pht_image_writer_add_symlink(pht_image_writer *w, const char *path, const char *target,
                                         const pht_image_attrs *attrs, pht_error *err);

/* Delete path (and its subtree) of the lower layers with a whiteout entry. */
PHT_API int pht_image_writer_whiteout(pht_image_writer *w, const char *path, pht_error *err);

/*
 * Begin a streamed regular file of exactly size bytes (size < 0: unknown, the
 * content spools to a temporary file). Only one stream at a time; the stream
 * keeps the writer alive. Finish with pht_image_stream_close.
 */
PHT_API int pht_image_writer_begin_file(pht_image_writer *w, const char *path, int64_t size,
                                        const pht_image_attrs *attrs, pht_image_stream **out,
                                        pht_error *err);
PHT_API int pht_image_stream_write(pht_image_stream *s, const void *data, size_t len,
                                   pht_error *err);
/* Finish the entry: PHT_ESTATE if fewer bytes than announced were written. */
PHT_API int pht_image_stream_close(pht_image_stream *s, pht_error *err);
/* Free; a stream freed before close leaves the writer failed. NULL is fine. */
PHT_API void pht_image_stream_free(pht_image_stream *s);

/* A name and a value of the runtime config: an Env variable, a label. */
typedef struct pht_image_kv {
    const char *key;
    const char *value; /* NULL: remove the key */
} pht_image_kv;

/*
 * Changes to the new image's runtime config (the "config" object that
 * `docker run` reads). A field left zero (pht_image_config_spec_init) keeps
 * the source image's value; everything else of the config is kept.
 */
typedef struct pht_image_config_spec {
    int set_cmd;            /* replace Cmd by cmd[0..ncmd); ncmd == 0 removes it */
    const char *const *cmd; /* program and arguments, exec form */
    size_t ncmd;
    int set_entrypoint; /* the same for Entrypoint */
    const char *const *entrypoint;
    size_t nentrypoint;
    const pht_image_kv *env; /* set each NAME to value (NULL: remove it); others stay */
    size_t nenv;
    const pht_image_kv *labels; /* set each label (NULL value: remove it); others stay */
    size_t nlabels;
    const char *working_dir; /* absolute path, "" to unset; NULL: keep */
    const char *user;        /* "name", "uid", "uid:gid", "" to unset; NULL: keep */
} pht_image_config_spec;

/* Zero spec: changes nothing. */
PHT_API void pht_image_config_spec_init(pht_image_config_spec *spec);

/*
 * Change the runtime config of the image w will commit; calls accumulate, in
 * order. The strings are copied. PHT_EINVAL (nothing changed) for an Env name
 * that is empty or holds '=', an empty label key, a relative working_dir or a
 * NULL in cmd/entrypoint; PHT_ESTATE after commit. A commit then writes a new
 * config even without new entries (its history gets an empty_layer entry).
 */
PHT_API int pht_image_writer_set_config(pht_image_writer *w, const pht_image_config_spec *spec,
                                        pht_error *err);

/* What a commit records. */
typedef struct pht_image_commit_opts {
    const char *const *tags; /* extra "repo:tag" names (docker-archive) or ref names (oci) */
    size_t ntags;
    const char *created_by; /* history entry of the new layer */
    const char *comment;    /* its comment, may be NULL */
    int keep_unreferenced;  /* oci: keep blobs no manifest references any more */
    int drop_plaintext;     /* docker-archive: drop the archive's other images that hold a
                               layer marked PHT_PRE_RUN_MARK instead of keeping them */
} pht_image_commit_opts;

/*
 * Write the image to dest_ref (may equal the source's reference) atomically:
 * on failure the destination is left byte-identical. Other images/tags in a
 * destination archive or layout are kept; tags written here move to the new
 * image. A dest_ref without NAME:TAG (TAG) that names the source's own
 * archive (layout) takes the source's place: its RepoTags (ref name) move to
 * the new image, as `docker tag` would, and an untagged source entry is
 * replaced. Without new entries, config changes and with the source's layers,
 * the config is kept as is (a retag). Once the new index.json of an oci
 * layout is in place, blobs no manifest references any more are removed
 * (unless keep_unreferenced); when that fails the image is committed, the
 * error says so, and only unreferenced blobs remain. The writer cannot be
 * used afterwards.
 */
PHT_API int pht_image_writer_commit(pht_image_writer *w, const char *dest_ref,
                                    const pht_image_commit_opts *opts, pht_error *err);

/* NULL is fine; abandons an uncommitted writer (its temporary files go). */
PHT_API void pht_image_writer_free(pht_image_writer *w);

/* ---- plaintext left in an OCI layout ---------------------------------------- */

/* The history line pre-run writes on the layer of decrypted files: its mark. */
#define PHT_PRE_RUN_MARK "libpht pre-run"

/* A manifest of an OCI layout's index.json that holds a pre-run's plaintext. */
typedef struct pht_oci_plaintext {
    char digest[80]; /* "sha256:..." of the manifest */
    char *name;      /* its org.opencontainers.image.ref.name, NULL when untagged */
    char *why;       /* which layer and why, for messages */
} pht_oci_plaintext;

/*
 * Every manifest listed in dir/index.json (tagged or not) that holds a
 * pre-run's plaintext: one whose config history has a layer marked
 * PHT_PRE_RUN_MARK, or, when keep names a tag of the layout (the current
 * train), any other with a layer keep lacks holding a regular file under
 * /opt/pht_results whose content is not that of a file under
 * /opt/pht_results in keep (the current train's ciphertext). keep NULL:
 * the history rule alone. A new array
 * in *out (*n entries; free with pht_oci_plaintext_free). Layers are read
 * only when the history does not decide. PHT_ENOTFOUND without index.json.
 */
PHT_API int pht_oci_find_plaintext(const char *dir, const char *keep, pht_oci_plaintext **out,
                                   size_t *n, pht_error *err);

/* Free what pht_oci_find_plaintext returned; NULL is fine. */
PHT_API void pht_oci_plaintext_free(pht_oci_plaintext *v, size_t n);

/*
 * Remove the manifests with the n given digests from dir/index.json (every
 * entry, tagged or not), then every blob no remaining manifest references;
 * *blobs (may be NULL) gets the number of blobs removed. Under the layout's
 * lock, index.json replaced atomically.
 */
PHT_API int pht_oci_remove_manifests(const char *dir, const char *const *digests, size_t n,
                                     size_t *blobs, pht_error *err);

#ifdef __cplusplus
}
#endif
#endif
