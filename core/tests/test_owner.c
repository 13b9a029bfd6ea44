/*
 * Owner marks: this process's mark names it, on this host and boot; a mark
 * whose process is gone (a child that exited, another boot) is gone; a live
 * process, another machine's mark and a malformed one are not.
 */
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

int main(void)
{
    char self[PHT_OWNER_MAX], host[256], boot[64] = "", mark[PHT_OWNER_MAX];
    pht_owner_self(self, sizeof self);
    long pid = 0;
    unsigned long long start = 0;
    CHECK(sscanf(self, "%ld.%llu@", &pid, &start) == 2);
    CHECK(pid == (long)getpid());
    CHECK(start > 0);
    CHECK(gethostname(host, sizeof host) == 0);
    CHECK(strstr(self, host) != NULL);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        CHECK(fgets(boot, sizeof boot, f) != NULL);
        fclose(f);
        boot[strcspn(boot, "\n")] = '\0';
        CHECK(strstr(self, boot) != NULL);
    }
    CHECK(pht_owner_gone(self) == 0);

    /* a child that has exited and been reaped: its mark is gone */
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t child = fork();
    if (child == 0) {
        char m[PHT_OWNER_MAX];
        pht_owner_self(m, sizeof m);
        ssize_t w = write(fds[1], m, strlen(m) + 1);
        _exit(w > 0 ? 0 : 1);
    }
    char got[PHT_OWNER_MAX] = "";
    CHECK(read(fds[0], got, sizeof got) > 0);
    CHECK(waitpid(child, NULL, 0) == child);
    close(fds[0]);
    close(fds[1]);
    CHECK(strncmp(got, self, 3) != 0 || strcmp(got, self) != 0);
    CHECK(pht_owner_gone(got) == 1);

    /* the same pid with another start time: a reused pid, the owner is gone */
    snprintf(mark, sizeof mark, "%ld.%llu@%s/%s", pid, start + 1, host, boot);
    CHECK(pht_owner_gone(mark) == 1);
    /* another boot of this host */
    snprintf(mark, sizeof mark, "%ld.%llu@%s/another-boot", pid, start, host);
    CHECK(pht_owner_gone(mark) == 1);
    /* another machine: cannot be told */
    snprintf(mark, sizeof mark, "1.1@another-host-%s/%s", host, boot);
    CHECK(pht_owner_gone(mark) == 0);
    CHECK(pht_owner_gone("not a mark") == 0);
    CHECK(pht_owner_gone("12.34") == 0);
    CHECK(pht_owner_gone(NULL) == 0);
    TEST_DONE();
}
