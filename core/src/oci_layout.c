/*
 * The upkeep of an OCI image layout: the commit's lock on the layout and
 * its garbage collection (the blobs no manifest reaches, as `umoci gc`
 * removes them), and the plaintext a pre-run left in it (manifests whose
 * image holds a pre-run's layer, found and removed with the blobs only they
 * reached). The transport itself is image_oci.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "fs_private.h"
#include "hash_private.h"
#include "oci_private.h"
#include "transport_private.h"
#include "pht/interrupt.h"

/* ---- garbage collection ------------------------------------------------------ */

/* The sha256 digests that index.json reaches, sorted for lookup. */
typedef struct refset {
    char (*v)[IMG_DIGEST_MAX];
    size_t n, cap;
} refset;

static int ref_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int refs_has(const refset *r, const char *dg)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i], dg) == 0) return 1;
    return 0;
}

/* Add dg (other algorithms live in other directories: gc leaves those alone). */
static int refs_add(refset *r, const char *dg, pht_error *err)
{
    if (!hash_sha256_valid(dg) || refs_has(r, dg)) return 0;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        char(*v)[IMG_DIGEST_MAX] = realloc(r->v, cap * sizeof *v);
        if (v == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
        r->v = v;
        r->cap = cap;
    }
    strcpy(r->v[r->n++], dg);
    return 0;
}

/*
 * Mark what the "manifests" of an index document reach: each manifest or
 * nested index blob (read and checked against its digest), and its config,
 * layers, blobs and subject. A manifest that cannot be read stops the
 * collection: what it references is unknown, so nothing may be removed.
 */
static int mark_index(const char *dir, const cJSON *doc, refset *r, int depth, pht_error *err)
{
    static const char *const leaves[] = {"config", "subject", "layers", "blobs"};
    const cJSON *d;
    int rc = 0;
    if (depth > 8)
        return pht_error_set(err, PHT_ELIMIT, "%s: image indexes nested deeper than 8", dir);
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(doc, "manifests"))
    {
        const char *dg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "digest"));
        if (!hash_sha256_valid(dg))
            return pht_error_set(err, PHT_EUNSAFE, "%s: a manifest with digest \"%.80s\"", dir,
                                 dg ? dg : "");
        if (refs_has(r, dg)) continue;
        char *text = NULL;
        size_t len;
        cJSON *m = NULL;
        if ((rc = refs_add(r, dg, err)) || (rc = oci_read_json_blob(dir, dg, &text, &len, err)))
            return rc;
        if ((m = json_parse(text, "manifest", err)) == NULL) rc = PHT_EFORMAT;
        free(text);
        if (rc == 0) rc = mark_index(dir, m, r, depth + 1, err);
        for (size_t k = 0; rc == 0 && k < sizeof leaves / sizeof *leaves; k++) {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(m, leaves[k]), *it;
            if (cJSON_IsObject(f))
                rc = refs_add(
                    r, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "digest")), err);
            else
                cJSON_ArrayForEach(it, f)
                {
                    if (rc == 0)
                        rc = refs_add(
                            r, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "digest")),
                            err);
                }
        }
        cJSON_Delete(m);
        if (rc) return rc;
    }
    return 0;
}

