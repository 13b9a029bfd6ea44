/*
 * The one place where Lua 5.1/LuaJIT 2.1 and Lua 5.4 differ for the binding.
 * Shims carry the lpht_ prefix: LuaJIT 2.1 already exports several luaL_*
 * functions of 5.2+, and redefining them would clash.
 */
#ifndef LPHT_COMPAT_H
#define LPHT_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 502
#define lpht_rawlen(L, i) lua_objlen((L), (i))
static inline int lpht_isinteger(lua_State *L, int i)
{
    if (lua_type(L, i) != LUA_TNUMBER) return 0;
    lua_Number n = lua_tonumber(L, i);
    return n == (lua_Number)(lua_Integer)n;
}
#else
#define lpht_rawlen(L, i) lua_rawlen((L), (i))
#if LUA_VERSION_NUM >= 503
#define lpht_isinteger(L, i) lua_isinteger((L), (i))
#else
static inline int lpht_isinteger(lua_State *L, int i)
{
    if (lua_type(L, i) != LUA_TNUMBER) return 0;
    lua_Number n = lua_tonumber(L, i);
    return n == (lua_Number)(lua_Integer)n;
}
#endif
#endif

#endif
