/*
 * Files and directories: private temporary directories, mkdir -p, tree
 * removal, exclusive writes and listings (pht/fs.h), and the core's own
 * helpers (fs_private.h): small whole reads, full writes, in-kernel range
 * copies, temporary files and atomic replacement.
 */
#define _GNU_SOURCE /* copy_file_range */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "fs_private.h"
#include "pht/hash.h" /* PHT_CHUNK_SIZE */
#include "pht/interrupt.h"

const char *fs_tmpdir(const char *dir)
{
    if (dir == NULL || dir[0] == '\0') dir = getenv("TMPDIR");
    if (dir == NULL || dir[0] == '\0') dir = "/tmp";
    return dir;
}

/*
 * Remove "pht.PID.XXXXXX" entries under parent left by a pht process that is
 * gone (killed, crashed, power loss). Only entries owned by this user whose
 * PID no longer exists are touched; failures are ignored (best effort).
 */
static void sweep_stale(const char *parent)
{
    DIR *d = opendir(parent);
    if (d == NULL) return;
    uid_t me = geteuid();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "pht.", 4) != 0) continue;
        char *end = NULL;
        long pid = strtol(e->d_name + 4, &end, 10);
        if (end == e->d_name + 4 || *end != '.' || pid <= 0) continue;
        if (pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[PATH_MAX];
        int n = snprintf(path, sizeof path, "%s/%s", parent, e->d_name);
        if (n < 0 || (size_t)n >= sizeof path) continue;
        struct stat st;
        if (lstat(path, &st) != 0 || st.st_uid != me) continue;
        pht_error ignored;
        (void)pht_remove_tree(path, &ignored);
    }
    closedir(d);
}

int pht_mkdtemp(const char *parent, char *out, size_t size, pht_error *err)
{
    parent = fs_tmpdir(parent);
    sweep_stale(parent);
    int n = snprintf(out, size, "%s/pht.%ld.XXXXXX", parent, (long)getpid());
    if (n < 0 || (size_t)n >= size)
        return pht_error_set(err, PHT_EINVAL, "temporary directory under %s: path too long",
                             parent);
    if (mkdtemp(out) == NULL) {
        int e = errno;
        out[0] = '\0';
        return pht_error_set(err, PHT_EIO, "cannot create a temporary directory under %s: %s",
                             parent, strerror(e));
    }
    return 0;
}

int pht_mkdir(const char *path, mode_t mode, int parents, pht_error *err)
{
    if (path == NULL || path[0] == '\0') return pht_error_set(err, PHT_EINVAL, "mkdir: empty path");
    if (!parents) {
        if (mkdir(path, mode) != 0)
            return pht_error_set(err, PHT_EIO, "mkdir %s: %s", path, strerror(errno));
        return 0;
    }
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof buf) return pht_error_set(err, PHT_EINVAL, "mkdir %s: path too long", path);
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return pht_error_set(err, PHT_EIO, "mkdir %s: %s", buf, strerror(errno));
        *p = saved;
        if (saved == '\0') break;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return pht_error_set(err, PHT_EIO, "mkdir %s: exists and is not a directory", path);
    return 0;
}

/*
 * Remove everything inside the open directory dfd (which this call closes),
 * descending with O_NOFOLLOW so a symlink is unlinked, never entered.
 * `shown` is the path for messages.
 */
