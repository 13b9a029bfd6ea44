/*
 * The interrupt flag: no handler until asked, the first signal kept, the
 * byte loops of hashing and file encryption stopping with PHT_EINTR (and no
 * output file left), a real SIGTERM caught by the installed handler.
 */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pht/crypt.h"
#include "pht/hash.h"
#include "pht/interrupt.h"
#include "test.h"

int main(void)
{
    pht_error err;
    struct sigaction sa;
    /* the library installs nothing by itself */
    CHECK(sigaction(SIGTERM, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL);
    CHECK(pht_interrupted() == 0);
    CHECK_OK(pht_interrupt_check(&err), &err);

    char dir[PATH_MAX], plain[PATH_MAX + 16], enc[PATH_MAX + 16];
    test_workdir(dir, sizeof dir);
    snprintf(plain, sizeof plain, "%s/plain", dir);
    snprintf(enc, sizeof enc, "%s/enc", dir);
    static char buf[256 * 1024];
    memset(buf, 'p', sizeof buf);
    CHECK_OK(pht_write_file(plain, buf, sizeof buf, 0600, &err), &err);
    pht_symkey *key = pht_symkey_new(&err);
    CHECK(key != NULL);
    pht_interrupt(SIGHUP);
    pht_interrupt(SIGINT);
    CHECK(pht_interrupted() == SIGHUP);
    CHECK_CODE(pht_interrupt_check(&err), PHT_EINTR, &err);
    CHECK_STR_CONTAINS(err.message, "interrupted (SIGHUP)");
    CHECK(strcmp(pht_code_name(PHT_EINTR), "EINTR") == 0);

    /* a write stops too, and removes what it created */
    snprintf(enc, sizeof enc, "%s/other", dir);
    CHECK_CODE(pht_write_file(enc, buf, sizeof buf, 0600, &err), PHT_EINTR, &err);
    CHECK(access(enc, F_OK) != 0);
    snprintf(enc, sizeof enc, "%s/enc", dir);
    CHECK_CODE(pht_encrypt_file(key, plain, enc, &err), PHT_EINTR, &err);
    CHECK(access(enc, F_OK) != 0);
    pht_hash *h = pht_hash_new(&err);
    int fd = open(plain, O_RDONLY);
    CHECK_CODE(pht_hash_update_fd(h, fd, &err), PHT_EINTR, &err);
    close(fd);
    pht_hash_free(h);

    pht_interrupt_clear();
    CHECK(pht_interrupted() == 0);
    CHECK_OK(pht_encrypt_file(key, plain, enc, &err), &err);

    /* installed: a real signal only sets the flag */
    CHECK_OK(pht_interrupt_install(&err), &err);
    CHECK(raise(SIGTERM) == 0);
    CHECK(pht_interrupted() == SIGTERM);
    pht_interrupt_uninstall();
    CHECK(sigaction(SIGTERM, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL);
    /* an ignored signal stays ignored */
    signal(SIGHUP, SIG_IGN);
    CHECK_OK(pht_interrupt_install(&err), &err);
    CHECK(sigaction(SIGHUP, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN);
    pht_interrupt_uninstall();
    pht_interrupt_clear();

    pht_symkey_free(key);
    test_workdir_done(dir);
    TEST_DONE();
}
