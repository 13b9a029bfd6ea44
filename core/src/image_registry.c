/*
 * The docker:// transport: an image in a registry (the OCI distribution API,
 * through pht/registry.h). An open reads the manifest (an index or manifest
 * list resolves to the platform the options name, linux/amd64 by default)
 * and the config, both checked against their digests, and no layer: the
 * layers land when a step reads the image's files, each blob streamed into
 * the blob directory and checked against its digest before it is kept there
 * (the cache dir's registry-blobs/, so a later open finds it; without a
 * cache dir a private temporary directory). A commit pushes: a blob the
 * repository has is skipped (HEAD), one that another repository of the same
 * registry has (the source's) is mounted, the rest is uploaded streamed;
 * plain tar layers go up gzip-compressed, as docker push sends them. The
 * manifest goes last, once every blob it names is there, so a failed push
 * never moves a tag.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "fs_private.h"
#include "hash_private.h"
#include "pht/registry.h"
#include "transport_private.h"
#include "pht/interrupt.h"

#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_DOCKER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define MT_DOCKER_TAR "application/vnd.docker.image.rootfs.diff.tar"
#define BLOB_SUBDIR "registry-blobs"

typedef struct rg_state {
    pht_registry *reg;
    char *host, *repo;
    char *blobdir; /* where layer blobs land */
    int own_blobdir; /* a temporary directory removed at close */
    int docker;      /* the manifest was Docker schema 2 */
    int failed;      /* a landing failed: its error is returned again */
    pht_error why;
} rg_state;

static int oom(pht_error *err)
{
    return pht_error_set(err, PHT_ENOMEM, "out of memory");
}

/* The registry options of an image's options. */
static void reg_opts(const pht_image_opts *io, pht_registry_options *o)
{
    pht_registry_options_init(o);
    if (io == NULL) return;
    o->creds = io->registry_creds;
    o->auth_file = io->registry_auth_file;
    o->cert_dir = io->registry_cert_dir;
    if (io->registry_tls_insecure) o->tls_verify = 0;
}

/*
 * HOST and REPO of a docker:// name ("HOST/REPO", or "REPO" on docker.io,
 * where a one-part name is library/NAME), malloc'ed.
 */
static int split_name(const char *host, const char *name, char **h, char **repo, pht_error *err)
{
    size_t hl = strlen(host);
    const char *r = name;
    int hub = strncmp(name, host, hl) != 0 || name[hl] != '/';
    if (!hub) r = name + hl + 1;
    *h = strdup(host);
    size_t n = strlen(r) + 16;
    *repo = malloc(n);
    if (*h == NULL || *repo == NULL) {
        free(*h);
        free(*repo);
        *h = *repo = NULL;
        return oom(err);
    }
    snprintf(*repo, n, "%s%s", hub && strcmp(host, "docker.io") == 0 && !strchr(r, '/') ? "library/" : "",
             r);
    return 0;
}

static int is_index(const char *mt)
{
    return mt && (strcmp(mt, PHT_MEDIA_OCI_INDEX) == 0 || strcmp(mt, PHT_MEDIA_DOCKER_LIST) == 0);
}

static const char *jstr(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* The manifest descriptor of an index for platform "OS/ARCH[/VARIANT]". */
static const cJSON *pick_platform(const cJSON *index, const char *platform, const char *what,
                                  pht_error *err)
{
    char os[64] = "", arch[64] = "", variant[64] = "";
    const char *p = platform ? platform : "linux/amd64";
    const char *s1 = strchr(p, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    if (s1 == NULL || s1 == p || (size_t)(s1 - p) >= sizeof os || strlen(s1 + 1) >= sizeof arch)
        return pht_error_set(err, PHT_EINVAL, "platform \"%.80s\": expected OS/ARCH[/VARIANT]", p),
               NULL;
    snprintf(os, sizeof os, "%.*s", (int)(s1 - p), p);
    snprintf(arch, sizeof arch, "%.*s", (int)((s2 ? s2 : s1 + strlen(s1)) - s1 - 1), s1 + 1);
    if (s2) snprintf(variant, sizeof variant, "%s", s2 + 1);
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(index, "manifests"), *it, *hit = NULL;
    char seen[512] = "";
    size_t used = 0;
    cJSON_ArrayForEach(it, ms)
    {
        const cJSON *pl = cJSON_GetObjectItemCaseSensitive(it, "platform");
        const char *o = jstr(pl, "os"), *a = jstr(pl, "architecture"), *v = jstr(pl, "variant");
        if (o && a && used < sizeof seen) {
            int n = snprintf(seen + used, sizeof seen - used, "%s%s/%s%s%s", used ? ", " : "", o,
                             a, v ? "/" : "", v ? v : "");
            if (n > 0) used += (size_t)n;
        }
        if (o && a && strcmp(o, os) == 0 && strcmp(a, arch) == 0 &&
            (!variant[0] || (v && strcmp(v, variant) == 0))) {
            hit = it;
            break;
        }
    }
    if (hit == NULL && cJSON_GetArraySize(ms) == 1 &&
        !cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ms, 0), "platform"))
        hit = cJSON_GetArrayItem(ms, 0); /* one image without a platform: that one */
    if (hit == NULL)
        pht_error_set(err, PHT_ENOTFOUND, "%s holds no image for %s (it has: %s)", what, p,
                      seen[0] ? seen : "none");
    return hit;
}

