/*
 * The core's own file helpers (fs.c): whole reads of small files, full
 * writes, temporary files and atomic replacement. Not installed; the public
 * ones are in pht/fs.h.
 */
#ifndef PHT_FS_PRIVATE_H
#define PHT_FS_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "pht/fs.h"

/* dir when set, else $TMPDIR, else "/tmp" (not a copy: keep a strdup). */
const char *fs_tmpdir(const char *dir);
/* Read exactly len bytes of fd at off into buf (PHT_EIO, naming what, when they are not all there).
 */
int fs_pread_exact(int fd, void *buf, size_t len, uint64_t off, const char *what, pht_error *err);
/* Read [off, off+len) of fd into a NUL-terminated malloc'ed buffer (len <= cap). */
int fs_pread_all(int fd, uint64_t off, uint64_t len, uint64_t cap, char **out, const char *what,
                 pht_error *err);
/* A whole regular file into memory (<= cap), NUL-terminated; a FIFO is refused, not waited on. */
int fs_read_small(const char *path, uint64_t cap, char **out, size_t *len, pht_error *err);
/* Write all of p to fd, retrying short writes; what names fd in the message. */
int fs_write_all(int fd, const void *p, size_t n, const char *what, pht_error *err);
/*
 * Copy [off, off+len) of in to out at out's file position (which advances),
 * in the kernel with copy_file_range (sharing blocks where the file system
 * can), through a 64 KiB buffer where it cannot (EXDEV, EINVAL, ENOSYS,
 * EOPNOTSUPP). PHT_EIO when in ends early; what names the copy in messages.
 */
int fs_copy_range(int in, uint64_t off, uint64_t len, int out, const char *what, pht_error *err);
/*
 * fs_copy_range for a destination that nothing reads back soon: the bytes
 * from out's first FS_DIRECT_ALIGN boundary to its last are read into buf
 * (cap bytes, aligned to FS_DIRECT_ALIGN, cap a multiple of it) and written
 * with O_DIRECT, so the kernel makes no page-cache pages of them and a later
 * fsync has them written already; the unaligned head and tail, and all of
 * it where the file system refuses O_DIRECT, go as fs_copy_range's. out's
 * flags are as they were when it returns.
 */
#define FS_DIRECT_ALIGN 4096u
/* O_DIRECT on or off for fd (its open file description): 0, or -1 where it cannot be. */
int fs_set_direct(int fd, int on);
int fs_copy_range_direct(int in, uint64_t off, uint64_t len, int out, void *buf, size_t cap,
                         const char *what, pht_error *err);
/*
 * A new temporary file beside path, mode 0644, open in *fd: unnamed
 * (O_TMPFILE) where the file system allows, else ".pht.PID.NAME.XXXXXX"
 * (swept by the next pht process once PID is gone). *tmp (malloc'ed) is the
 * name fs_commit_file links it through; unlink(*tmp) on failure is safe.
 */
int fs_tmp_beside(const char *path, char **tmp, int *fd, pht_error *err);
/* An anonymous temporary file in dir (O_TMPFILE where the file system has it, else unlinked at
 * once). */
int fs_tmp_anon(const char *dir, int *fd, pht_error *err);
/*
 * Give the O_TMPFILE file fd the name path (which must not exist), on the
 * same file system; -1 with errno otherwise (EXDEV, ENOENT for a file that
 * was not made with O_TMPFILE, ...): the caller copies instead.
 */
int fs_link_anon(int fd, const char *path);
/*
 * fsync fd, give an unnamed fd the name tmp, rename tmp over path, fsync
 * the directory: path is replaced atomically. fd must still be open.
 */
int fs_commit_file(int fd, char *tmp, const char *path, pht_error *err);
/* 1 if paths a and b name the same existing file. */
int fs_same_file(const char *a, const char *b);

#endif
