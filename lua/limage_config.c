/*
 * pht Lua binding: image_writer:set_config{...}, the runtime config of the
 * image a writer commits. The table is translated into one
 * pht_image_config_spec; arrays live in userdata on the stack and the strings
 * stay referenced by the caller's table, so a raised error leaks nothing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limage.h"

#define WRITER_T "pht.image_writer"

static const char *const known[] = {"cmd",    "entrypoint", "env", "working_dir",
                                    "labels", "user",       NULL};

/* Raise a wrong-argument error on the spec table (argument 2). */
static int bad(lua_State *L, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return luaL_argerror(L, 2, msg);
}

/* The string at idx, which must have no NUL bytes; raises naming field. */
static const char *check_text(lua_State *L, int idx, const char *field)
{
    size_t len;
    if (lua_type(L, idx) != LUA_TSTRING) bad(L, "%s must hold strings", field);
    const char *s = lua_tolstring(L, idx, &len);
    if (strlen(s) != len) bad(L, "%s must not contain NUL bytes", field);
    return s;
}

/* Pushes t[field] and returns its stack index, or pushes nothing and returns 0 when it is nil. */
static int push_field(lua_State *L, int t, const char *field)
{
    lua_getfield(L, t, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    return lua_gettop(L);
}

/* cmd / entrypoint: nil keeps, false or {} removes, {"prog", "arg", ...} replaces. */
static void argv_field(lua_State *L, int t, const char *field, int *set, const char *const **out,
                       size_t *n)
{
    *set = 0;
    *n = 0;
    int v = push_field(L, t, field);
    if (v == 0) return;
    *set = 1;
    if (lua_type(L, v) == LUA_TBOOLEAN && !lua_toboolean(L, v)) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_istable(L, v)) bad(L, "%s must be an array of strings or false", field);
    *n = lpht_rawlen(L, v);
    const char **a = lua_newuserdata(L, (*n ? *n : 1) * sizeof *a);
    lua_insert(L, v); /* the array lives below the table until the call returns */
    for (size_t i = 0; i < *n; i++) {
        lua_rawgeti(L, v + 1, (int)i + 1);
        a[i] = check_text(L, -1, field);
        lua_pop(L, 1); /* still referenced by the table */
    }
    lua_pop(L, 1);
    *out = a;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(((const pht_image_kv *)a)->key, ((const pht_image_kv *)b)->key);
}

/*
 * env / labels: NAME = "value" sets, NAME = false removes; env also takes
 * "NAME=value" array items (applied first, in order). Named entries are
 * applied sorted by name, so the written config does not depend on table order.
 */
static void kv_field(lua_State *L, int t, const char *field, int env, const pht_image_kv **out,
                     size_t *n)
{
    *n = 0;
    *out = NULL;
    int v = push_field(L, t, field);
    if (v == 0) return;
    if (!lua_istable(L, v)) bad(L, "%s must be a table", field);
    size_t cap = 0;
    lua_pushnil(L);
    while (lua_next(L, v)) {
        cap++;
        lua_pop(L, 1);
    }
    pht_image_kv *kv = lua_newuserdata(L, (cap ? cap : 1) * sizeof *kv);
    lua_newtable(L); /* anchors names split off "NAME=value" items */
    int anchor = lua_gettop(L);
    size_t items = env ? lpht_rawlen(L, v) : 0, named = 0;
    for (size_t i = 0; i < items; i++) {
        lua_rawgeti(L, v, (int)i + 1);
        const char *s = check_text(L, -1, field), *eq = strchr(s, '=');
        if (eq == NULL) bad(L, "env item \"%.100s\" is not NAME=value", s);
        lua_pushlstring(L, s, (size_t)(eq - s));
        kv[*n].key = lua_tostring(L, -1);
        lua_rawseti(L, anchor, (int)i + 1);
        kv[(*n)++].value = eq + 1;
        lua_pop(L, 1); /* s stays referenced by the table */
    }
    lua_pushnil(L);
    while (lua_next(L, v)) {
        int is_item = lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) >= 1 &&
                      lua_tonumber(L, -2) <= (lua_Number)items &&
                      lua_tonumber(L, -2) == (lua_Number)(size_t)lua_tonumber(L, -2);
        if (!is_item) {
            if (lua_type(L, -2) != LUA_TSTRING)
                bad(L, "%s keys must be names%s", field, env ? " (or NAME=value items)" : "");
            kv[*n].key = check_text(L, -2, field);
            if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
                kv[*n].value = NULL;
            else if (lua_type(L, -1) == LUA_TSTRING)
                kv[*n].value = check_text(L, -1, field);
            else
                bad(L, "%s.%.100s must be a string or false", field, kv[*n].key);
            (*n)++;
            named++;
        }
        lua_pop(L, 1);
    }
    qsort(kv + (*n - named), named, sizeof *kv, cmp_key);
    *out = kv; /* the table, kv and the anchor stay on the stack until the call returns */
}

int limage_set_config(lua_State *L)
{
    pht_image_writer *w = lpht_check(L, 1, WRITER_T);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    luaL_checkstack(L, 32, "set_config");
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        int ok = 0;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), known[i]) == 0;
        if (!ok)
            return lua_type(L, -2) == LUA_TSTRING
                       ? bad(L, "unknown field \"%.100s\"", lua_tostring(L, -2))
                       : bad(L, "unknown field of type %s", luaL_typename(L, -2));
        lua_pop(L, 1);
    }
    pht_image_config_spec s;
    pht_image_config_spec_init(&s);
    argv_field(L, 2, "cmd", &s.set_cmd, &s.cmd, &s.ncmd);
    argv_field(L, 2, "entrypoint", &s.set_entrypoint, &s.entrypoint, &s.nentrypoint);
    kv_field(L, 2, "env", 1, &s.env, &s.nenv);
    kv_field(L, 2, "labels", 0, &s.labels, &s.nlabels);
    s.working_dir = limage_opt_str(L, 2, "working_dir");
    s.user = limage_opt_str(L, 2, "user");
    pht_error err;
    if (pht_image_writer_set_config(w, &s, &err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}