static int empty_dir(int dfd, const char *shown, int depth, pht_error *err)
{
    if (depth > 4096) {
        close(dfd);
        return pht_error_set(err, PHT_ELIMIT, "remove %s: directory nesting too deep", shown);
    }
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return pht_error_set(err, PHT_EIO, "remove %s: %s", shown, strerror(errno));
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
        if (unlinkat(dirfd(d), name, 0) == 0 || errno == ENOENT) continue;
        if (errno != EISDIR && errno != EPERM) {
            rc = pht_error_set(err, PHT_EIO, "remove %s/%s: %s", shown, name, strerror(errno));
            break;
        }
        int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            rc = pht_error_set(err, PHT_EIO, "remove %s/%s: %s", shown, name, strerror(errno));
            break;
        }
        rc = empty_dir(sub, shown, depth + 1, err);
        if (rc == 0 && unlinkat(dirfd(d), name, AT_REMOVEDIR) != 0 && errno != ENOENT)
            rc = pht_error_set(err, PHT_EIO, "remove %s/%s: %s", shown, name, strerror(errno));
    }
    if (rc == 0 && errno != 0 && de == NULL)
        rc = pht_error_set(err, PHT_EIO, "read directory %s: %s", shown, strerror(errno));
    closedir(d);
    return rc;
}

int pht_remove_tree(const char *path, pht_error *err)
{
    if (path == NULL || path[0] == '\0' || strcmp(path, "/") == 0)
        return pht_error_set(err, PHT_EINVAL, "refusing to remove \"%s\"", path ? path : "");
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return 0;
        return pht_error_set(err, PHT_EIO, "remove %s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) != 0 && errno != ENOENT)
            return pht_error_set(err, PHT_EIO, "remove %s: %s", path, strerror(errno));
        return 0;
    }
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) return pht_error_set(err, PHT_EIO, "remove %s: %s", path, strerror(errno));
    int rc = empty_dir(dfd, path, 0, err);
    if (rc != 0) return rc;
    if (rmdir(path) != 0 && errno != ENOENT)
        return pht_error_set(err, PHT_EIO, "remove %s: %s", path, strerror(errno));
    return 0;
}

int pht_write_file(const char *path, const void *data, size_t len, mode_t mode, pht_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) return pht_error_set(err, PHT_EIO, "create %s: %s", path, strerror(errno));
    int rc = fs_write_all(fd, data, len, path, err);
    if (close(fd) != 0 && rc == 0)
        rc = pht_error_set(err, PHT_EIO, "close %s: %s", path, strerror(errno));
    if (rc) unlink(path);
    return rc;
}

static int dirent_cmp(const void *a, const void *b)
{
    return strcmp(((const pht_dirent *)a)->name, ((const pht_dirent *)b)->name);
}

void pht_dir_list_free(pht_dirent *list, size_t n)
{
    if (list == NULL) return;
    for (size_t i = 0; i < n; i++)
        free(list[i].name);
    free(list);
}

int pht_dir_list(const char *path, size_t max, pht_dirent **out, size_t *n, pht_error *err)
{
    *out = NULL;
    *n = 0;
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        int e = errno;
        return pht_error_set(err, e == ENOENT ? PHT_ENOTFOUND : PHT_EIO, "list %s: %s", path,
                             strerror(e));
    }
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return pht_error_set(err, PHT_EIO, "list %s: %s", path, strerror(errno));
    }
    pht_dirent *list = NULL;
    size_t count = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (max != 0 && count >= max) {
            rc = pht_error_set(err, PHT_ELIMIT, "list %s: more than %zu entries", path, max);
            break;
        }
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = pht_error_set(err, PHT_EIO, "list %s: stat %s: %s", path, de->d_name,
                               strerror(errno));
            break;
        }
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            pht_dirent *nl = realloc(list, ncap * sizeof *nl);
            if (nl == NULL) {
                rc = pht_error_set(err, PHT_ENOMEM, "list %s: out of memory", path);
                break;
            }
            list = nl;
            cap = ncap;
        }
        pht_dirent *e = &list[count];
        e->name = strdup(de->d_name);
        if (e->name == NULL) {
            rc = pht_error_set(err, PHT_ENOMEM, "list %s: out of memory", path);
            break;
        }
        e->type = S_ISREG(st.st_mode)   ? PHT_DT_FILE
                  : S_ISDIR(st.st_mode) ? PHT_DT_DIR
                  : S_ISLNK(st.st_mode) ? PHT_DT_SYMLINK
                                        : PHT_DT_OTHER;
        e->size = (long long)st.st_size;
        e->mode = (unsigned)(st.st_mode & 07777);
        count++;
    }
    if (rc == 0 && errno != 0 && de == NULL)
        rc = pht_error_set(err, PHT_EIO, "list %s: %s", path, strerror(errno));
    closedir(d);
    if (rc != 0) {
        pht_dir_list_free(list, count);
        return rc;
    }
    if (count > 1) qsort(list, count, sizeof *list, dirent_cmp);
    *out = list;
    *n = count;
    return 0;
}

