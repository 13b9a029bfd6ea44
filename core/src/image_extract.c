/*
 * Safe extraction of an image subtree to disk (pht_image_extract).
 *
 * Every entry is created relative to a descriptor of its parent directory,
 * which is opened beneath the destination without following any symlink
 * (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or one O_NOFOLLOW
 * component at a time where the kernel lacks it), and the entry itself with
 * O_NOFOLLOW / O_EXCL. So nothing is ever written through a symlink, whatever
 * the layers hold, and a deep path costs one descriptor, not a check of every
 * component of every path.
 *
 * Three passes keep the cost linear in the entries' paths and the layers'
 * bytes: (1) the walk creates directories (owner-only at first) and symlinks
 * in walk order and collects the regular files; (2) the files are written
 * layer by layer in archive order, so each layer is decompressed once however
 * many files it holds and in whatever order its archive lists them; (3) a
 * second walk gives each directory its time and, once its subtree is done,
 * its mode.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

#include "fs_private.h"
#include "hash_private.h"
#include "image_private.h"
#include "pht/interrupt.h"

typedef struct xfile {
    const img_entry *e; /* a stored entry: lives as long as the image */
    size_t seq;         /* walk position: ties keep walk order */
} xfile;

/* A directory whose mode waits for its subtree: path[0, len) of xctx.chain. */
typedef struct xdir {
    size_t len;
    uint32_t mode;
    int64_t mtime;
} xdir;

typedef struct xctx {
    pht_image *img;
    const char *dest;
    int root;     /* dest_dir */
    size_t skip;  /* bytes of dir's path and its slash in an entry's path */
    int as_root;  /* keep owners */
    uint64_t cap; /* entries to write at most */
    uint64_t count;
    int pfd;     /* the parent directory opened last, -1 if none */
    char *ppath; /* its path relative to dest */
    size_t plen, pcap;
    unsigned char *buf;
    xfile *f;
    size_t fn, fcap;
    char *chain; /* pass 3: the path of the deepest pending directory */
    size_t ccap;
    xdir *d;
    size_t dn, dcap;
    pht_error *err;
} xctx;

static int x_errno(xctx *x, const char *rel, int e)
{
    return pht_error_set(x->err, PHT_EIO, "extract %s/%s: %s", x->dest, rel,
                         e == ELOOP || e == EXDEV || e == ENOTDIR
                             ? "a parent directory is a symlink or not a directory"
                             : strerror(e));
}

static int grow(void *pp, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *v = realloc(*(void **)pp, n * size);
    if (v == NULL) return PHT_ENOMEM;
    *(void **)pp = v;
    *cap = n;
    return 0;
}

/* Whether openat2 answers here (valgrind and old kernels say ENOSYS): 1, 0, or -1 unknown. */
static atomic_int have_openat2 = -1;

/*
 * Open path (relative, normalized) beneath root one O_NOFOLLOW component at a
 * time. With repair, a component that is a symlink (a layer put entries below
 * its own symlink) is replaced by a directory, as extracting in walk order
 * with libarchive's secure flags did, and a missing one (below a skipped
 * device) is created.
 */
