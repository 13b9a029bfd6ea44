/*
 * Which process owns what libpht leaves in a shared place (a Docker engine's
 * scratch containers, pht run's containers and images): a mark
 * "PID.START@HOST/BOOT" (the process id, its start time in clock ticks after
 * boot, the host name and the boot id), so that a later process can tell
 * that the owner is gone (killed, crashed, the machine rebooted) and remove
 * what it left, without touching what a live process, or another machine
 * sharing the engine, still uses.
 */
#ifndef PHT_OWNER_H
#define PHT_OWNER_H

#include <stddef.h>

#include "pht/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PHT_OWNER_MAX 400 /* a mark with its NUL */

/* This process's mark into out (PHT_OWNER_MAX bytes; a shorter cap truncates). */
PHT_API void pht_owner_self(char *out, size_t cap);

/*
 * 1 when owner is the mark of a process of this machine (same host name)
 * that is gone: another boot, or no process with that pid and start time.
 * 0 when it lives, belongs to another machine (which cannot be told), or is
 * not a mark.
 */
PHT_API int pht_owner_gone(const char *owner);

#ifdef __cplusplus
}
#endif
#endif
