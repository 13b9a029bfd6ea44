/*
 * The `pht` Lua module for hosts that embed Lua and link the module in, as
 * the pht command does (installed as <pht.h>; the C library is <pht/pht.h>).
 *
 *   luaL_requiref(L, "pht", luaopen_pht, 0);   (Lua 5.4)
 *
 * luaopen_pht pushes a new module table. It keeps no C globals, so each
 * lua_State may load its own, from any thread that owns that state.
 */
#ifndef PHT_LUA_MODULE_H
#define PHT_LUA_MODULE_H

#include <lua.h>

#if defined(__GNUC__) && __GNUC__ >= 4
#define PHT_LUA_API __attribute__((visibility("default")))
#else
#define PHT_LUA_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Open the module: pushes its table and returns 1 (a lua_CFunction). */
PHT_LUA_API int luaopen_pht(lua_State *L);

#ifdef __cplusplus
}
#endif
#endif
