/*
 * The `pht` command: a small host that embeds Lua, preloads the `pht` module
 * linked into this binary, and hands the command line to lua/pht/cli.lua.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "pht.h"
#include "pht/interrupt.h"

#ifndef PHT_LUA_ABI
#define PHT_LUA_ABI "5.4"
#endif

/*
 * The directory holding the binary, or NULL when /proc/self/exe cannot be
 * read. Lua sources sit at ../share/lua/<abi> and the stock workflows at
 * ../share/libpht-scripts relative to it, both when installed
 * (PREFIX/bin/pht) and in the build tree (build/bin/pht), so the command is
 * relocatable.
 */
static int exe_dir(char *out, size_t size)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    snprintf(out, size, "%s", exe);
    return 0;
}

/* $PHT_LUA_DIR overrides the Lua sources' directory for development. */
static void lua_dir(const char *bindir, char *out, size_t size)
{
    const char *env = getenv("PHT_LUA_DIR");
    if (env != NULL && env[0] != '\0')
        snprintf(out, size, "%s", env);
    else if (bindir != NULL)
        snprintf(out, size, "%s/../share/lua/" PHT_LUA_ABI, bindir);
    else
        snprintf(out, size, "/usr/local/share/lua/" PHT_LUA_ABI);
}

static void scripts_dir(const char *bindir, char *out, size_t size)
{
    if (bindir != NULL)
        snprintf(out, size, "%s/../share/libpht-scripts", bindir);
    else
        snprintf(out, size, "/usr/local/share/libpht-scripts");
}

/*
 * host.hold_signals(): block SIGINT, SIGTERM and SIGHUP for the rest of the
 * process. pht.cli calls it once the verb has unwound, just before it reads
 * the interrupt flag and reports: a signal caught before that is reported
 * and ends the process below; one sent after it stays blocked and the run's
 * own exit status stands, rather than ending a finished run with nothing
 * said.
 */
static int hold_signals(lua_State *L)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    (void)L;
    return 0;
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

int main(int argc, char **argv)
{
    /*
     * SIGINT, SIGTERM, SIGHUP set a flag the core's loops and the workflow
     * runner check; the run then unwinds through its cleanups and
     * pht.cli reports the step that was interrupted. Installed first, so a
     * signal while the Lua modules load stops the run before its first step.
     */
    pht_error ierr;
    if (pht_interrupt_install(&ierr) != 0) fprintf(stderr, "pht: %s\n", ierr.message);
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "pht: cannot create a Lua state (out of memory)\n");
        return 70;
    }
    luaL_openlibs(L);

    /* package.preload.pht = luaopen_pht: the module linked into this binary. */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_pht);
    lua_setfield(L, -2, "pht");
    lua_pop(L, 1);

    /* Lua sources first on package.path, ahead of the system's. */
    char bindir[PATH_MAX];
    int have_bindir = exe_dir(bindir, sizeof bindir) == 0;
    char dir[PATH_MAX + 32];
    lua_dir(have_bindir ? bindir : NULL, dir, sizeof dir);
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);

    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushstring(L, "pht.cli");
    if (lua_pcall(L, 1, 1, 1) != LUA_OK) {
        fprintf(stderr, "pht: cannot load the command-line module: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 70;
    }
    lua_getfield(L, -1, "main");
    lua_newtable(L);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    /* host: what only the binary knows, e.g. where the stock workflows are. */
    char sdir[PATH_MAX + 32];
    scripts_dir(have_bindir ? bindir : NULL, sdir, sizeof sdir);
    lua_newtable(L);
    lua_pushstring(L, sdir);
    lua_setfield(L, -2, "scripts_dir");
    lua_pushcfunction(L, hold_signals);
    lua_setfield(L, -2, "hold_signals");
    int status = 70;
    if (lua_pcall(L, 2, 1, 1) != LUA_OK) {
        fprintf(stderr, "pht: internal error: %s\n", lua_tostring(L, -1));
    } else {
        status = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    }
    lua_close(L);
    int sig = pht_interrupted();
    if (sig != 0) {
        /* die of the signal, so the parent sees it; where that does nothing (PID 1), exit 128+N */
        fflush(NULL);
        pht_interrupt_uninstall();
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        raise(sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        return 128 + sig;
    }
    return status;
}
