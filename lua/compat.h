/*
 * The one place where Lua 5.1/LuaJIT 2.1 and Lua 5.4 differ for the binding.
 * Shims carry the lpht_ prefix: LuaJIT 2.1 already exports several luaL_*
 * functions of 5.2+, and redefining them would clash.
 */
#ifndef LPHT_COMPAT_H
#define LPHT_COMPAT_H

#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 502
#define lpht_rawlen(L, i) lua_objlen((L), (i))
#else
#define lpht_rawlen(L, i) lua_rawlen((L), (i))
#endif

#if LUA_VERSION_NUM < 502
/* The stack index idx as a positive index (pseudo-indices stay as they are). */
static inline int lpht_absindex(lua_State *L, int idx)
{
    return idx > 0 || idx <= LUA_REGISTRYINDEX ? idx : lua_gettop(L) + idx + 1;
}
#else
#define lpht_absindex(L, i) lua_absindex((L), (i))
#endif

#if LUA_VERSION_NUM >= 503
#define lpht_isinteger(L, i) lua_isinteger((L), (i))
#else
/* A whole number within lua_Integer's range (the cast of any other is undefined). */
static inline int lpht_isinteger(lua_State *L, int i)
{
    if (lua_type(L, i) != LUA_TNUMBER) return 0;
    lua_Number n = lua_tonumber(L, i);
    const lua_Number lim = (lua_Number)((lua_Integer)1 << (sizeof(lua_Integer) * 8 - 2)) * 2;
    return n >= -lim && n < lim && n == (lua_Number)(lua_Integer)n;
}
#endif

/*
 * The FILE of an open Lua file handle at idx (io.open, io.stdout), or an
 * argument error. Both engines keep the FILE first in the handle's userdata;
 * 5.4 marks a closed handle by its closef, LuaJIT by a NULL FILE.
 */
#ifndef LUA_FILEHANDLE
#define LUA_FILEHANDLE "FILE*" /* LuaJIT has it in lualib.h */
#endif
static inline FILE *lpht_checkfile(lua_State *L, int idx)
{
    FILE **f = (FILE **)luaL_checkudata(L, idx, LUA_FILEHANDLE);
#if LUA_VERSION_NUM >= 502
    if (((luaL_Stream *)f)->closef == NULL) luaL_argerror(L, idx, "attempt to use a closed file");
#else
    if (*f == NULL) luaL_argerror(L, idx, "attempt to use a closed file");
#endif
    return *f;
}

#endif