static int walk_beneath(int root, char *path, int repair)
{
    int fd = openat(root, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    for (char *c = path; fd >= 0 && *c;) {
        char *end = strchr(c, '/');
        if (end) *end = '\0';
        int next = openat(fd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && repair) {
            struct stat st;
            int r = fstatat(fd, c, &st, AT_SYMLINK_NOFOLLOW);
            int gone = r != 0 && errno == ENOENT, link = r == 0 && S_ISLNK(st.st_mode);
            if ((gone || (link && unlinkat(fd, c, 0) == 0)) &&
                (mkdirat(fd, c, 0755) == 0 || errno == EEXIST))
                next = openat(fd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            else if (r == 0 && !link)
                errno = ENOTDIR;
        }
        int e = errno;
        if (end) *end = '/';
        close(fd);
        fd = next;
        errno = e;
        c = end ? end + 1 : c + strlen(c);
    }
    return fd;
}

/* A descriptor of the directory at path (relative, normalized) beneath root. */
static int open_beneath(int root, char *path)
{
#ifdef SYS_openat2
    if (atomic_load(&have_openat2) != 0) {
        struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                               .resolve =
                                   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
        long fd = syscall(SYS_openat2, root, path, &how, sizeof how);
        if (fd >= 0 || errno != ENOSYS) {
            atomic_store(&have_openat2, 1);
            return (int)fd;
        }
        atomic_store(&have_openat2, 0);
    }
#endif
    return walk_beneath(root, path, 0);
}

/* Components of p[0, n) after byte c, where c is 0, n or the position of a '/'. */
static size_t comps_after(const char *p, size_t n, size_t c)
{
    if (c >= n) return 0;
    size_t d = c ? 0 : 1;
    for (const char *s = p + c; (s = memchr(s, '/', n - (size_t)(s - p))) != NULL; s++)
        d++;
    return d;
}

/*
 * Move the cached descriptor from ppath up to its first common bytes with
 * path (c, a component boundary of both) with "..", then down to path[0, pl)
 * one O_NOFOLLOW component at a time. -1 with errno set on failure.
 */
static int x_step(xctx *x, const char *path, size_t pl, size_t c)
{
    size_t ups = comps_after(x->ppath, x->plen, c);
    int fd = x->pfd;
    x->pfd = -1;
    for (size_t k = 0; fd >= 0 && k < ups; k++) {
        int up = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        close(fd);
        fd = up;
    }
    for (size_t i = c; fd >= 0 && i < pl;) {
        if (path[i] == '/') i++;
        const char *end = memchr(path + i, '/', pl - i);
        size_t cl = end ? (size_t)(end - path) - i : pl - i;
        memcpy(x->ppath, path + i, cl); /* scratch: ppath is set anew after */
        x->ppath[cl] = '\0';
        int next = openat(fd, x->ppath, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(fd);
        fd = next;
        errno = e;
        i += cl;
    }
    return fd;
}

/*
 * The descriptor of rel[0, n)'s parent (kept for the next call) and its last
 * component in *name. Moves of a few levels, as walks make, step from the
 * directory opened last; longer jumps open the path beneath the destination
 * in one call. -1 with errno set on failure.
 */
static int x_parent(xctx *x, const char *rel, size_t n, const char **name)
{
    const char *slash = NULL;
    for (size_t i = n; i-- > 0;)
        if (rel[i] == '/') {
            slash = rel + i;
            break;
        }
    *name = slash ? slash + 1 : rel;
    size_t pl = slash ? (size_t)(slash - rel) : 0;
    if (pl == 0) return x->root;
    if (x->pfd >= 0 && x->plen == pl && memcmp(x->ppath, rel, pl) == 0) return x->pfd;
    if (grow(&x->ppath, &x->pcap, pl + 1, 1)) {
        errno = ENOMEM;
        return -1;
    }
    int fd = -1;
    if (x->pfd >= 0) {
        size_t c = hash_path_common(x->ppath, rel, x->plen < pl ? x->plen : pl);
        if (c > 0 && !((c == x->plen || x->ppath[c] == '/') && (c == pl || rel[c] == '/')))
            do /* back to a whole component */
                c--;
            while (c > 0 && rel[c] != '/');
        size_t moves = comps_after(x->ppath, x->plen, c) + comps_after(rel, pl, c);
        if (moves <= 16 || atomic_load(&have_openat2) == 0) {
            fd = x_step(x, rel, pl, c);
        } else {
            close(x->pfd);
            x->pfd = -1;
        }
    }
    memcpy(x->ppath, rel, pl);
    x->ppath[pl] = '\0';
    x->plen = pl;
    if (fd < 0) fd = open_beneath(x->root, x->ppath);
    if (fd < 0 && (errno == ELOOP || errno == ENOENT || errno == ENOTDIR))
        fd = walk_beneath(x->root, x->ppath, 1);
    x->pfd = fd;
    return fd;
}

/* Remove what stands at pfd/name so that an entry of another kind can take its place. */
static int x_clear(int pfd, const char *name)
{
    struct stat st;
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : -1;
    return unlinkat(pfd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
}

/* Permission bits to set: set-id bits only where the owner is kept or is us. */
static mode_t x_mode(const xctx *x, const img_entry *e)
{
    mode_t m = (mode_t)(e->mode & 07777);
    if (!x->as_root) {
        if ((uid_t)e->uid != geteuid()) m &= ~(mode_t)S_ISUID;
        if ((gid_t)e->gid != getegid()) m &= ~(mode_t)S_ISGID;
    }
    return m;
}

static int x_count(xctx *x)
{
    if (x->cap && ++x->count > x->cap)
        return pht_error_set(x->err, PHT_ELIMIT,
                             "extract %s: more than the cap of %llu entries (max_entries)", x->dest,
                             (unsigned long long)x->cap);
    return 0;
}

/* Pass 1: a directory (owner-only until pass 3) or a symlink; files are collected. */
static int x_visit(void *ud, const char *rel, const img_entry *e)
{
    xctx *x = ud;
    if (e->type == PHT_IMAGE_OTHER) return 0; /* devices and FIFOs are skipped */
    int rc = x_count(x);
    if (rc) return rc;
    if (e->type == PHT_IMAGE_FILE || e->type == PHT_IMAGE_HARDLINK) {
        if (grow(&x->f, &x->fcap, x->fn + 1, sizeof *x->f))
            return pht_error_set(x->err, PHT_ENOMEM, "out of memory");
        x->f[x->fn] = (xfile){e, x->fn};
        x->fn++;
        return 0;
    }
    const char *name;
    int pfd = x_parent(x, rel, strlen(rel), &name);
    if (pfd < 0) return x_errno(x, rel, errno);
    if (e->type == PHT_IMAGE_DIR) {
        struct stat st;
        if (mkdirat(pfd, name, 0700) != 0) {
            if (errno != EEXIST) return x_errno(x, rel, errno);
            if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return x_errno(x, rel, errno);
            if (!S_ISDIR(st.st_mode) &&
                (unlinkat(pfd, name, 0) != 0 || mkdirat(pfd, name, 0700) != 0))
                return x_errno(x, rel, errno);
        }
    } else {
        if (symlinkat(e->link, pfd, name) != 0 &&
            (errno != EEXIST || x_clear(pfd, name) != 0 || symlinkat(e->link, pfd, name) != 0))
            return x_errno(x, rel, errno);
        struct timespec ts[2] = {{e->mtime, 0}, {e->mtime, 0}};
        if (utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) != 0) return x_errno(x, rel, errno);
    }
    if (x->as_root && fchownat(pfd, name, (uid_t)e->uid, (gid_t)e->gid, AT_SYMLINK_NOFOLLOW) != 0)
        return x_errno(x, rel, errno);
    return 0;
}

static int cmp_xfile(const void *a, const void *b)
{
    const xfile *p = a, *q = b;
    if (p->e->data_layer != q->e->data_layer) return p->e->data_layer < q->e->data_layer ? -1 : 1;
    if (p->e->data_ordinal != q->e->data_ordinal)
        return p->e->data_ordinal < q->e->data_ordinal ? -1 : 1;
    return p->seq < q->seq ? -1 : p->seq > q->seq;
}

/* Pulls the next chunk of a file's content: bytes, 0 at a short end, < 0 on failure. */
typedef la_ssize_t (*x_source)(void *src, void *buf, size_t want, const char **why);

/* Pass 2: one file from src to disk, and its bytes also to spool_fd when >= 0. */
static int x_file(xctx *x, const xfile *f, x_source src, void *sud, int spool_fd)
{
    const img_entry *e = f->e;
    const char *rel = e->path + x->skip, *name;
    int pfd = x_parent(x, rel, e->plen - x->skip, &name);
    if (pfd < 0) return x_errno(x, rel, errno);
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(pfd, name, flags, 0600);
    if (fd < 0 && errno == EEXIST && x_clear(pfd, name) == 0) fd = openat(pfd, name, flags, 0600);
    if (fd < 0) return x_errno(x, rel, errno);
    int rc = 0;
    uint64_t left = e->size;
    while (rc == 0 && left > 0) {
        const char *why = NULL;
        if ((rc = pht_interrupt_check(x->err))) break;
        la_ssize_t n =
            src(sud, x->buf, left < PHT_CHUNK_SIZE ? (size_t)left : PHT_CHUNK_SIZE, &why);
        if (n <= 0) {
            rc = tarsafe_fail(x->err, PHT_EFORMAT, img_layer_at(x->img, e->data_layer), e->path,
                              "%s", n < 0 && why ? why : "content ends early");
            break;
        }
        if ((rc = fs_write_all(fd, x->buf, (size_t)n, rel, x->err)) == 0 && spool_fd >= 0)
            rc = fs_write_all(spool_fd, x->buf, (size_t)n, "spool", x->err);
        left -= (uint64_t)n;
        img_progress(&x->img->opts, (uint64_t)n);
    }
    struct timespec ts[2] = {{e->mtime, 0}, {e->mtime, 0}};
    if (rc == 0 && ((x->as_root && fchown(fd, (uid_t)e->uid, (gid_t)e->gid) != 0) ||
                    fchmod(fd, x_mode(x, e)) != 0 || futimens(fd, ts) != 0))
        rc = x_errno(x, rel, errno);
    if (close(fd) != 0 && rc == 0) rc = x_errno(x, rel, errno);
    return rc;
}

static la_ssize_t from_archive(void *a, void *buf, size_t want, const char **why)
{
    la_ssize_t n = archive_read_data(a, buf, want);
    if (n < 0) *why = archive_error_string(a);
    return n;
}

typedef struct spool {
    int fd;
    uint64_t off;
} spool;

static la_ssize_t from_spool(void *ud, void *buf, size_t want, const char **why)
{
    spool *s = ud;
    ssize_t n;
    do
        n = pread(s->fd, buf, want, (off_t)s->off);
    while (n < 0 && errno == EINTR);
    if (n < 0) *why = strerror(errno);
    if (n > 0) s->off += (uint64_t)n;
    return n;
}

/*
 * The files f[i, j) share one header of the open layer a: stream it to the
 * first and, when there are more (hard links), through a spool file to the rest.
 */
static int x_group(xctx *x, struct archive *a, size_t i, size_t j)
{
    if (j - i == 1) return x_file(x, &x->f[i], from_archive, a, -1);
    spool s = {-1, 0};
    int rc = fs_tmp_anon(x->img->tmpdir, &s.fd, x->err);
    if (rc == 0) rc = x_file(x, &x->f[i], from_archive, a, s.fd);
    for (size_t k = i + 1; k < j && rc == 0; k++) {
        s.off = 0;
        rc = x_file(x, &x->f[k], from_spool, &s, -1);
    }
    if (s.fd >= 0) close(s.fd);
    return rc;
}

/* A file of a view whose bytes lie in the engine's store (img_entry.source), as listed. */
static int x_stored(xctx *x, const xfile *f)
{
    spool s = {img_open_source(x->img, f->e, x->err), 0};
    if (s.fd < 0) return -s.fd;
    int rc = x_file(x, f, from_spool, &s, -1);
    close(s.fd);
    return rc;
}

/* Pass 2: the collected files, each layer read once from its start. */
static int x_files(xctx *x)
{
    if (x->fn > 1) qsort(x->f, x->fn, sizeof *x->f, cmp_xfile);
    int rc = 0;
    for (size_t i = 0; i < x->fn && rc == 0;) {
        if (x->f[i].e->source) { /* read where the engine's store holds it */
            rc = x_stored(x, &x->f[i]);
            i++;
            continue;
        }
        int li = x->f[i].e->data_layer;
        const img_layer *l = img_layer_at(x->img, li);
        void *state;
        struct archive *a = layer_tar_open(l, &state, x->err);
        if (a == NULL) return x->err ? x->err->code : PHT_EFORMAT;
        struct archive_entry *ae = NULL;
        uint64_t at = 0; /* headers read */
        while (rc == 0 && i < x->fn && x->f[i].e->data_layer == li && !x->f[i].e->source) {
            const img_entry *e = x->f[i].e;
            while (at < e->data_ordinal) {
                int r = archive_read_next_header(a, &ae);
                if (r != ARCHIVE_OK && r != ARCHIVE_WARN) break;
                at++;
            }
            if (at != e->data_ordinal || ae == NULL || archive_entry_filetype(ae) != AE_IFREG ||
                (uint64_t)archive_entry_size(ae) != e->size) {
                rc = tarsafe_fail(x->err, PHT_EFORMAT, l, e->path,
                                  "layer changed since it was indexed");
                break;
            }
            size_t j = i + 1;
            while (j < x->fn && x->f[j].e->data_layer == li &&
                   x->f[j].e->data_ordinal == e->data_ordinal)
                j++;
            rc = x_group(x, a, i, j);
            i = j;
        }
        layer_tar_close(a, state);
    }
    return rc;
}

/* Pass 3: the pending directory on top of the stack gets its time and mode. */
static int x_pop(xctx *x)
{
    const xdir *d = &x->d[--x->dn];
    char *rel = x->chain;
    char keep = rel[d->len];
    rel[d->len] = '\0';
    const char *name;
    int rc = 0, pfd = x_parent(x, rel, d->len, &name);
    struct timespec ts[2] = {{d->mtime, 0}, {d->mtime, 0}};
    if (pfd < 0 || utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) != 0 ||
        fchmodat(pfd, name, (mode_t)d->mode, 0) != 0)
        rc = x_errno(x, rel, errno);
    rel[d->len] = keep;
    return rc;
}

static int x_fix_dir(void *ud, const char *rel, const img_entry *e)
{
    xctx *x = ud;
    if (e->type != PHT_IMAGE_DIR) return 0;
    size_t n = strlen(rel);
    int rc = 0;
    /* Directories the walk has left are complete. */
    while (rc == 0 && x->dn &&
           !(n > x->d[x->dn - 1].len && rel[x->d[x->dn - 1].len] == '/' &&
             memcmp(rel, x->chain, x->d[x->dn - 1].len) == 0))
        rc = x_pop(x);
    if (rc) return rc;
    size_t have = x->dn ? x->d[x->dn - 1].len : 0;
    if (grow(&x->chain, &x->ccap, n + 1, 1) || grow(&x->d, &x->dcap, x->dn + 1, sizeof *x->d))
        return pht_error_set(x->err, PHT_ENOMEM, "out of memory");
    memcpy(x->chain + have, rel + have, n - have + 1); /* the part below its parent */
    x->d[x->dn++] = (xdir){n, (uint32_t)x_mode(x, e), e->mtime};
    return 0;
}

static int x_fix_dirs(xctx *x, const char *norm)
{
    int rc = index_walk(&x->img->index, norm, 1, x_fix_dir, x, x->err);
    while (rc == 0 && x->dn)
        rc = x_pop(x);
    return rc;
}

int pht_image_extract(pht_image *img, const char *dir, const char *dest_dir, pht_error *err)
{
    pht_image_stat st;
    int rc = pht_image_stat_path(img, dir, &st, err);
    if (rc) return rc;
    if (st.type != PHT_IMAGE_DIR)
        return pht_error_set(err, PHT_ENOTFOUND, "/%.300s: not a directory", st.path);
    char *norm = strdup(st.path);
    if (norm == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    xctx x = {.img = img,
              .dest = dest_dir,
              .root = -1,
              .pfd = -1,
              .skip = norm[0] ? strlen(norm) + 1 : 0,
              .as_root = geteuid() == 0,
              .cap = img->opts.max_entries,
              .err = err};
    if (mkdir(dest_dir, 0755) != 0 && errno != EEXIST) {
        rc = pht_error_set(err, PHT_EIO, "%s: %s", dest_dir, strerror(errno));
    } else if ((x.root = open(dest_dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = pht_error_set(err, PHT_EIO, "%s: %s", dest_dir, strerror(errno));
    } else if ((x.buf = malloc(PHT_CHUNK_SIZE)) == NULL) {
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    } else {
        rc = index_walk(&img->index, norm, 1, x_visit, &x, err);
        if (rc == 0) rc = x_files(&x);
        if (rc == 0) rc = x_fix_dirs(&x, norm);
    }
    if (x.pfd >= 0) close(x.pfd);
    if (x.root >= 0) close(x.root);
    free(x.buf);
    free(x.f);
    free(x.ppath);
    free(x.chain);
    free(x.d);
    free(norm);
    return rc;
}
