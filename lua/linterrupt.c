/*
 * pht Lua binding: interrupts (pht/interrupt.h). A script or host asks for
 * SIGINT, SIGTERM and SIGHUP to be caught with pht.catch_signals(); the core's
 * loops then stop with EINTR and pht.interrupted() names the signal.
 */
#include "lpht.h"

static int l_catch_signals(lua_State *L)
{
    pht_error err;
    if (lua_toboolean(L, 1) == 0 && !lua_isnoneornil(L, 1)) {
        pht_interrupt_uninstall();
        lua_pushboolean(L, 1);
        return 1;
    }
    if (pht_interrupt_install(&err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_interrupted(lua_State *L)
{
    int s = pht_interrupted();
    if (s == 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushstring(L, pht_signal_name(s));
    lua_pushinteger(L, s);
    return 2;
}

static int l_interrupt(lua_State *L)
{
    lua_Integer s = luaL_checkinteger(L, 1);
    luaL_argcheck(L, s > 0 && s < 256, 1, "a signal number");
    pht_interrupt((int)s);
    return 0;
}

static int l_clear_interrupt(lua_State *L)
{
    (void)L;
    pht_interrupt_clear();
    return 0;
}

void lpht_open_interrupt(lua_State *L)
{
    static const luaL_Reg fns[] = {{"catch_signals", l_catch_signals},
                                   {"interrupted", l_interrupted},
                                   {"interrupt", l_interrupt},
                                   {"clear_interrupt", l_clear_interrupt},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