/* The blob files of blobs/sha256 that r does not name (malloc'ed names). */
static int unreferenced(const char *bdir, const refset *r, char ***out, size_t *n, pht_error *err)
{
    *out = NULL;
    *n = 0;
    DIR *dp = opendir(bdir);
    if (dp == NULL) return pht_error_set(err, PHT_EIO, "%s: %s", bdir, strerror(errno));
    struct dirent *de;
    int rc = 0;
    char dg[IMG_DIGEST_MAX];
    while (rc == 0 && (de = readdir(dp)) != NULL) {
        struct stat st;
        snprintf(dg, sizeof dg, "sha256:%.70s", de->d_name);
        /* only blobs: temporary files of a commit and anything else stay */
        if (!hash_sha256_valid(dg) || bsearch(dg, r->v, r->n, sizeof *r->v, ref_cmp) ||
            fstatat(dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        char **v = realloc(*out, (*n + 1) * sizeof *v);
        if (v == NULL || (v[*n] = strdup(de->d_name)) == NULL) {
            if (v) *out = v;
            rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
            break;
        }
        *out = v;
        (*n)++;
    }
    closedir(dp);
    return rc;
}

/*
 * Remove the blobs of blobs/sha256 that no manifest of index.json reaches
 * (directly, through an image index, as config, layer or blob), like
 * `umoci gc`. Runs after the new index.json is in place, so a failure here
 * only leaves unreferenced blobs behind.
 */
int oci_gc(const char *dir, size_t *removed, pht_error *err)
{
    char path[4096 + 32], **gone = NULL, *text = NULL;
    size_t len, ngone = 0;
    refset r = {0};
    cJSON *index = NULL;
    snprintf(path, sizeof path, "%s/index.json", dir);
    int rc = fs_read_small(path, IMG_JSON_MAX, &text, &len, err);
    if (rc == 0 && (index = json_parse(text, "index.json", err)) == NULL) rc = PHT_EFORMAT;
    if (rc == 0) rc = mark_index(dir, index, &r, 0, err);
    if (rc == 0) qsort(r.v, r.n, sizeof *r.v, ref_cmp);
    snprintf(path, sizeof path, "%s/blobs/sha256", dir);
    if (rc == 0) rc = unreferenced(path, &r, &gone, &ngone, err);
    int fd = rc == 0 ? open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (rc == 0 && fd < 0) rc = pht_error_set(err, PHT_EIO, "%s: %s", path, strerror(errno));
    for (size_t i = 0; i < ngone; i++) {
        if (rc == 0 && unlinkat(fd, gone[i], 0) != 0 && errno != ENOENT)
            rc = pht_error_set(err, PHT_EIO, "%s/%s: %s", path, gone[i], strerror(errno));
        else if (rc == 0 && removed)
            (*removed)++;
        free(gone[i]);
    }
    if (fd >= 0 && ngone && rc == 0 && fsync(fd) != 0)
        rc = pht_error_set(err, PHT_EIO, "%s: fsync: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    free(gone);
    free(r.v);
    free(text);
    cJSON_Delete(index);
    return rc;
}

/* Hold an exclusive lock on the layout directory: one commit (and its gc) at a time. */
int oci_lock_layout(const char *dir, int *fd, pht_error *err)
{
    *fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0) return pht_error_set(err, PHT_EIO, "%s: %s", dir, strerror(errno));
    while (flock(*fd, LOCK_EX) != 0)
        if (errno != EINTR)
            return pht_error_set(err, PHT_EIO, "%s: lock: %s", dir, strerror(errno));
    return 0;
}

/* ---- plaintext left in a layout ---------------------------------------------- */

#define RESULTS_DIR "opt/pht_results"

/* The manifest blob dg and its config blob, parsed. */
static int load_image_json(const char *dir, const char *dg, cJSON **man, cJSON **cfg,
                           pht_error *err)
{
    char *text = NULL;
    size_t len;
    *man = *cfg = NULL;
    int rc = oci_read_json_blob(dir, dg, &text, &len, err);
    if (rc == 0 && (*man = json_parse(text, "manifest", err)) == NULL) rc = PHT_EFORMAT;
    free(text);
    text = NULL;
    const char *cdg = rc ? NULL
                         : cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                               cJSON_GetObjectItemCaseSensitive(*man, "config"), "digest"));
    if (rc == 0) rc = oci_read_json_blob(dir, cdg, &text, &len, err);
    if (rc == 0 && (*cfg = json_parse(text, "image config", err)) == NULL) rc = PHT_EFORMAT;
    free(text);
    return rc;
}

/*
 * Read layer blob dg and add the sha256 of every regular file under
 * /opt/pht_results to contents; *found counts those not in known (NULL:
 * count none). The blob is read once, as a tar stream, whatever its
 * compression.
 */
