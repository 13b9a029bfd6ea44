/*
 * The oci-archive transport: an OCI image layout in a tar file, as skopeo's
 * oci-archive: writes it. An open unpacks the archive into a private
 * temporary directory (only the layout's own names: oci-layout, index.json,
 * blobs/sha256/HEX, regular files) and reads it there through the oci
 * transport; a commit unpacks the destination archive (when there is one),
 * commits into that layout through the oci transport, packs it into a
 * temporary file beside PATH and renames it over PATH: the archive is
 * replaced atomically, or left as it was.
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
#include "transport_private.h"
#include "pht/interrupt.h"

typedef struct oa_state {
    char dir[4096]; /* the unpacked layout */
    void *oci;      /* the oci transport's state for it */
} oa_state;

static int oom(pht_error *err)
{
    return pht_error_set(err, PHT_ENOMEM, "out of memory");
}

/* "oci-layout", "index.json", "blobs", "blobs/sha256", "blobs/sha256/HEX" (after "./"). */
static const char *layout_name(const char *name, int *is_dir)
{
    while (name[0] == '.' && name[1] == '/')
        name += 2;
    size_t n = strlen(name);
    char buf[200];
    if (n == 0 || n >= sizeof buf) return NULL;
    memcpy(buf, name, n + 1);
    if (buf[n - 1] == '/') buf[--n] = '\0';
    *is_dir = strcmp(buf, "blobs") == 0 || strcmp(buf, "blobs/sha256") == 0;
    if (*is_dir || strcmp(buf, "oci-layout") == 0 || strcmp(buf, "index.json") == 0) return name;
    char dg[IMG_DIGEST_MAX];
    if (strncmp(buf, "blobs/sha256/", 13) != 0) return NULL;
    snprintf(dg, sizeof dg, "sha256:%.70s", buf + 13);
    return hash_sha256_valid(dg) ? name : NULL;
}

/* Unpack the layout archive at path into dir (which exists). */
static int unpack(const char *path, const char *dir, const pht_image_opts *o, pht_error *err)
{
    struct archive *a = archive_read_new();
    if (a == NULL) return oom(err);
    archive_read_support_format_tar(a);
    archive_read_support_filter_all(a);
    int rc = 0, dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    uint64_t entries = 0;
    if (dfd < 0) rc = pht_error_set(err, PHT_EIO, "%s: %s", dir, strerror(errno));
    if (rc == 0 && archive_read_open_filename(a, path, PHT_CHUNK_SIZE) != ARCHIVE_OK)
        rc = pht_error_set(err, errno == ENOENT ? PHT_ENOTFOUND : PHT_EFORMAT, "%s: %s", path,
                           archive_error_string(a));
    mkdirat(dfd, "blobs", 0700);
    mkdirat(dfd, "blobs/sha256", 0700);
    struct archive_entry *e;
    while (rc == 0) {
        int x = archive_read_next_header(a, &e);
        if (x == ARCHIVE_EOF) break;
        if (x != ARCHIVE_OK && x != ARCHIVE_WARN) {
            rc = pht_error_set(err, PHT_EFORMAT, "%s: %s", path, archive_error_string(a));
            break;
        }
        if (++entries > o->max_entries) {
            rc = pht_error_set(err, PHT_ELIMIT, "%s: more than %llu entries", path,
                               (unsigned long long)o->max_entries);
            break;
        }
        int is_dir = 0;
        const char *name = layout_name(archive_entry_pathname(e), &is_dir);
        int type = archive_entry_filetype(e);
        if (name == NULL || (is_dir ? type != AE_IFDIR : type != AE_IFREG)) {
            rc = pht_error_set(err, PHT_EUNSAFE,
                               "%s: entry \"%.200s\" is not part of an OCI image layout", path,
                               archive_entry_pathname(e));
            break;
        }
        if (is_dir) continue;
        int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            rc = pht_error_set(err, errno == EEXIST ? PHT_EFORMAT : PHT_EIO,
                               "%s: entry %.200s: %s", path, name,
                               errno == EEXIST ? "given twice" : strerror(errno));
            break;
        }
        const void *buf;
        size_t len;
        la_int64_t off;
        while (rc == 0 && (x = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK)
            rc = fs_write_all(fd, buf, len, name, err);
        if (rc == 0 && x != ARCHIVE_EOF)
            rc = pht_error_set(err, PHT_EFORMAT, "%s: entry %s: %s", path, name,
                               archive_error_string(a));
        close(fd);
    }
    if (dfd >= 0) close(dfd);
    archive_read_free(a);
    return rc;
}

static la_ssize_t pack_write(struct archive *a, void *ud, const void *p, size_t n)
{
    (void)a;
    pht_error ignore;
    return fs_write_all(*(int *)ud, p, n, "oci-archive", &ignore) == 0 ? (la_ssize_t)n : -1;
}