/* A sink into a malloc'ed buffer of a known size. */
typedef struct membuf {
    char *p;
    size_t len, cap;
} membuf;

static int mem_sink(void *ud, const void *data, size_t n, pht_error *err)
{
    membuf *m = ud;
    if (n > m->cap - m->len) return pht_error_set(err, PHT_ELIMIT, "blob longer than declared");
    memcpy(m->p + m->len, data, n);
    m->len += n;
    return 0;
}

/* The compression a layer media type declares. */
static int media_compression(const char *mt)
{
    if (mt == NULL) return IMG_COMP_OTHER;
    size_t n = strlen(mt);
    if ((n > 5 && strcmp(mt + n - 5, "+gzip") == 0) || strcmp(mt, MT_DOCKER_GZIP) == 0 ||
        strcmp(mt, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip") == 0)
        return IMG_COMP_GZIP;
    if (n > 5 && strcmp(mt + n - 5, "+zstd") == 0) return IMG_COMP_ZSTD;
    if (strcmp(mt, "application/vnd.oci.image.layer.v1.tar") == 0 || strcmp(mt, MT_DOCKER_TAR) == 0)
        return IMG_COMP_NONE;
    return IMG_COMP_OTHER;
}

/* Remove a directory of blob files (one level, plus blobs/sha256). */
static void remove_tree(const char *dir)
{
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/sha256", dir);
    const char *dirs[] = {sub, dir};
    for (size_t k = 0; k < 2; k++) {
        DIR *d = opendir(dirs[k]);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL)
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                unlinkat(dirfd(d), de->d_name, 0);
        if (d) closedir(d);
        rmdir(dirs[k]);
    }
}

/*
 * cache_dir/registry-blobs (and cache_dir itself) made when missing, 0700;
 * it must be a directory of this user's that no one else may write.
 */
static int cache_blobdir(const char *cache_dir, char *path, size_t cap, pht_error *err)
{
    snprintf(path, cap, "%s", cache_dir);
    for (char *s = path + 1; *s; s++) /* the cache dir's parents, then ours, private */
        if (*s == '/') {
            *s = '\0';
            mkdir(path, 0700);
            *s = '/';
        }
    mkdir(path, 0700);
    snprintf(path, cap, "%s/" BLOB_SUBDIR, cache_dir);
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return pht_error_set(err, PHT_EIO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (lstat(path, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != geteuid() ||
        (sb.st_mode & 022))
        return pht_error_set(err, PHT_EUNSAFE,
                             "%s: not a directory of this user's that only they may write", path);
    return 0;
}

/* The blob directory: the cache dir's registry-blobs/sha256, else a private temporary one. */
static int make_blobdir(pht_image *img, rg_state *st, pht_error *err)
{
    char path[4096];
    int rc;
    if (img->opts.cache_dir) {
        if ((rc = cache_blobdir(img->opts.cache_dir, path, sizeof path, err))) return rc;
    } else {
        snprintf(path, sizeof path, "%s/pht-blobs-XXXXXX", img->tmpdir);
        if (mkdtemp(path) == NULL)
            return pht_error_set(err, PHT_EIO, "%s: %s", path, strerror(errno));
        st->own_blobdir = 1;
    }
    if ((st->blobdir = strdup(path)) == NULL) return oom(err);
    snprintf(path, sizeof path, "%s/sha256", st->blobdir);
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return pht_error_set(err, PHT_EIO, "%s: %s", path, strerror(errno));
    return 0;
}

/*
 * Where blobs were seen: cache_dir/registry-blobs/locations/HEX holds one
 * "HOST REPO" line for each repository known to have blob sha256:HEX (its
 * image was opened from there, or pushed there), as containers/image's blob
 * info cache keeps them: a push to another repository of the same registry
 * mounts the blob from one of them instead of sending it. Best effort: a
 * cache that cannot be read or written only costs an upload.
 */
#define LOC_MAX 16 /* repositories remembered per blob */

/*
 * The gzip blob a plain tar became when it was pushed last:
 * registry-blobs/gzip/HEX (of its diff_id) holds "sha256:GZHEX SIZE", so a
 * push of the same layer asks the registry for that blob before it
 * compresses the tar again, as docker keeps its diff_id -> digest map.
 */
static int gz_path(const char *cache_dir, const char *diff_id, char *out, size_t cap, int mk)
{
    pht_error ignore;
    if (cache_dir == NULL || !hash_sha256_valid(diff_id)) return -1;
    if (mk && cache_blobdir(cache_dir, out, cap, &ignore) != 0) return -1;
    snprintf(out, cap, "%s/" BLOB_SUBDIR "/gzip", cache_dir);
    if (mk && mkdir(out, 0700) != 0 && errno != EEXIST) return -1;
    size_t n = strlen(out);
    snprintf(out + n, cap - n, "/%s", diff_id + 7);
    return 0;
}

static int gz_known(const char *cache_dir, const char *diff_id, char *digest, uint64_t *size)
{
    char path[4200], *text = NULL, dg[IMG_DIGEST_MAX];
    size_t len;
    unsigned long long sz;
    pht_error ignore;
    if (gz_path(cache_dir, diff_id, path, sizeof path, 0) != 0 ||
        fs_read_small(path, 256, &text, &len, &ignore) != 0)
        return 0;
    int ok = sscanf(text, "%79s %llu", dg, &sz) == 2 && hash_sha256_valid(dg);
    free(text);
    if (ok) {
        strcpy(digest, dg);
        *size = (uint64_t)sz;
    }
    return ok;
}

static void gz_remember(const char *cache_dir, const char *diff_id, const char *digest,
                        uint64_t size)
{
    char path[4200], line[128];
    pht_error ignore;
    if (gz_path(cache_dir, diff_id, path, sizeof path, 1) != 0) return;
    snprintf(line, sizeof line, "%s %llu\n", digest, (unsigned long long)size);
    pht_write_file(path, line, strlen(line), 0600, &ignore);
}

static int loc_path(const char *cache_dir, const char *digest, char *out, size_t cap, int mk)
{
    pht_error ignore;
    if (cache_dir == NULL || !hash_sha256_valid(digest)) return -1;
    if (mk && cache_blobdir(cache_dir, out, cap, &ignore) != 0) return -1;
    snprintf(out, cap, "%s/" BLOB_SUBDIR "/locations", cache_dir);
    if (mk && mkdir(out, 0700) != 0 && errno != EEXIST) return -1;
    size_t n = strlen(out);
    snprintf(out + n, cap - n, "/%s", digest + 7);
    return 0;
}

/* The lines of digest's location file (malloc'ed text, NULL when none). */
static char *loc_read(const char *cache_dir, const char *digest)
{
    char path[4200], *text = NULL;
    size_t len;
    pht_error ignore;
    if (loc_path(cache_dir, digest, path, sizeof path, 0) != 0) return NULL;
    if (fs_read_small(path, 64u << 10, &text, &len, &ignore) != 0) return NULL;
    return text;
}

static void loc_add(const char *cache_dir, const char *digest, const char *host, const char *repo)
{
    char path[4200], line[1200];
    snprintf(line, sizeof line, "%s %s\n", host, repo);
    if (strchr(host, ' ') || strchr(line, '\n') != line + strlen(line) - 1) return;
    char *text = loc_read(cache_dir, digest);
    int n = 0, seen = 0;
    for (char *s = text; s && *s; n++) {
        char *e = strchr(s, '\n');
        size_t l = e ? (size_t)(e - s + 1) : strlen(s);
        if (l == strlen(line) && strncmp(s, line, l) == 0) seen = 1;
        s += l;
    }
    free(text);
    if (seen || n >= LOC_MAX || loc_path(cache_dir, digest, path, sizeof path, 1) != 0) return;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return;
    pht_error ignore;
    fs_write_all(fd, line, strlen(line), path, &ignore); /* one short append: atomic */
    close(fd);
}

static int rg_open(pht_image *img, const pht_image_ref *ref, pht_error *err)
{
    rg_state *st = calloc(1, sizeof *st);
    if (st == NULL) return oom(err);
    img->tpdata = st;
    pht_registry_options o;
    pht_registry_manifest m = {0}, m2 = {0};
    cJSON *doc = NULL, *cfg = NULL;
    membuf cb = {0};
    char what[600];
    int rc = split_name(pht_image_ref_host(ref), pht_image_ref_name(ref), &st->host, &st->repo, err);
    if (rc) return rc;
    snprintf(what, sizeof what, "registry %s, repository %s", st->host, st->repo);
    reg_opts(&img->opts, &o);
    if ((rc = pht_registry_open(&st->reg, st->host, &o, err))) goto out;
    const char *dg = pht_image_ref_digest(ref);
    if ((rc = pht_registry_get_manifest(st->reg, st->repo, dg ? dg : pht_image_ref_tag(ref), &m,
                                        err)))
        goto out;
    if ((doc = json_parse(m.data, "manifest", err)) == NULL) {
        rc = PHT_EFORMAT;
        goto out;
    }
    if (is_index(m.media_type)) {
        const cJSON *d = pick_platform(doc, img->opts.platform, what, err);
        const char *mdg = d ? jstr(d, "digest") : NULL;
        if (d == NULL) {
            rc = err ? err->code : PHT_ENOTFOUND;
            goto out;
        }
        if (!hash_sha256_valid(mdg)) {
            rc = pht_error_set(err, PHT_EUNSAFE, "%s: the image index names digest \"%.80s\"",
                               what, mdg ? mdg : "");
            goto out;
        }
        if ((rc = pht_registry_get_manifest(st->reg, st->repo, mdg, &m2, err))) goto out;
        if (is_index(m2.media_type)) {
            rc = pht_error_set(err, PHT_EFORMAT, "%s: an image index inside an image index", what);
            goto out;
        }
        cJSON_Delete(doc);
        pht_registry_manifest_clear(&m);
        m = m2;
        m2 = (pht_registry_manifest){0};
        if ((doc = json_parse(m.data, "manifest", err)) == NULL) {
            rc = PHT_EFORMAT;
            goto out;
        }
    }
    if (strcmp(m.media_type, PHT_MEDIA_DOCKER_MANIFEST) != 0 &&
        strcmp(m.media_type, PHT_MEDIA_OCI_MANIFEST) != 0) {
        rc = pht_error_set(err, PHT_EFORMAT, "%s: unsupported manifest type %.100s", what,
                           m.media_type);
        goto out;
    }
    st->docker = strcmp(m.media_type, PHT_MEDIA_DOCKER_MANIFEST) == 0;
    const cJSON *cd = cJSON_GetObjectItemCaseSensitive(doc, "config");
    const char *cdg = jstr(cd, "digest");
    double csz = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cd, "size"));
    if (!hash_sha256_valid(cdg) || !(csz >= 0)) {
        rc = pht_error_set(err, PHT_EUNSAFE, "%s: the manifest's config has no sha256 digest and size",
                           what);
        goto out;
    }
    if (csz > IMG_JSON_MAX) {
        rc = pht_error_set(err, PHT_ELIMIT, "%s: the image config has %.0f bytes, more than %u",
                           what, csz, IMG_JSON_MAX);
        goto out;
    }
    cb.cap = (size_t)csz;
    if ((cb.p = malloc(cb.cap + 1)) == NULL) {
        rc = oom(err);
        goto out;
    }
    if ((rc = pht_registry_get_blob(st->reg, st->repo, cdg, (int64_t)csz, mem_sink, &cb, err)))
        goto out;
    cb.p[cb.len] = '\0';
    if ((cfg = json_parse(cb.p, "image config", err)) == NULL) {
        rc = PHT_EFORMAT;
        goto out;
    }
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(doc, "layers");
    const cJSON *diffs = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cfg, "rootfs"), "diff_ids");
    int nl = cJSON_GetArraySize(layers);
    if (cJSON_GetArraySize(diffs) != nl) {
        rc = pht_error_set(err, PHT_EFORMAT, "%s: config lists %d diff_ids for %d layers", what,
                           cJSON_GetArraySize(diffs), nl);
        goto out;
    }
    if ((img->layers = calloc((size_t)nl + 1, sizeof *img->layers)) == NULL) {
        rc = oom(err);
        goto out;
    }
    for (int i = 0; i < nl; i++) {
        const cJSON *ld = cJSON_GetArrayItem(layers, i);
        const char *ldg = jstr(ld, "digest"), *mt = jstr(ld, "mediaType");
        const char *di = cJSON_GetStringValue(cJSON_GetArrayItem(diffs, i));
        double sz = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(ld, "size"));
        img_layer *l = &img->layers[i];
        l->fd = -1;
        img->nlayers++;
        if (!hash_sha256_valid(ldg) || !hash_sha256_valid(di) || !(sz >= 0) ||
            sz > (double)img->opts.max_layer_bytes) {
            rc = pht_error_set(err, PHT_EUNSAFE,
                               "%s: layer %d: unsupported or malformed digest or size", what, i);
            goto out;
        }
        strcpy(l->digest, ldg);
        strcpy(l->diff_id, di);
        l->digest_known = 1;
        l->length = (uint64_t)sz;
        l->compression = media_compression(mt);
        snprintf(l->media_type, sizeof l->media_type, "%s", mt ? mt : "");
    }
    img->manifest = m.data;
    m.data = NULL;
    img->config = cb.p;
    img->config_len = cb.len;
    cb.p = NULL;
    img->landed = IMG_LANDED_NONE;
    img->view_root = IMG_PROTOCOL_DIR;
    rc = make_blobdir(img, st, err);
    if (rc == 0 && !st->own_blobdir) {
        loc_add(img->opts.cache_dir, cdg, st->host, st->repo);
        for (size_t i = 0; i < img->nlayers; i++)
            loc_add(img->opts.cache_dir, img->layers[i].digest, st->host, st->repo);
    }
