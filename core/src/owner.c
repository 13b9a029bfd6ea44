/* Owner marks "PID.START@HOST/BOOT" and whether their process is gone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pht/owner.h"

/* The start time of process pid (clock ticks after boot, field 22 of /proc/PID/stat); 0 if gone. */
static unsigned long long proc_start(long pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "re");
    if (f == NULL) return 0;
    char *got = fgets(line, sizeof line, f);
    fclose(f);
    char *p = got ? strrchr(line, ')') : NULL; /* the command may hold spaces and ')' */
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* This machine: its host name and boot id. */
typedef struct machine {
    char host[256], boot[64];
} machine;

static void this_machine(machine *m)
{
    if (gethostname(m->host, sizeof m->host) != 0) snprintf(m->host, sizeof m->host, "-");
    m->host[sizeof m->host - 1] = '\0';
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (f == NULL || fgets(m->boot, sizeof m->boot, f) == NULL)
        snprintf(m->boot, sizeof m->boot, "-");
    if (f) fclose(f);
    m->boot[strcspn(m->boot, "\n")] = '\0';
}

void pht_owner_self(char *out, size_t cap)
{
    machine m;
    this_machine(&m);
    snprintf(out, cap, "%ld.%llu@%s/%s", (long)getpid(), proc_start((long)getpid()), m.host,
             m.boot);
}

int pht_owner_gone(const char *owner)
{
    long pid;
    unsigned long long start;
    int at = 0;
    if (owner == NULL || sscanf(owner, "%ld.%llu@%n", &pid, &start, &at) != 2 || at == 0) return 0;
    machine m;
    this_machine(&m);
    const char *host = owner + at, *slash = strrchr(host, '/');
    if (slash == NULL || (size_t)(slash - host) != strlen(m.host) ||
        strncmp(host, m.host, (size_t)(slash - host)) != 0)
        return 0; /* another machine's: it cannot be told whether its owner lives */
    return !(strcmp(slash + 1, m.boot) == 0 && proc_start(pid) == start);
}