/* ---- the core's own helpers (fs_private.h) ----------------------------------- */

int fs_pread_exact(int fd, void *buf, size_t len, uint64_t off, const char *what, pht_error *err)
{
    unsigned char *b = buf;
    for (size_t got = 0; got < len;) {
        ssize_t r = pread(fd, b + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return pht_error_set(err, PHT_EIO, "%s: read failed: %s", what,
                                 r < 0 ? strerror(errno) : "unexpected end of file");
        got += (size_t)r;
    }
    return 0;
}

int fs_pread_all(int fd, uint64_t off, uint64_t len, uint64_t cap, char **out, const char *what,
                 pht_error *err)
{
    *out = NULL;
    if (len > cap)
        return pht_error_set(err, PHT_ELIMIT, "%s: %llu bytes exceed the cap of %llu bytes", what,
                             (unsigned long long)len, (unsigned long long)cap);
    char *b = malloc((size_t)len + 1);
    if (b == NULL) return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", what);
    int rc = fs_pread_exact(fd, b, (size_t)len, off, what, err);
    if (rc) {
        free(b);
        return rc;
    }
    b[len] = '\0';
    *out = b;
    return 0;
}

int fs_read_small(const char *path, uint64_t cap, char **out, size_t *len, pht_error *err)
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
        rc = fs_pread_all(fd, 0, (uint64_t)st.st_size, cap, out, path, err);
    if (rc == 0 && len) *len = (size_t)st.st_size;
    close(fd);
    return rc;
}

int fs_write_all(int fd, const void *p, size_t n, const char *what, pht_error *err)
{
    const char *c = p;
    if (pht_interrupt_check(err)) return pht_error_prefix(err, "%s", what);
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

/* Up to want bytes of in at off into buf (EINTR retried): how many, or -1 with err set (a
 * read error, or in ending early). */
static ssize_t pread_some(int in, void *buf, size_t want, uint64_t off, const char *what,
                          pht_error *err)
{
    ssize_t r;
    do
        r = pread(in, buf, want, (off_t)off);
    while (r < 0 && errno == EINTR);
    if (r > 0) return r;
    pht_error_set(err, PHT_EIO, "%s: read failed: %s", what,
                  r < 0 ? strerror(errno) : "unexpected end of file");
    return -1;
}

/* The read/write fallback of fs_copy_range, from in's offset off to out's position. */
static int copy_rw(int in, uint64_t off, uint64_t len, int out, const char *what, pht_error *err)
{
    unsigned char *buf = malloc(PHT_CHUNK_SIZE);
    if (buf == NULL) return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", what);
    int rc = 0;
    while (len > 0 && rc == 0) {
        size_t want = len < PHT_CHUNK_SIZE ? (size_t)len : PHT_CHUNK_SIZE;
        if ((rc = pht_interrupt_check(err))) break;
        ssize_t r = pread_some(in, buf, want, off, what, err);
        if (r < 0) {
            rc = PHT_EIO;
            break;
        }
        rc = fs_write_all(out, buf, (size_t)r, what, err);
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    free(buf);
    return rc;
}

int fs_copy_range(int in, uint64_t off, uint64_t len, int out, const char *what, pht_error *err)
{
    loff_t at = (loff_t)off;
    while (len > 0) {
        /* 16 MiB a call, so an interrupt is seen within one call */
        size_t want = len < ((size_t)1 << 24) ? (size_t)len : ((size_t)1 << 24);
        int rc = pht_interrupt_check(err);
        if (rc) return pht_error_prefix(err, "%s", what);
        ssize_t r = copy_file_range(in, &at, out, NULL, want, 0);
        if (r > 0) {
            len -= (uint64_t)r;
            continue;
        }
        if (r == 0)
            return pht_error_set(err, PHT_EIO, "%s: read failed: unexpected end of file", what);
        if (errno == EINTR) continue;
        /* another file system, a kernel or file system without it: copy through user space */
        if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)
            return copy_rw(in, (uint64_t)at, len, out, what, err);
        return pht_error_set(err, PHT_EIO, "%s: copy failed: %s", what, strerror(errno));
    }
    return 0;
}

int fs_set_direct(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, on ? fl | O_DIRECT : fl & ~O_DIRECT) != 0) return -1;
    return 0;
}

