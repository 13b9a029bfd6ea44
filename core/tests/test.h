/*
 * Minimal assertion helpers for libpht's C unit tests (run under ctest).
 * A failed check prints file:line, the expression and, where given, the
 * pht_error message, then counts a failure; main returns the count.
 */
#ifndef PHT_TEST_H
#define PHT_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pht/pht.h"

static int test_failures = 0;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);          \
            test_failures++;                                                                   \
        }                                                                                      \
    } while (0)

/* Check that a pht call returned rc == 0, printing the error message if not. */
#define CHECK_OK(rc, err)                                                                      \
    do {                                                                                       \
        int rc_ = (rc);                                                                        \
        if (rc_ != 0) {                                                                        \
            fprintf(stderr, "%s:%d: %s returned %d (%s): %s\n", __FILE__, __LINE__, #rc, rc_,  \
                    pht_code_name(rc_), (err)->message);                                       \
            test_failures++;                                                                   \
        }                                                                                      \
    } while (0)

/* Check that a pht call failed with the given code. */
#define CHECK_CODE(rc, code, err)                                                              \
    do {                                                                                       \
        int rc_ = (rc);                                                                        \
        if (rc_ != (code)) {                                                                   \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %s; message: %s\n", __FILE__,\
                    __LINE__, #rc, rc_, pht_code_name(rc_), pht_code_name(code),               \
                    (err)->message);                                                           \
            test_failures++;                                                                   \
        }                                                                                      \
    } while (0)

#define CHECK_STR_CONTAINS(hay, needle)                                                        \
    do {                                                                                       \
        if (strstr((hay), (needle)) == NULL) {                                                 \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,     \
                    (hay), (needle));                                                          \
            test_failures++;                                                                   \
        }                                                                                      \
    } while (0)

#define TEST_DONE()                                                                            \
    do {                                                                                       \
        if (test_failures) fprintf(stderr, "%d check(s) failed\n", test_failures);            \
        return test_failures ? 1 : 0;                                                          \
    } while (0)

/* Directory of spec/fixtures, set by ctest. */
static inline const char *test_fixtures(void)
{
    const char *d = getenv("PHT_FIXTURES");
    return d ? d : "spec/fixtures";
}

/* A scratch directory for the test, set by ctest. */
static inline const char *test_tmpdir(void)
{
    const char *d = getenv("PHT_TMPDIR");
    return d ? d : "/tmp";
}

/*
 * A fresh private scratch directory under test_tmpdir() (created if
 * missing), made with the core's pht_mkdtemp. Fails the test run if it
 * cannot be made.
 */
static inline void test_workdir(char *out, size_t size)
{
    pht_error err;
    pht_mkdir(test_tmpdir(), 0755, 1, &err);
    if (pht_mkdtemp(test_tmpdir(), out, size, &err) != 0) {
        fprintf(stderr, "cannot make a scratch directory: %s\n", err.message);
        test_failures++;
    }
}

/* Remove the scratch directory, unless a check failed (it is kept to look at). */
static inline void test_workdir_done(const char *dir)
{
    pht_error err;
    if (test_failures == 0 && pht_remove_tree(dir, &err) != 0) {
        fprintf(stderr, "cannot remove %s: %s\n", dir, err.message);
        test_failures++;
    }
}

#endif