/* One file of the layout into the archive being written. */
static int pack_file(struct archive *a, const char *dir, const char *name, pht_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0) close(fd);
        return pht_error_set(err, PHT_EIO, "%s: %s", path, strerror(errno));
    }
    int rc = layer_tar_file_header(a, name, (uint64_t)sb.st_size);
    if (rc) rc = pht_error_set(err, rc, "oci-archive: %s", archive_error_string(a));
    char *buf = rc ? NULL : malloc(PHT_CHUNK_SIZE);
    if (rc == 0 && buf == NULL) rc = oom(err);
    while (rc == 0 && (rc = pht_interrupt_check(err)) == 0) {
        ssize_t n = read(fd, buf, PHT_CHUNK_SIZE);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = pht_error_set(err, PHT_EIO, "%s: %s", path, strerror(errno));
        if (n <= 0) break;
        if (archive_write_data(a, buf, (size_t)n) != n)
            rc = pht_error_set(err, PHT_EIO, "oci-archive: %s", archive_error_string(a));
    }
    free(buf);
    close(fd);
    return rc;
}

/* Pack the layout at dir into a temporary file beside path, then rename it over path. */
static int pack(const char *dir, const char *path, pht_error *err)
{
    char *tmp = NULL;
    int fd = -1, rc = fs_tmp_beside(path, &tmp, &fd, err);
    if (rc) return rc;
    struct archive *a = archive_write_new();
    if (a == NULL) rc = oom(err);
    if (rc == 0 && (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
                    archive_write_open(a, &fd, NULL, pack_write, NULL) != ARCHIVE_OK))
        rc = pht_error_set(err, PHT_EIO, "%s: %s", tmp, archive_error_string(a));
    if (rc == 0) rc = pack_file(a, dir, "oci-layout", err);
    if (rc == 0) rc = pack_file(a, dir, "index.json", err);
    char bdir[4200];
    snprintf(bdir, sizeof bdir, "%s/blobs/sha256", dir);
    DIR *d = rc == 0 ? opendir(bdir) : NULL;
    if (rc == 0 && d == NULL) rc = pht_error_set(err, PHT_EIO, "%s: %s", bdir, strerror(errno));
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        char name[300], dg[IMG_DIGEST_MAX];
        snprintf(dg, sizeof dg, "sha256:%.70s", de->d_name);
        if (!hash_sha256_valid(dg)) continue; /* "." and a commit's leftovers */
        snprintf(name, sizeof name, "blobs/sha256/%s", de->d_name);
        rc = pack_file(a, dir, name, err);
    }
    if (d) closedir(d);
    if (rc == 0 && archive_write_close(a) != ARCHIVE_OK)
        rc = pht_error_set(err, PHT_EIO, "%s: %s", tmp, archive_error_string(a));
    if (a) archive_write_free(a);
    if (rc == 0) rc = fs_commit_file(fd, tmp, path, err);
    close(fd);
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

/* A private directory for a layout, and the oci: reference of it (with tag). */
static int layout_ref(const char *tmpdir, const char *tag, char *dir, size_t cap,
                      pht_image_ref **ref, pht_error *err)
{
    *ref = NULL;
    int rc = pht_mkdtemp(tmpdir, dir, cap, err);
    if (rc) return rc;
    size_t n = strlen(dir) + (tag ? strlen(tag) : 0) + 8;
    char *s = malloc(n);
    if (s == NULL) return oom(err);
    snprintf(s, n, "oci:%s%s%s", dir, tag ? ":" : "", tag ? tag : "");
    rc = pht_image_ref_parse(s, 0, ref, err);
    free(s);
    return rc;
}

static int oa_open(pht_image *img, const pht_image_ref *ref, pht_error *err)
{
    oa_state *st = calloc(1, sizeof *st);
    if (st == NULL) return oom(err);
    pht_image_ref *inner = NULL;
    int rc = layout_ref(img->tmpdir, pht_image_ref_tag(ref), st->dir, sizeof st->dir, &inner, err);
    if (rc == 0) rc = unpack(pht_image_ref_path(ref), st->dir, &img->opts, err);
    if (rc == 0) rc = img_oci.open(img, inner, err);
    pht_image_ref_free(inner);
    st->oci = img->tpdata; /* the oci transport's, set by its open (even a failed one) */
    img->tpdata = st;
    return rc;
}

static void oa_close(pht_image *img)
{
    oa_state *st = img->tpdata;
    if (st == NULL) return;
    img->tpdata = st->oci;
    img_oci.close(img);
    pht_error ignore;
    if (st->dir[0]) pht_remove_tree(st->dir, &ignore); /* open layer files stay readable */
    free(st);
    img->tpdata = NULL;
}

static int oa_dest_tag(const pht_image_ref *ref, char **where, char **tag, pht_error *err)
{
    return img_oci.dest_tag(ref, where, tag, err);
}

static int oa_commit(const char *where, const img_plan *plan, pht_error *err)
{
    char dir[4096];
    pht_image_ref *inner = NULL;
    int rc = layout_ref(fs_tmpdir(plan->opts->tmpdir), NULL, dir, sizeof dir, &inner, err);
    pht_image_ref_free(inner);
    if (rc) return rc;
    struct stat sb;
    if (stat(where, &sb) == 0) rc = unpack(where, dir, plan->opts, err);
    if (rc == 0) rc = img_oci.commit(dir, plan, err);
    if (rc == 0) rc = pack(dir, where, err);
    pht_error ignore;
    pht_remove_tree(dir, &ignore);
    return rc;
}

const img_transport img_oci_archive = {
    .open = oa_open,
    .close = oa_close,
    .dest_tag = oa_dest_tag,
    .commit = oa_commit,
};
