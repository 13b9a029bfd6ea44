/* Small helpers of the image layer: sha256 over EVP, files, JSON, media types. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive_entry.h>
#include <openssl/evp.h>

#include "image_internal.h"
#include "pht/util.h"

struct img_sha {
    EVP_MD_CTX *ctx;
};

img_sha *img_sha_new(pht_error *err)
{
    img_sha *s = calloc(1, sizeof *s);
    if (s == NULL) {
        pht_error_set(err, PHT_ENOMEM, "sha256: out of memory");
        return NULL;
    }
    s->ctx = EVP_MD_CTX_new();
    if (s->ctx == NULL || EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL) != 1) {
        pht_error_set_ssl(err, PHT_ECRYPTO, "sha256: init failed");
        img_sha_free(s);
        return NULL;
    }
    return s;
}

void img_sha_update(img_sha *s, const void *p, size_t n)
{
    if (s && n) EVP_DigestUpdate(s->ctx, p, n);
}

int img_sha_final(img_sha *s, char *out, pht_error *err)
{
    unsigned char md[32];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(s->ctx, md, &len) != 1 || len != 32 ||
        EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL) != 1)
        return pht_error_set_ssl(err, PHT_ECRYPTO, "sha256: final failed");
    memcpy(out, "sha256:", 7);
    pht_hex_encode(md, 32, out + 7);
    return 0;
}

void img_sha_free(img_sha *s)
{
    if (s == NULL) return;
    EVP_MD_CTX_free(s->ctx);
    free(s);
}

int img_sha_buf(const void *p, size_t n, char *out, pht_error *err)
{
    img_sha *s = img_sha_new(err);
    if (s == NULL) return err ? err->code : PHT_ECRYPTO;
    img_sha_update(s, p, n);
    int rc = img_sha_final(s, out, err);
    img_sha_free(s);
    return rc;
}

int img_digest_valid(const char *d)
{
    if (d == NULL || strncmp(d, "sha256:", 7) != 0 || strlen(d) != 71) return 0;
    for (const char *c = d + 7; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) return 0;
    return 1;
}

int img_pread_all(int fd, uint64_t off, uint64_t len, uint64_t cap, char **out, const char *what,
                  pht_error *err)
{
    *out = NULL;
    if (len > cap)
        return pht_error_set(err, PHT_ELIMIT, "%s: %llu bytes exceed the cap of %llu bytes", what,
                             (unsigned long long)len, (unsigned long long)cap);
    char *b = malloc((size_t)len + 1);
    if (b == NULL) return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", what);
    uint64_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, b + got, (size_t)(len - got), (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(b);
            return pht_error_set(err, PHT_EIO, "%s: read failed: %s", what,
                                 r < 0 ? strerror(errno) : "unexpected end of file");
        }
        got += (uint64_t)r;
    }
    b[len] = '\0';
    *out = b;
    return 0;
}

int img_read_small(const char *path, uint64_t cap, char **out, size_t *len, pht_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* FIFOs refused below */
    if (fd < 0)
        return pht_error_set(err, errno == ENOENT ? PHT_ENOTFOUND : PHT_EIO, "%s: %s", path,
                             strerror(errno));
    struct stat st;
    int rc;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = pht_error_set(err, PHT_EFORMAT, "%s: not a regular file", path);
    else
        rc = img_pread_all(fd, 0, (uint64_t)st.st_size, cap, out, path, err);
    if (rc == 0 && len) *len = (size_t)st.st_size;
    close(fd);
    return rc;
}

int img_write_all(int fd, const void *p, size_t n, const char *what, pht_error *err)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return pht_error_set(err, PHT_EIO, "%s: write failed: %s", what,
                                 w < 0 ? strerror(errno) : "no progress");
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

char *img_dirname(const char *path)
{
    const char *s = strrchr(path, '/');
    if (s == NULL) return strdup(".");
    if (s == path) return strdup("/");
    return strndup(path, (size_t)(s - path));
}

