/*
 * The interrupt flag (pht/interrupt.h): set from a signal handler, read by
 * the core's byte loops between chunks so an interrupted operation unwinds
 * through its ordinary error path and removes what it made.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "pht/interrupt.h"

static volatile sig_atomic_t pending;

static const int caught[] = {SIGINT, SIGTERM, SIGHUP};

void pht_interrupt(int signo)
{
    if (pending == 0) pending = signo > 0 ? signo : SIGINT;
}

int pht_interrupted(void)
{
    return (int)pending;
}

void pht_interrupt_clear(void)
{
    pending = 0;
}

const char *pht_signal_name(int signo)
{
    switch (signo) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGQUIT: return "SIGQUIT";
    default: return "a signal";
    }
}

int pht_interrupt_check(pht_error *err)
{
    int s = (int)pending;
    if (s == 0) return 0;
    return pht_error_set(err, PHT_EINTR, "interrupted (%s)", pht_signal_name(s));
}

static void on_signal(int signo)
{
    pht_interrupt(signo);
}

int pht_interrupt_install(pht_error *err)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof caught / sizeof caught[0]; i++) {
        struct sigaction old;
        /* a signal the parent ignores (nohup, a background job) stays ignored */
        if (sigaction(caught[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        if (sigaction(caught[i], &sa, NULL) != 0)
            return pht_error_set(err, PHT_EIO, "cannot catch %s: %s", pht_signal_name(caught[i]),
                                 strerror(errno));
    }
    return 0;
}

void pht_interrupt_uninstall(void)
{
    for (size_t i = 0; i < sizeof caught / sizeof caught[0]; i++) {
        struct sigaction old;
        if (sigaction(caught[i], NULL, &old) == 0 && old.sa_handler == on_signal)
            signal(caught[i], SIG_DFL);
    }
}