static int results_scan(const char *dir, const char *dg, refset *contents, const refset *known,
                        size_t *found, pht_error *err)
{
    char *bp = oci_blob_path(dir, dg);
    if (bp == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    img_layer l = {.fd = open(bp, O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
    struct stat st;
    if (l.fd < 0 || fstat(l.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (l.fd >= 0) close(l.fd);
        int rc = pht_error_set(err, PHT_ENOTFOUND, "%s: layer blob %s is missing", dir, dg);
        free(bp);
        return rc;
    }
    free(bp);
    l.length = (uint64_t)st.st_size;
    snprintf(l.digest, sizeof l.digest, "%s", dg);
    void *state = NULL;
    struct archive *a = layer_tar_open(&l, &state, err);
    int rc = a ? 0 : (err ? err->code : PHT_EFORMAT);
    unsigned char *buf = a ? malloc(PHT_CHUNK_SIZE) : NULL;
    if (a && buf == NULL) rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    while (rc == 0) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = pht_error_set(err, PHT_EFORMAT, "%s: layer %s: %s", dir, dg,
                               archive_error_string(a));
            break;
        }
        char *path = NULL;
        const char *why = NULL;
        if (archive_entry_filetype(e) != AE_IFREG ||
            tarsafe_path(archive_entry_pathname(e), 4096, &path, &why) != 0 ||
            !tarsafe_below(path, RESULTS_DIR)) {
            free(path);
            continue;
        }
        free(path);
        pht_hash *h = hash_new_sha256(err);
        if (h == NULL) {
            rc = err ? err->code : PHT_ENOMEM;
            break;
        }
        la_ssize_t got;
        while (rc == 0 && (got = archive_read_data(a, buf, PHT_CHUNK_SIZE)) > 0)
            rc = pht_hash_update(h, buf, (size_t)got, err);
        if (rc == 0 && got < 0)
            rc = pht_error_set(err, PHT_EFORMAT, "%s: layer %s: %s", dir, dg,
                               archive_error_string(a));
        char sum[HASH_SHA256_TEXT];
        if (rc == 0) rc = hash_final_sha256(h, sum, err);
        pht_hash_free(h);
        if (rc == 0 && known && !refs_has(known, sum)) (*found)++;
        if (rc == 0 && contents) rc = refs_add(contents, sum, err);
    }
    free(buf);
    layer_tar_close(a, state);
    close(l.fd);
    return rc;
}

void pht_oci_plaintext_free(pht_oci_plaintext *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].name);
        free(v[i].why);
    }
    free(v);
}

static int found_add(pht_oci_plaintext **v, size_t *n, const char *dg, const char *name,
                     const char *why, pht_error *err)
{
    pht_oci_plaintext *nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (nv == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    *v = nv;
    pht_oci_plaintext *f = &nv[*n];
    memset(f, 0, sizeof *f);
    snprintf(f->digest, sizeof f->digest, "%s", dg);
    f->name = name ? strdup(name) : NULL;
    f->why = strdup(why);
    (*n)++;
    if ((name && f->name == NULL) || f->why == NULL)
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    return 0;
}

static const char *ref_name_of(const cJSON *d)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(d, "annotations"), REF_NAME));
}