out:
    pht_registry_manifest_clear(&m);
    pht_registry_manifest_clear(&m2);
    cJSON_Delete(doc);
    cJSON_Delete(cfg);
    free(cb.p);
    return rc;
}

static char *blob_file(const rg_state *st, const char *digest)
{
    size_t n = strlen(st->blobdir) + strlen(digest) + 16;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/sha256/%s", st->blobdir, digest + 7);
    return p;
}

/*
 * The blobs of layers first.. in the blob directory (downloaded unless there,
 * digest-checked as they land); cached marks the layers found there already,
 * which the caller must hash.
 */
static int fetch_blobs(pht_image *img, rg_state *st, size_t first, unsigned char *cached,
                       pht_error *err)
{
    int rc = 0;
    for (size_t i = first; rc == 0 && i < img->nlayers; i++) {
        img_layer *l = &img->layers[i];
        if (l->fd >= 0) continue;
        char *path = blob_file(st, l->digest);
        if (path == NULL) return oom(err);
        struct stat sb;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
        if (fd >= 0 && (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) ||
                        (uint64_t)sb.st_size != l->length)) {
            close(fd); /* not the blob: fetch it again over it */
            fd = -1;
        }
        if (cached) cached[i] = fd >= 0;
        if (fd < 0 &&
            (rc = pht_registry_get_blob_file(st->reg, st->repo, l->digest, (int64_t)l->length,
                                             path, err)) == 0 &&
            (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
            rc = pht_error_set(err, PHT_EIO, "%s: %s", path, strerror(errno));
        free(path);
        if (rc) return rc;
        l->fd = fd;
        l->offset = 0;
    }
    return 0;
}

/* Every layer's blob in the blob directory (downloaded unless there), then the index. */
static int land_all(pht_image *img, rg_state *st, pht_error *err)
{
    int rc = fetch_blobs(img, st, 0, NULL, err);
    if (rc) return rc;
    index_free(&img->index);
    if ((rc = index_build(img, err))) return rc;
    /* what /opt reads is hashed (compressed layers were, as they were indexed) */
    for (size_t i = 0; rc == 0 && i < img->nlayers; i++)
        if (img->opts.verify_layers || img->layers[i].holds_opt)
            rc = layer_verify(&img->layers[i], &img->opts, err);
    if (rc == 0) img->landed = IMG_LANDED_ALL;
    return rc;
}

/* A view lands every layer too: which of them hold /opt is only known once they are read. */
static int rg_land(pht_image *img, int want, pht_error *err)
{
    (void)want;
    rg_state *st = img->tpdata;
    if (!st->failed) {
        pht_error e = {0};
        int rc = land_all(img, st, &e);
        if (rc == 0) return 0;
        if (e.code == 0) pht_error_set(&e, rc, "failed");
        pht_error_prefix(&e, "%.200s", pht_image_ref_string(img->ref));
        st->why = e;
        st->failed = 1;
    }
    if (err) *err = st->why;
    return st->why.code;
}

/*
 * The bytes of layers first.. for a commit that sends them, not indexed:
 * downloads are digest-checked as they land, blobs the cache held already
 * are hashed here (headers checked as any scan does).
 */
static int rg_fetch(pht_image *img, size_t first, pht_error *err)
{
    rg_state *st = img->tpdata;
    if (st->failed) {
        if (err) *err = st->why;
        return st->why.code;
    }
    unsigned char *cached = calloc(img->nlayers + 1, 1);
    if (cached == NULL) return oom(err);
    int rc = fetch_blobs(img, st, first, cached, err);
    for (size_t i = first; rc == 0 && i < img->nlayers; i++)
        if (cached[i]) rc = layer_verify(&img->layers[i], &img->opts, err);
    free(cached);
    if (rc) pht_error_prefix(err, "%.200s", pht_image_ref_string(img->ref));
    return rc;
}

static void rg_close(pht_image *img)
{
    rg_state *st = img->tpdata;
    if (st == NULL) return;
    pht_registry_free(st->reg);
    if (st->own_blobdir && st->blobdir) remove_tree(st->blobdir); /* open files stay readable */
    free(st->blobdir);
    free(st->host);
    free(st->repo);
    free(st);
    img->tpdata = NULL;
}

/* where: "HOST\nNAME" of the reference; tag: its tag (a digest reference is refused). */
static int rg_dest_tag(const pht_image_ref *ref, char **where, char **tag, pht_error *err)
{
    const char *t = pht_image_ref_tag(ref);
    *where = *tag = NULL;
    if (pht_image_ref_digest(ref))
        return pht_error_set(err, PHT_EINVAL,
                             "%.200s names an image by its digest, which a push cannot choose; "
                             "write to docker://HOST/REPO:TAG",
                             pht_image_ref_string(ref));
    size_t n = strlen(pht_image_ref_host(ref)) + strlen(pht_image_ref_name(ref)) + 2;
    *where = malloc(n);
    if (*where) snprintf(*where, n, "%s\n%s", pht_image_ref_host(ref), pht_image_ref_name(ref));
    *tag = t ? strdup(t) : NULL;
    if (*where == NULL || (t && *tag == NULL)) {
        free(*where);
        free(*tag);
        *where = *tag = NULL;
        return oom(err);
    }
    return 0;
}

/* ---- push ------------------------------------------------------------------------ */

/* Bytes [off, off+len) of a file as an upload source. */
typedef struct range_src {
    int fd;
    uint64_t off, len, pos;
} range_src;

static int range_read(void *ud, void *buf, size_t cap, size_t *got, pht_error *err)
{
    range_src *s = ud;
    size_t want = s->len - s->pos < cap ? (size_t)(s->len - s->pos) : cap;
    *got = 0;
    if (want == 0) return 0;
    int irc = pht_interrupt_check(err);
    if (irc) return irc;
    for (;;) {
        ssize_t n = pread(s->fd, buf, want, (off_t)(s->off + s->pos));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return pht_error_set(err, PHT_EIO, "layer read failed: %s", strerror(errno));
        if (n == 0) return pht_error_set(err, PHT_EIO, "layer file ends early");
        s->pos += (uint64_t)n;
        *got = (size_t)n;
        return 0;
    }
}

static int range_rewind(void *ud, pht_error *err)
{
    (void)err;
    ((range_src *)ud)->pos = 0;
    return 0;
}

typedef struct mem_src {
    const char *p;
    size_t len, pos;
} mem_src;

static int mem_read(void *ud, void *buf, size_t cap, size_t *got, pht_error *err)
{
    (void)err;
    mem_src *s = ud;
    *got = s->len - s->pos < cap ? s->len - s->pos : cap;
    memcpy(buf, s->p + s->pos, *got);
    s->pos += *got;
    return 0;
}

static int mem_rewind(void *ud, pht_error *err)
{
    (void)err;
    ((mem_src *)ud)->pos = 0;
    return 0;
}

/* A gzip stream written to an anonymous file while its sha256 is computed. */
typedef struct gz_out {
    int fd;
    pht_hash *sha;
    uint64_t size;
    pht_error *err;
    int rc;
} gz_out;

static la_ssize_t gz_write(struct archive *a, void *ud, const void *p, size_t n)
{
    (void)a;
    gz_out *g = ud;
    if (g->rc == 0 && (g->rc = pht_hash_update(g->sha, p, n, g->err)) == 0)
        g->rc = fs_write_all(g->fd, p, n, "compressed layer", g->err);
    if (g->rc) return -1;
    g->size += n;
    return (la_ssize_t)n;
}

static int gz_feed(void *ud, const void *p, size_t n, pht_error *err)
{
    struct archive *a = ud;
    if (archive_write_data(a, p, n) != (la_ssize_t)n)
        return pht_error_set(err, PHT_EIO, "gzip: %s", archive_error_string(a));
    return 0;
}

/*
 * l's tar, gzip-compressed into an anonymous file in tmpdir (*fd), with its
 * digest and size: what a registry gets for a plain tar layer, as docker
 * push sends it (no timestamp in the gzip header: the same tar always gives
 * the same blob).
 */
static int gzip_layer(const img_layer *l, const pht_image_opts *o, int *fd, char *digest,
                      uint64_t *size, pht_error *err)
{
    gz_out g = {.fd = -1, .err = err};
    struct archive *a = NULL;
    struct archive_entry *e = NULL;
    int rc = fs_tmp_anon(fs_tmpdir(o->tmpdir), &g.fd, err);
    if (rc) return rc;
    if ((g.sha = hash_new_sha256(err)) == NULL) {
        rc = err ? err->code : PHT_ENOMEM;
        goto done;
    }
    a = archive_write_new();
    e = archive_entry_new();
    if (a == NULL || e == NULL) {
        rc = oom(err);
        goto done;
    }
    if (archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
        archive_write_set_format_raw(a) != ARCHIVE_OK ||
        archive_write_set_filter_option(a, "gzip", "timestamp", NULL) < ARCHIVE_WARN ||
        archive_write_set_bytes_per_block(a, 0) != ARCHIVE_OK ||
        archive_write_open(a, &g, NULL, gz_write, NULL) != ARCHIVE_OK) {
        rc = g.rc ? g.rc : pht_error_set(err, PHT_EIO, "gzip: %s", archive_error_string(a));
        goto done;
    }
    archive_entry_set_pathname(e, "layer.tar");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    if (archive_write_header(a, e) != ARCHIVE_OK) {
        rc = g.rc ? g.rc : pht_error_set(err, PHT_EIO, "gzip: %s", archive_error_string(a));
        goto done;
    }
    if ((rc = layer_copy_diff(l, o, gz_feed, a, err))) goto done;
    if (archive_write_close(a) != ARCHIVE_OK) {
        rc = g.rc ? g.rc : pht_error_set(err, PHT_EIO, "gzip: %s", archive_error_string(a));
        goto done;
    }
    if (g.rc) {
        rc = g.rc;
        goto done;
    }
    rc = hash_final_sha256(g.sha, digest, err);
    *size = g.size;
done:
    if (a) archive_write_free(a);
    archive_entry_free(e);
    pht_hash_free(g.sha);
    if (rc == 0)
        *fd = g.fd;
    else if (g.fd >= 0)
        close(g.fd);
    return rc;
}

/* The media type a pushed layer gets in a manifest of the chosen kind. */
static const char *push_media(int docker, int comp)
{
    if (docker) return comp == IMG_COMP_GZIP ? MT_DOCKER_GZIP : MT_DOCKER_TAR;
    return layer_media_type(comp);
}

/*
 * The repository of the same registry a blob can be mounted from: that of
 * the registry image (plan->base or plan->src, other than the target) whose
 * layer l is, or whose config has the digest config; NULL for a new blob.
 */
static const char *mount_source(const img_plan *plan, const img_layer *l, const char *config,
                                const char *host, const char *repo)
{
    const pht_image *imgs[] = {plan->base, plan->src};
    for (size_t k = 0; k < 2; k++) {
        const pht_image *img = imgs[k];
        if (img == NULL || img->tp != &img_registry || img->tpdata == NULL) continue;
        const rg_state *st = img->tpdata;
        if (strcmp(st->host, host) != 0 || strcmp(st->repo, repo) == 0) continue;
        int has = l && l >= img->layers && l < img->layers + img->nlayers;
        if (!l && config) {
            char dg[IMG_DIGEST_MAX];
            has = hash_sha256_buf(img->config, img->config_len, dg, NULL) == 0 &&
                  strcmp(dg, config) == 0;
        }
        if (has) return st->repo;
    }
    return NULL;
}

typedef struct pusher {
    pht_registry *reg;
    const char *host, *repo;
    const img_plan *plan;
    char what[600];
    pht_error *err;
    int skipped, mounted, uploaded;
} pusher;

/*
 * Mount digest into the target from `from`, else from the repositories of
 * the same registry the location cache names (at most 3 tries in all):
 * *mounted 1 when one of them did.
 */
static int mount_any(pusher *p, const char *digest, const char *from, int *mounted)
{
    int rc = 0, tries = 0;
    *mounted = 0;
    if (from && (rc = pht_registry_mount_blob(p->reg, p->repo, digest, from, mounted, p->err)))
        return rc;
    tries += from != NULL;
    char *text = *mounted ? NULL : loc_read(p->plan->opts->cache_dir, digest), *save = NULL;
    size_t hl = strlen(p->host);
    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line && !*mounted && tries < 3;
         line = strtok_r(NULL, "\n", &save)) {
        const char *repo = line + hl + 1;
        if (strncmp(line, p->host, hl) != 0 || line[hl] != ' ' || strcmp(repo, p->repo) == 0 ||
            (from && strcmp(repo, from) == 0))
            continue;
        tries++;
        if ((rc = pht_registry_mount_blob(p->reg, p->repo, digest, repo, mounted, p->err))) break;
    }
    free(text);
    return rc;
}