int fs_copy_range_direct(int in, uint64_t off, uint64_t len, int out, void *buf, size_t cap,
                         const char *what, pht_error *err)
{
    off_t pos = lseek(out, 0, SEEK_CUR);
    cap -= cap % FS_DIRECT_ALIGN;
    if (buf == NULL || cap == 0 || pos < 0 || ((uintptr_t)buf % FS_DIRECT_ALIGN) != 0)
        return fs_copy_range(in, off, len, out, what, err);
    uint64_t head = (FS_DIRECT_ALIGN - (uint64_t)pos % FS_DIRECT_ALIGN) % FS_DIRECT_ALIGN;
    if (head > len) head = len;
    int rc = head ? fs_copy_range(in, off, head, out, what, err) : 0;
    off += head;
    len -= head;
    int direct = 0; /* 1 on, -1 refused: the rest goes through the cache */
    while (rc == 0 && direct >= 0 && len >= FS_DIRECT_ALIGN) {
        size_t want = len < cap ? (size_t)len : cap;
        want -= want % FS_DIRECT_ALIGN;
        if ((rc = pht_interrupt_check(err))) {
            pht_error_prefix(err, "%s", what);
            break;
        }
        ssize_t r = pread_some(in, buf, want, off, what, err);
        if (r < 0) {
            rc = PHT_EIO;
            break;
        }
        size_t n = (size_t)r - (size_t)r % FS_DIRECT_ALIGN;
        if (n == 0) break; /* a short read: the rest by fs_copy_range */
        if (direct == 0) direct = fs_set_direct(out, 1) == 0 ? 1 : -1;
        size_t done = 0;
        if (direct > 0) {
            ssize_t w = write(out, buf, n);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && errno != EINVAL) {
                rc = pht_error_set(err, PHT_EIO, "%s: write failed: %s", what, strerror(errno));
                break;
            }
            if (w >= 0) done = (size_t)w;
            /* EINVAL: the file system takes no O_DIRECT writes; a short write (a full
               disk): the rest goes buffered, which reports why */
            if ((size_t)(w < 0 ? 0 : w) < n) {
                fs_set_direct(out, 0);
                direct = -1;
            }
        }
        if (done < n && (rc = fs_write_all(out, (unsigned char *)buf + done, n - done, what, err)))
            break;
        off += n;
        len -= n;
    }
    if (direct > 0) fs_set_direct(out, 0);
    if (rc == 0 && len > 0) rc = fs_copy_range(in, off, len, out, what, err);
    return rc;
}

/* The directory part of path ("." if none), malloc'ed. */
static char *dir_of(const char *path)
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

/*
 * Remove ".pht.PID.*" files in dir left by named temporary files of a pht
 * process that is gone (only where O_TMPFILE was not available).
 */