int pht_oci_find_plaintext(const char *dir, const char *keep, pht_oci_plaintext **out, size_t *n,
                           pht_error *err)
{
    *out = NULL;
    *n = 0;
    char path[4096 + 32], *text = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/index.json", dir);
    cJSON *index = NULL, *man = NULL, *cfg = NULL;
    refset keep_layers = {0}, keep_files = {0};
    int have_keep_files = 0;
    int rc = fs_read_small(path, IMG_JSON_MAX, &text, &len, err);
    if (rc == 0 && (index = json_parse(text, "index.json", err)) == NULL) rc = PHT_EFORMAT;
    free(text);
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(index, "manifests"), *d, *it;
    /* the layers of the image tagged keep: the current train, trusted */
    const char *keep_dg = NULL;
    cJSON_ArrayForEach(d, ms)
    {
        const char *name = ref_name_of(d);
        if (rc == 0 && keep && name && strcmp(name, keep) == 0 &&
            !oci_is_index(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "mediaType")))) {
            keep_dg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "digest"));
            if ((rc = load_image_json(dir, keep_dg, &man, &cfg, err)) == 0)
                cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(man, "layers"))
                {
                    if (rc == 0)
                        rc = refs_add(
                            &keep_layers,
                            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "digest")),
                            err);
                }
            cJSON_Delete(man);
            cJSON_Delete(cfg);
            man = cfg = NULL;
            break;
        }
    }
    cJSON_ArrayForEach(d, ms)
    {
        if (rc) break;
        const char *dg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "digest"));
        const char *name = ref_name_of(d);
        if (!hash_sha256_valid(dg)) {
            rc = pht_error_set(err, PHT_EUNSAFE, "%s: a manifest with digest \"%.80s\"", dir,
                               dg ? dg : "");
            break;
        }
        /* an image index (several platforms) is not a train libpht wrote: left alone */
        if (oci_is_index(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "mediaType"))))
            continue;
        if ((rc = pht_interrupt_check(err)) || (rc = load_image_json(dir, dg, &man, &cfg, err)))
            break;
        char why[256];
        if (img_config_pre_run(cfg)) {
            rc = found_add(
                out, n, dg, name,
                "it holds the layer pre-run decrypted (history \"" PHT_PRE_RUN_MARK "\")", err);
        } else if (keep_dg != NULL && strcmp(dg, keep_dg) != 0) {
            int i = 0;
            cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(man, "layers"))
            {
                const char *ldg =
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "digest"));
                i++;
                if (rc || !hash_sha256_valid(ldg) || refs_has(&keep_layers, ldg)) continue;
                if (keep_dg && !have_keep_files) {
                    have_keep_files = 1;
                    for (size_t k = 0; rc == 0 && k < keep_layers.n; k++)
                        rc = results_scan(dir, keep_layers.v[k], &keep_files, NULL, NULL, err);
                }
                size_t foreign = 0;
                if (rc == 0) rc = results_scan(dir, ldg, NULL, &keep_files, &foreign, err);
                if (rc == 0 && foreign) {
                    snprintf(why, sizeof why,
                             "its layer %d holds %zu file(s) under /opt/pht_results that are not "
                             "the current train's ciphertext",
                             i, foreign);
                    rc = found_add(out, n, dg, name, why, err);
                    break;
                }
            }
        }
        cJSON_Delete(man);
        cJSON_Delete(cfg);
        man = cfg = NULL;
    }
    cJSON_Delete(man);
    cJSON_Delete(cfg);
    cJSON_Delete(index);
    free(keep_layers.v);
    free(keep_files.v);
    if (rc) {
        pht_oci_plaintext_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int pht_oci_remove_manifests(const char *dir, const char *const *digests, size_t n, size_t *blobs,
                             pht_error *err)
{
    if (blobs) *blobs = 0;
    char path[4096 + 32], *text = NULL;
    size_t len;
    int lock = -1, rc = oci_lock_layout(dir, &lock, err);
    cJSON *index = NULL;
    snprintf(path, sizeof path, "%s/index.json", dir);
    if (rc == 0) rc = fs_read_small(path, IMG_JSON_MAX, &text, &len, err);
    if (rc == 0 && (index = json_parse(text, "index.json", err)) == NULL) rc = PHT_EFORMAT;
    free(text);
    text = NULL;
    cJSON *ms = cJSON_GetObjectItemCaseSensitive(index, "manifests");
    int dropped = 0;
    for (int i = cJSON_GetArraySize(ms) - 1; rc == 0 && i >= 0; i--) {
        const char *dg = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ms, i), "digest"));
        for (size_t k = 0; dg && k < n; k++) {
            if (digests[k] && strcmp(dg, digests[k]) == 0) {
                cJSON_DeleteItemFromArray(ms, i);
                dropped++;
                break;
            }
        }
    }
    if (rc == 0 && dropped) {
        if ((text = cJSON_PrintUnformatted(index)) == NULL)
            rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        else
            rc = oci_write_small(path, text, err);
    }
    if (rc == 0) rc = oci_gc(dir, blobs, err);
    if (lock >= 0) close(lock);
    free(text);
    cJSON_Delete(index);
    return rc;
}