/* 1 in *there when the target has digest (HEAD) or a mount brought it there. */
static int blob_there(pusher *p, const char *digest, uint64_t size, int *there)
{
    int exists = 0, rc;
    int64_t have = -1;
    *there = 0;
    if ((rc = pht_registry_blob_exists(p->reg, p->repo, digest, &exists, &have, p->err))) return rc;
    if (exists && (have < 0 || (uint64_t)have == size)) {
        p->skipped++;
        *there = 1;
        return 0;
    }
    if ((rc = mount_any(p, digest, NULL, there)) == 0 && *there) p->mounted++;
    return rc;
}

/* Put one blob: skipped when there, mounted when another repository has it, else sent. */
static int push_blob(pusher *p, const char *digest, uint64_t size, const img_layer *l, int fd,
                     uint64_t off, const char *mem, const char *from)
{
    int exists = 0, mounted = 0, how = 0, rc;
    int64_t have = -1;
    char out[PHT_REGISTRY_DIGEST_MAX];
    if ((rc = pht_registry_blob_exists(p->reg, p->repo, digest, &exists, &have, p->err))) return rc;
    if (exists && (have < 0 || (uint64_t)have == size)) {
        p->skipped++;
        return 0;
    }
    if ((rc = mount_any(p, digest, from, &mounted))) return rc;
    if (mounted) {
        p->mounted++;
        return 0;
    }
    if (mem == NULL && l && l->fd < 0) { /* the bytes are needed now: land the base */
        if ((rc = img_land(p->plan->base, IMG_LANDED_ALL, p->err))) return rc;
        fd = l->fd;
        off = l->offset;
    }
    pht_registry_upload up;
    pht_registry_upload_init(&up);
    range_src rs = {.fd = fd, .off = off, .len = size};
    mem_src ms = {.p = mem, .len = (size_t)size};
    up.digest = digest;
    up.size = (int64_t)size;
    up.read = mem ? mem_read : range_read;
    up.rewind = mem ? mem_rewind : range_rewind;
    up.ud = mem ? (void *)&ms : (void *)&rs;
    rc = pht_registry_upload_blob(p->reg, p->repo, &up, out, &how, p->err);
    if (rc == 0) p->uploaded++;
    return rc;
}