static void sweep_beside(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) return;
    uid_t me = geteuid();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, ".pht.", 5) != 0) continue;
        char *end = NULL;
        long pid = strtol(e->d_name + 5, &end, 10);
        if (end == e->d_name + 5 || *end != '.' || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_uid != me ||
            !S_ISREG(st.st_mode))
            continue;
        (void)unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

/*
 * The file is made with O_TMPFILE where the file system has it: it has no
 * name until fs_commit_file links it, so a process killed on the way leaves
 * nothing behind. Elsewhere it is ".pht.PID.NAME.XXXXXX", which the next
 * pht process writing into that directory removes (its owner being gone).
 * *tmp is the name the file is committed through in both cases.
 */
int fs_tmp_beside(const char *path, char **tmp, int *fd, pht_error *err)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *dir = dir_of(path);
    size_t n = (dir ? strlen(dir) : 0) + strlen(base) + 48;
    char *t = dir ? malloc(n) : NULL;
    if (t == NULL) {
        free(dir);
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    snprintf(t, n, "%s/.pht.%ld.%s.XXXXXX", dir, (long)getpid(), base);
#ifdef O_TMPFILE
    /* linked in at commit through /proc/self/fd: without /proc, a named file */
    int f =
        access("/proc/self/fd", X_OK) == 0 ? open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644) : -1;
    if (f >= 0) {
        free(dir);
        fchmod(f, 0644);
        *fd = f;
        *tmp = t;
        return 0;
    }
#endif
    sweep_beside(dir);
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

/* Give the unnamed (O_TMPFILE) file fd the name tmp, a template ending in XXXXXX. */
static int link_anon(int fd, char *tmp, pht_error *err)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    size_t n = strlen(tmp);
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned char r[6] = {0};
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) r[0] = (unsigned char)attempt;
        for (size_t i = 0; i < 6; i++)
            tmp[n - 6 + i] = digits[r[i] % 36];
        if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) == 0) return 0;
        if (errno != EEXIST)
            return pht_error_set(err, PHT_EIO, "%s: cannot link the temporary file: %s", tmp,
                                 strerror(errno));
    }
    return pht_error_set(err, PHT_EIO, "%s: cannot find a free temporary name", tmp);
}

int fs_tmp_anon(const char *dir, int *fd, pht_error *err)
{
    /* O_TMPFILE: nameless from the start, and fs_link_anon can give it a name. */
    int f = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (f >= 0) {
        *fd = f;
        return 0;
    }
    size_t n = strlen(dir) + 24;
    char *t = malloc(n);
    if (t == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    snprintf(t, n, "%s/pht-layer-XXXXXX", dir);
    int rc = tmp_create(t, fd, err);
    if (rc == 0) unlink(t);
    free(t);
    return rc;
}

int fs_link_anon(int fd, const char *path)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
}

static int fsync_dir(const char *dir, pht_error *err)
{
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) return pht_error_set(err, PHT_EIO, "%s: %s", dir, strerror(errno));
    int rc = 0;
    if (fsync(d) != 0)
        rc = pht_error_set(err, PHT_EIO, "%s: fsync failed: %s", dir, strerror(errno));
    close(d);
    return rc;
}

int fs_commit_file(int fd, char *tmp, const char *path, pht_error *err)
{
    if (fsync(fd) != 0)
        return pht_error_set(err, PHT_EIO, "%s: fsync failed: %s", tmp, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) return pht_error_set(err, PHT_EIO, "%s: %s", tmp, strerror(errno));
    /* an O_TMPFILE file has no name yet: link it beside path, then rename over path */
    if (st.st_nlink == 0) {
        int rc = link_anon(fd, tmp, err);
        if (rc) return rc;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        if (st.st_nlink == 0) unlink(tmp);
        return pht_error_set(err, PHT_EIO, "rename %s to %s failed: %s", tmp, path, strerror(e));
    }
    char *dir = dir_of(path);
    if (dir == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    int rc = fsync_dir(dir, err);
    free(dir);
    return rc;
}

int fs_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}