/* mkstemp on the template t; the error names the file. t stays the caller's. */
static int tmp_create(char *t, int *fd, pht_error *err)
{
    int f = mkstemp(t);
    if (f < 0)
        return pht_error_set(err, PHT_EIO, "%s: cannot create a temporary file: %s", t,
                             strerror(errno));
    *fd = f;
    return 0;
}

int img_tmp_beside(const char *path, char **tmp, int *fd, pht_error *err)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *dir = img_dirname(path);
    size_t n = (dir ? strlen(dir) : 0) + strlen(base) + 16;
    char *t = dir ? malloc(n) : NULL;
    if (t == NULL) {
        free(dir);
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    snprintf(t, n, "%s/.%s.XXXXXX", dir, base);
    free(dir);
    int rc = tmp_create(t, fd, err);
    if (rc) {
        free(t);
        return rc;
    }
    fchmod(*fd, 0644);
    *tmp = t;
    return 0;
}

int img_tmp_anon(const char *dir, int *fd, pht_error *err)
{
    size_t n = strlen(dir) + 24;
    char *t = malloc(n);
    if (t == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    snprintf(t, n, "%s/pht-layer-XXXXXX", dir);
    int rc = tmp_create(t, fd, err);
    if (rc == 0) unlink(t);
    free(t);
    return rc;
}

int img_fsync_dir(const char *dir, pht_error *err)
{
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) return pht_error_set(err, PHT_EIO, "%s: %s", dir, strerror(errno));
    int rc = 0;
    if (fsync(d) != 0)
        rc = pht_error_set(err, PHT_EIO, "%s: fsync failed: %s", dir, strerror(errno));
    close(d);
    return rc;
}

int img_commit_file(int fd, const char *tmp, const char *path, pht_error *err)
{
    if (fsync(fd) != 0)
        return pht_error_set(err, PHT_EIO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (rename(tmp, path) != 0)
        return pht_error_set(err, PHT_EIO, "rename %s to %s failed: %s", tmp, path,
                             strerror(errno));
    char *dir = img_dirname(path);
    if (dir == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    int rc = img_fsync_dir(dir, err);
    free(dir);
    return rc;
}

char *img_tmpdir(const char *dir)
{
    if (dir == NULL || dir[0] == '\0') dir = getenv("TMPDIR");
    if (dir == NULL || dir[0] == '\0') dir = "/tmp";
    return strdup(dir);
}

cJSON *img_json_parse(const char *text, const char *what, pht_error *err)
{
    cJSON *j = cJSON_Parse(text);
    if (j == NULL) pht_error_set(err, PHT_EFORMAT, "%s: malformed JSON", what);
    return j;
}

int img_tar_file_header(struct archive *a, const char *name, uint64_t size)
{
    struct archive_entry *e = archive_entry_new();
    if (e == NULL) return PHT_ENOMEM;
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)size);
    int r = archive_write_header(a, e);
    archive_entry_free(e);
    return r == ARCHIVE_OK ? 0 : PHT_EIO;
}

const char *img_layer_media_type(int c)
{
    switch (c) {
    case IMG_COMP_GZIP:
        return "application/vnd.oci.image.layer.v1.tar+gzip";
    case IMG_COMP_ZSTD:
        return "application/vnd.oci.image.layer.v1.tar+zstd";
    default:
        return "application/vnd.oci.image.layer.v1.tar";
    }
}

int img_media_compression(const char *mt)
{
    if (mt == NULL) return -1;
    size_t n = strlen(mt);
    if (n >= 5 && strcmp(mt + n - 5, "+gzip") == 0) return IMG_COMP_GZIP;
    if (n >= 5 && strcmp(mt + n - 5, "+zstd") == 0) return IMG_COMP_ZSTD;
    if (strcmp(mt, "application/vnd.docker.image.rootfs.diff.tar.gzip") == 0) return IMG_COMP_GZIP;
    if (n >= 4 && strcmp(mt + n - 4, ".tar") == 0) return IMG_COMP_NONE;
    return -1;
}

void img_layer_clear(img_layer *l)
{
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    free(l->created_by);
    free(l->comment);
    l->created_by = l->comment = NULL;
}
