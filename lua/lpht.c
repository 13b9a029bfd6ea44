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

static void progress_call(void *ud, uint64_t bytes)
{
    lpht_progress *p = ud;
    if (p->broken) return;
    if (!lua_checkstack(p->L, 3)) { /* it would raise across the core: give up instead */
        p->broken = 1;
        return;
    }
    lua_pushvalue(p->L, p->fn);
    lua_pushnumber(p->L, (lua_Number)bytes);
    if (lua_pcall(p->L, 1, 0, 0) != 0) {
        lua_pop(p->L, 1);
        p->broken = 1;
    }
}

pht_progress_fn lpht_progress_arg(lua_State *L, int idx, lpht_progress *p)
{
    if (lua_isnoneornil(L, idx)) return NULL;
    luaL_checktype(L, idx, LUA_TFUNCTION);
    *p = (lpht_progress){.L = L, .fn = lpht_absindex(L, idx)};
    return progress_call;
}

/* The registry's table handle -> progress function, with weak keys. */
#define PROGRESS_KEY "pht.progress_functions"

static void push_progress_table(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, PROGRESS_KEY);
    if (lua_istable(L, -1)) return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, PROGRESS_KEY);
}

void lpht_progress_keep(lua_State *L, int idx, int fn_idx)
{
    idx = lpht_absindex(L, idx);
    fn_idx = lpht_absindex(L, fn_idx);
    if (!lua_isnoneornil(L, fn_idx)) luaL_checktype(L, fn_idx, LUA_TFUNCTION);
    push_progress_table(L);
    lua_pushvalue(L, idx);
    if (lua_isnoneornil(L, fn_idx))
        lua_pushnil(L);
    else
        lua_pushvalue(L, fn_idx);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

int lpht_progress_kept(lua_State *L, int idx)
{
    idx = lpht_absindex(L, idx);
    push_progress_table(L);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    return lua_gettop(L);
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
