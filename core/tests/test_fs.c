/* Temporary directories, mkdir -p, tree removal without following links. */
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pht/fs.h"
#include "test.h"

int main(void)
{
    pht_error err;
    pht_dir_list_free(NULL, 0);
    char dir[PATH_MAX];
    CHECK_OK(pht_mkdtemp(test_tmpdir(), dir, sizeof dir, &err), &err);
    struct stat st;
    CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);

    char deep[PATH_MAX + 64];
    snprintf(deep, sizeof deep, "%s/a/b/c", dir);
    CHECK_OK(pht_mkdir(deep, 0755, 1, &err), &err);
    CHECK_OK(pht_mkdir(deep, 0755, 1, &err), &err);
    CHECK_CODE(pht_mkdir(deep, 0755, 0, &err), PHT_EIO, &err);

    char file[PATH_MAX + 64];
    snprintf(file, sizeof file, "%s/a/b/c/f", dir);
    CHECK_OK(pht_write_file(file, "data", 4, 0600, &err), &err);
    CHECK_CODE(pht_write_file(file, "data", 4, 0600, &err), PHT_EIO, &err);
    CHECK_STR_CONTAINS(err.message, "File exists");

    /* A symlink to a directory outside is unlinked, not followed. */
    char outside[PATH_MAX];
    CHECK_OK(pht_mkdtemp(test_tmpdir(), outside, sizeof outside, &err), &err);
    char keep[PATH_MAX + 64], link[PATH_MAX + 64];
    snprintf(keep, sizeof keep, "%s/keep", outside);
    CHECK_OK(pht_write_file(keep, "k", 1, 0600, &err), &err);
    snprintf(link, sizeof link, "%s/a/link", dir);
    CHECK(symlink(outside, link) == 0);

    pht_dirent *list = NULL;
    size_t n = 0;
    char sub[PATH_MAX + 8];
    snprintf(sub, sizeof sub, "%s/a", dir);
    CHECK_OK(pht_dir_list(sub, 0, &list, &n, &err), &err);
    CHECK(n == 2 && strcmp(list[0].name, "b") == 0 && list[0].type == PHT_DT_DIR);
    CHECK(n == 2 && strcmp(list[1].name, "link") == 0 && list[1].type == PHT_DT_SYMLINK);
    pht_dir_list_free(list, n);
    CHECK_CODE(pht_dir_list(sub, 1, &list, &n, &err), PHT_ELIMIT, &err);
    CHECK(list == NULL && n == 0);

    CHECK_OK(pht_remove_tree(dir, &err), &err);
    CHECK(lstat(dir, &st) != 0);
    CHECK(stat(keep, &st) == 0);
    CHECK_OK(pht_remove_tree(dir, &err), &err); /* missing is fine */
    CHECK_CODE(pht_remove_tree("/", &err), PHT_EINVAL, &err);
    CHECK_OK(pht_remove_tree(outside, &err), &err);
    TEST_DONE();
}
