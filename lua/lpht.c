/* luaopen_pht: the module table and the handle machinery shared by all types. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lpht.h"
#include "pht.h"

lpht_box *lpht_newbox(lua_State *L, const char *tname, size_t size)
{
    lpht_box *b = lua_newuserdata(L, size);
    memset(b, 0, size);
    luaL_getmetatable(L, tname);
    lua_setmetatable(L, -2);
    return b;
}

lpht_box *lpht_checkbox(lua_State *L, int idx, const char *tname)
{
    return luaL_checkudata(L, idx, tname);
}

void *lpht_check(lua_State *L, int idx, const char *tname)
{
    lpht_box *b = luaL_checkudata(L, idx, tname);
    if (b->p == NULL) luaL_error(L, "attempt to use a closed %s", tname);
    return b->p;
}

static int box_close(lua_State *L)
{
    lpht_box *b = lua_touserdata(L, 1);
    if (b == NULL || !lua_getmetatable(L, 1)) return 0;
    lua_getfield(L, -1, "__pht_closer");
    lpht_closer closer = (lpht_closer)(size_t)lua_touserdata(L, -1);
    lua_pop(L, 2);
    if (b->p != NULL && closer != NULL) {
        void *p = b->p;
        b->p = NULL;
        closer(p);
    }
    return 0;
}

static int box_tostring(lua_State *L)
{
    lpht_box *b = lua_touserdata(L, 1);
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__name");
    const char *name = lua_tostring(L, -1);
    if (b->p == NULL)
        lua_pushfstring(L, "%s (closed)", name ? name : "pht");
    else
        lua_pushfstring(L, "%s: %p", name ? name : "pht", (void *)b);
    return 1;
}

void lpht_newclass(lua_State *L, const char *tname, const luaL_Reg *methods, lpht_closer closer)
{
    luaL_newmetatable(L, tname);
    lua_pushstring(L, tname);
    lua_setfield(L, -2, "__name");
    /* A light userdata holds the closer; function pointers fit in size_t here. */
    lua_pushlightuserdata(L, (void *)(size_t)closer);
    lua_setfield(L, -2, "__pht_closer");
    lua_pushcfunction(L, box_close);
    lua_setfield(L, -2, "__gc");
#if LUA_VERSION_NUM >= 504
    lua_pushcfunction(L, box_close);
    lua_setfield(L, -2, "__close");
#endif
    lua_pushcfunction(L, box_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushcfunction(L, box_close);
    lua_setfield(L, -2, "close");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

void lpht_setfield_str(lua_State *L, const char *key, const char *value)
{
    if (value == NULL) return;
    lua_pushstring(L, value);
    lua_setfield(L, -2, key);
}

int lpht_fail(lua_State *L, const pht_error *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err->message[0] ? err->message : "unknown error");
    lua_pushstring(L, pht_code_name(err->code));
    return 3;
}

int lpht_failf(lua_State *L, int code, const char *fmt, ...)
{
    pht_error err;
    va_list ap;
    va_start(ap, fmt);
    err.code = code;
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    return lpht_fail(L, &err);
}

int luaopen_pht(lua_State *L)
{
    lua_newtable(L);
    lua_pushstring(L, pht_version_string());
    lua_setfield(L, -2, "version");
    lua_pushinteger(L, pht_version_number());
    lua_setfield(L, -2, "version_number");
    lpht_open_hash(L);
    lpht_open_key(L);
    lpht_open_crypt(L);
    lpht_open_config(L);
    lpht_open_image(L);
    lpht_open_image_ref(L);
    lpht_open_util(L);
    lpht_open_interrupt(L);
    lpht_open_fs(L);
    lpht_open_json(L);
    lpht_open_registry(L);
    lpht_open_docker(L);
    return 1;
}
