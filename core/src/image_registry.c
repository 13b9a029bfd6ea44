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
 * never moves a tag (image_registry_push.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_private.h"
#include "hash_private.h"
#include "image_registry_private.h"

int rg_oom(pht_error *err)
{
    return pht_error_set(err, PHT_ENOMEM, "out of memory");
}

/* The registry options of an image's options. */
void rg_reg_opts(const pht_image_opts *io, pht_registry_options *o)
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
int rg_split_name(const char *host, const char *name, char **h, char **repo, pht_error *err)
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
        return rg_oom(err);
    }
    snprintf(*repo, n, "%s%s",
             hub && strcmp(host, "docker.io") == 0 && !strchr(r, '/') ? "library/" : "", r);
    return 0;
}

static int is_index(const char *mt)
{
    return mt && (strcmp(mt, PHT_MEDIA_OCI_INDEX) == 0 || strcmp(mt, PHT_MEDIA_DOCKER_LIST) == 0);
}

const char *rg_jstr(const cJSON *o, const char *k)
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
        const char *o = rg_jstr(pl, "os"), *a = rg_jstr(pl, "architecture"),
                   *v = rg_jstr(pl, "variant");
        if (o && a && used < sizeof seen) {
            int n = snprintf(seen + used, sizeof seen - used, "%s%s/%s%s%s", used ? ", " : "", o, a,
                             v ? "/" : "", v ? v : "");
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
    if ((st->blobdir = strdup(path)) == NULL) return rg_oom(err);
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

int rg_gz_known(const char *cache_dir, const char *diff_id, char *digest, uint64_t *size)
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

void rg_gz_remember(const char *cache_dir, const char *diff_id, const char *digest, uint64_t size)
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
char *rg_loc_read(const char *cache_dir, const char *digest)
{
    char path[4200], *text = NULL;
    size_t len;
    pht_error ignore;
    if (loc_path(cache_dir, digest, path, sizeof path, 0) != 0) return NULL;
    if (fs_read_small(path, 64u << 10, &text, &len, &ignore) != 0) return NULL;
    return text;
}

void rg_loc_add(const char *cache_dir, const char *digest, const char *host, const char *repo)
{
    char path[4200], line[1200];
    snprintf(line, sizeof line, "%s %s\n", host, repo);
    if (strchr(host, ' ') || strchr(line, '\n') != line + strlen(line) - 1) return;
    char *text = rg_loc_read(cache_dir, digest);
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
    if (st == NULL) return rg_oom(err);
    img->tpdata = st;
    pht_registry_options o;
    pht_registry_manifest m = {0}, m2 = {0};
    cJSON *doc = NULL, *cfg = NULL;
    membuf cb = {0};
    char what[600];
    int rc =
        rg_split_name(pht_image_ref_host(ref), pht_image_ref_name(ref), &st->host, &st->repo, err);
    if (rc) return rc;
    snprintf(what, sizeof what, "registry %s, repository %s", st->host, st->repo);
    rg_reg_opts(&img->opts, &o);
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
        const char *mdg = d ? rg_jstr(d, "digest") : NULL;
        if (d == NULL) {
            rc = err ? err->code : PHT_ENOTFOUND;
            goto out;
        }
        if (!hash_sha256_valid(mdg)) {
            rc = pht_error_set(err, PHT_EUNSAFE, "%s: the image index names digest \"%.80s\"", what,
                               mdg ? mdg : "");
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
    const char *cdg = rg_jstr(cd, "digest");
    double csz = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cd, "size"));
    if (!hash_sha256_valid(cdg) || !(csz >= 0)) {
        rc = pht_error_set(err, PHT_EUNSAFE,
                           "%s: the manifest's config has no sha256 digest and size", what);
        goto out;
    }
    if (csz > IMG_JSON_MAX) {
        rc = pht_error_set(err, PHT_ELIMIT, "%s: the image config has %.0f bytes, more than %u",
                           what, csz, IMG_JSON_MAX);
        goto out;
    }
    cb.cap = (size_t)csz;
    if ((cb.p = malloc(cb.cap + 1)) == NULL) {
        rc = rg_oom(err);
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
        rc = rg_oom(err);
        goto out;
    }
    for (int i = 0; i < nl; i++) {
        const cJSON *ld = cJSON_GetArrayItem(layers, i);
        const char *ldg = rg_jstr(ld, "digest"), *mt = rg_jstr(ld, "mediaType");
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
        rg_loc_add(img->opts.cache_dir, cdg, st->host, st->repo);
        for (size_t i = 0; i < img->nlayers; i++)
            rg_loc_add(img->opts.cache_dir, img->layers[i].digest, st->host, st->repo);
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
        if (path == NULL) return rg_oom(err);
        struct stat sb;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
        if (fd >= 0 &&
            (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != l->length)) {
            close(fd); /* not the blob: fetch it again over it */
            fd = -1;
        }
        if (cached) cached[i] = fd >= 0;
        int fetched = fd < 0;
        if (fd < 0 &&
            (rc = pht_registry_get_blob_file(st->reg, st->repo, l->digest, (int64_t)l->length, path,
                                             err)) == 0 &&
            (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
            rc = pht_error_set(err, PHT_EIO, "%s: %s", path, strerror(errno));
        if (rc == 0 && fetched) img_progress(&img->opts, l->length); /* counted once it is there */
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
    if ((rc = index_build(img, 0, err))) return rc;
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
    if (cached == NULL) return rg_oom(err);
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
        return rg_oom(err);
    }
    return 0;
}

const img_transport img_registry = {
    .open = rg_open,
    .land = rg_land,
    .fetch = rg_fetch,
    .close = rg_close,
    .dest_tag = rg_dest_tag,
    .commit = rg_commit,
};
