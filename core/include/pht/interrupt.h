/*
 * Interrupts: a process-wide flag that the core's long loops check, so a
 * SIGINT, SIGTERM or SIGHUP ends an operation with PHT_EINTR and the caller's
 * normal cleanup runs. The library installs no signal handler by itself; a
 * program (the pht command) calls pht_interrupt_install, or its own handler
 * calls pht_interrupt.
 */
#ifndef PHT_INTERRUPT_H
#define PHT_INTERRUPT_H

#include "pht/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Record that signal signo asked the process to stop. Async-signal-safe: a
 * program's own handler may call it. The first signal recorded is kept.
 */
PHT_API void pht_interrupt(int signo);

/* The signal recorded by pht_interrupt (or a handler of pht_interrupt_install), else 0. */
PHT_API int pht_interrupted(void);

/* Forget a recorded signal (the next operation runs again). */
PHT_API void pht_interrupt_clear(void);

/*
 * Check the flag: 0 when no signal was recorded, else PHT_EINTR with
 * "interrupted (SIGNAME)" in err. The core's byte loops call it between
 * chunks; callers with loops of their own may too.
 */
PHT_API int pht_interrupt_check(pht_error *err);

/*
 * Install handlers for SIGINT, SIGTERM and SIGHUP that call pht_interrupt
 * (system calls restart, so only the checks stop work); a signal that is
 * ignored when called (nohup, a background job) stays ignored. Returns 0 or
 * PHT_EIO naming the signal. Undo with pht_interrupt_uninstall.
 */
PHT_API int pht_interrupt_install(pht_error *err);

/* Put the default disposition back where pht_interrupt_install put its handler. */
PHT_API void pht_interrupt_uninstall(void);

/* "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT" or "a signal": a static string. */
PHT_API const char *pht_signal_name(int signo);

#ifdef __cplusplus
}
#endif
#endif