static cJSON *descriptor(const char *mt, const char *digest, uint64_t size)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "mediaType", mt);
    cJSON_AddNumberToObject(d, "size", (double)size);
    cJSON_AddStringToObject(d, "digest", digest);
    return d;
}

/* A tag as the distribution spec allows it: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}. */
static int tag_valid(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 128 || t[0] == '.' || t[0] == '-') return 0;
    return strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

static int rg_commit(const char *where, const img_plan *plan, pht_error *err)
{
    const char *nl = strchr(where, '\n');
    char *host = nl ? strndup(where, (size_t)(nl - where)) : NULL, *h = NULL, *repo = NULL;
    pusher p = {.plan = plan, .err = err};
    cJSON *man = NULL, *layers;
    char *text = NULL, mdg[PHT_REGISTRY_DIGEST_MAX];
    int rc = host ? split_name(host, nl + 1, &h, &repo, err) : oom(err), docker = 1;
    int *gzfd = calloc(plan->nlayers + 1, sizeof *gzfd);
    for (size_t i = 0; gzfd && i < plan->nlayers; i++)
        gzfd[i] = -1;
    if (rc == 0 && gzfd == NULL) rc = oom(err);
    for (size_t k = 0; rc == 0 && k < plan->ntags; k++)
        if (!tag_valid(plan->tags[k]))
            rc = pht_error_set(err, PHT_EINVAL, "\"%.200s\" is not a registry tag", plan->tags[k]);
    /* an image known to be bad (a blob that did not verify) goes nowhere, mounted or not */
    const pht_image *srcs[] = {plan->base, plan->src};
    for (size_t k = 0; rc == 0 && k < 2; k++) {
        const rg_state *st = srcs[k] && srcs[k]->tp == &img_registry ? srcs[k]->tpdata : NULL;
        if (st && st->failed) {
            if (err) *err = st->why;
            rc = st->why.code;
        }
    }
    if (rc) goto out;
    p.host = h;
    p.repo = repo;
    snprintf(p.what, sizeof p.what, "registry %s, repository %s", h, repo);
    pht_registry_options o;
    reg_opts(plan->opts, &o);
    if ((rc = pht_registry_open(&p.reg, h, &o, err))) goto out;
    for (size_t i = 0; i < plan->nlayers; i++)
        if (plan->layers[i]->compression == IMG_COMP_ZSTD) docker = 0; /* Docker schema 2 has no zstd */
    man = cJSON_CreateObject();
    cJSON_AddNumberToObject(man, "schemaVersion", 2);
    cJSON_AddStringToObject(man, "mediaType",
                            docker ? PHT_MEDIA_DOCKER_MANIFEST : PHT_MEDIA_OCI_MANIFEST);
    cJSON_AddItemToObject(man, "config", descriptor(docker ? MT_DOCKER_CONFIG : MT_OCI_CONFIG,
                                                    plan->config_digest, plan->config_len));
    layers = cJSON_AddArrayToObject(man, "layers");
    for (size_t i = 0; rc == 0 && i < plan->nlayers; i++) {
        const img_layer *l = plan->layers[i];
        int comp = l->compression;
        char dg[IMG_DIGEST_MAX];
        uint64_t size = l->length;
        snprintf(dg, sizeof dg, "%s", l->digest);
        if (comp == IMG_COMP_NONE || comp == IMG_COMP_OTHER) {
            /* a plain (or otherwise compressed) tar goes up as gzip, unless its gzip is there */
            int there = 0;
            if (gz_known(plan->opts->cache_dir, l->diff_id, dg, &size) &&
                (rc = blob_there(&p, dg, size, &there)))
                break;
            if (!there) {
                if (l->fd < 0 && (rc = img_land(plan->base, IMG_LANDED_ALL, err))) break;
                if ((rc = gzip_layer(l, plan->opts, &gzfd[i], dg, &size, err))) break;
                rc = push_blob(&p, dg, size, NULL, gzfd[i], 0, NULL, NULL);
                if (rc == 0) gz_remember(plan->opts->cache_dir, l->diff_id, dg, size);
            }
            comp = IMG_COMP_GZIP;
        } else {
            rc = push_blob(&p, dg, size, l, l->fd, l->offset, NULL,
                           mount_source(plan, l, NULL, h, repo));
        }
        if (rc) pht_error_prefix(err, "layer %zu", i);
        cJSON_AddItemToArray(layers, descriptor(push_media(docker, comp), dg, size));
    }
    if (rc == 0 && (rc = push_blob(&p, plan->config_digest, plan->config_len, NULL, -1, 0,
                                   plan->config,
                                   mount_source(plan, NULL, plan->config_digest, h, repo))))
        pht_error_prefix(err, "config");
    if (rc == 0 && (text = cJSON_PrintUnformatted(man)) == NULL) rc = oom(err);
    /* the manifest last: only now may a tag move */
    const char *mt = docker ? PHT_MEDIA_DOCKER_MANIFEST : PHT_MEDIA_OCI_MANIFEST;
    for (size_t k = 0; rc == 0 && k < (plan->ntags ? plan->ntags : 1); k++) {
        const char *ref = NULL;
        char own[PHT_REGISTRY_DIGEST_MAX];
        if (plan->ntags)
            ref = plan->tags[k];
        else if ((rc = hash_sha256_buf(text, strlen(text), own, err)) == 0)
            ref = own;
        if (rc == 0)
            rc = pht_registry_put_manifest(p.reg, repo, ref, mt, text, strlen(text), mdg, err);
    }
    if (rc == 0) { /* the target has them now: a later push elsewhere may mount them */
        const cJSON *d;
        cJSON_ArrayForEach(d, layers) loc_add(plan->opts->cache_dir, jstr(d, "digest"), h, repo);
        loc_add(plan->opts->cache_dir, plan->config_digest, h, repo);
    }
out:
    for (size_t i = 0; gzfd && i < plan->nlayers; i++)
        if (gzfd[i] >= 0) close(gzfd[i]);
    free(gzfd);
    pht_registry_free(p.reg);
    cJSON_Delete(man);
    free(text);
    free(host);
    free(h);
    free(repo);
    return rc;
}

const img_transport img_registry = {
    .open = rg_open,
    .land = rg_land,
    .fetch = rg_fetch,
    .close = rg_close,
    .dest_tag = rg_dest_tag,
    .commit = rg_commit,
};
