/* Filesystem helpers of libpht: private temporary directories and trees. */
#ifndef PHT_FS_H
#define PHT_FS_H

#include <stddef.h>
#include <sys/types.h>

#include "pht/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Create a new directory "<parent>/pht.PID.XXXXXX" with mode 0700 (parent NULL
 * or "" means $TMPDIR, else /tmp), first removing this user's pht.PID.* left
 * by processes that are gone. The path goes to out (size bytes). PHT_EIO
 * names the parent and the reason.
 */
PHT_API int pht_mkdtemp(const char *parent, char *out, size_t size, pht_error *err);

/*
 * mkdir with mode; with parents != 0 also creates missing parents (like
 * mkdir -p) and accepts an existing directory.
 */
PHT_API int pht_mkdir(const char *path, mode_t mode, int parents, pht_error *err);

/*
 * Remove path and, if it is a directory, everything below it. Symbolic links
 * are removed, never followed. A missing path is not an error.
 */
PHT_API int pht_remove_tree(const char *path, pht_error *err);

/*
 * Create path (it must not exist: O_EXCL, no symlink followed) with mode and
 * write len bytes of data to it.
 */
PHT_API int pht_write_file(const char *path, const void *data, size_t len, mode_t mode,
                           pht_error *err);

enum pht_dirent_type { PHT_DT_FILE = 1, PHT_DT_DIR, PHT_DT_SYMLINK, PHT_DT_OTHER };

typedef struct pht_dirent {
    char *name;    /* entry name, no slash */
    int type;      /* enum pht_dirent_type, from lstat (links are not followed) */
    long long size;
    unsigned mode; /* permission bits */
} pht_dirent;

/*
 * The entries of directory path (without "." and ".."), sorted by name
 * bytewise, into a new array *out of *n entries; free it with
 * pht_dir_list_free. At most max entries (0: no cap; PHT_ELIMIT above).
 */
PHT_API int pht_dir_list(const char *path, size_t max, pht_dirent **out, size_t *n,
                         pht_error *err);
PHT_API void pht_dir_list_free(pht_dirent *list, size_t n);

#ifdef __cplusplus
}
#endif
#endif
