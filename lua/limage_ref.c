/*
 * pht Lua binding: image references (over core/src/image_ref.c), so Lua
 * code reads and builds references with the core's one grammar.
 */
#include "lpht.h"

/* A parsed reference lives in a box while its parts are copied out, so a raised error leaks
 * nothing. */
#define REF_T "pht.image_ref"

static void ref_closer(void *p)
{
    pht_image_ref_free(p);
}

/* Parse s into a new box left on the stack; 0 or the failure pushed by lpht_fail. */
static int parse_boxed(lua_State *L, const char *s, unsigned flags, pht_image_ref **out)
{
    lpht_box *b = lpht_newbox(L, REF_T, sizeof *b);
    pht_error err;
    if (pht_image_ref_parse(s, flags, out, &err) != 0) return lpht_fail(L, &err);
    b->p = *out;
    return 0;
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (v == NULL) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* The parts of r as a table {transport=, location=, path=, name=, ...}. */
static void push_ref(lua_State *L, const pht_image_ref *r)
{
    lua_createtable(L, 0, 9);
    set_str(L, "transport", pht_image_ref_transport(r));
    set_str(L, "location", pht_image_ref_location(r));
    set_str(L, "path", pht_image_ref_path(r));
    set_str(L, "name", pht_image_ref_name(r));
    set_str(L, "tag", pht_image_ref_tag(r));
    set_str(L, "digest", pht_image_ref_digest(r));
    set_str(L, "host", pht_image_ref_host(r));
    set_str(L, "string", pht_image_ref_string(r));
    if (pht_image_ref_index(r) >= 0) {
        lua_pushinteger(L, (lua_Integer)pht_image_ref_index(r));
        lua_setfield(L, -2, "index");
    }
}

static int l_parse_ref(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    unsigned flags = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "bare");
        if (lua_toboolean(L, -1)) flags |= PHT_REF_BARE_DAEMON;
        lua_pop(L, 1);
    }
    pht_image_ref *r;
    int n = parse_boxed(L, s, flags, &r);
    if (n) return n;
    push_ref(L, r);
    return 1; /* the box goes with the garbage */
}

static int l_ref_with_tag(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    const char *name = luaL_optstring(L, 2, NULL);
    const char *tag = luaL_checkstring(L, 3);
    pht_image_ref *r, *out;
    int n = parse_boxed(L, s, 0, &r);
    if (n) return n;
    lpht_box *b = lpht_newbox(L, REF_T, sizeof *b);
    pht_error err;
    if (pht_image_ref_with_tag(r, name, tag, &out, &err) != 0) return lpht_fail(L, &err);
    b->p = out;
    lua_pushstring(L, pht_image_ref_string(out));
    return 1;
}

static int l_transports(lua_State *L)
{
    lua_newtable(L);
    for (size_t i = 0; pht_image_transport_name(i) != NULL; i++) {
        lua_createtable(L, 0, 2);
        set_str(L, "name", pht_image_transport_name(i));
        set_str(L, "syntax", pht_image_transport_syntax(i));
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

void lpht_open_image_ref(lua_State *L)
{
    static const luaL_Reg no_methods[] = {{NULL, NULL}};
    lpht_newclass(L, REF_T, no_methods, ref_closer);
    static const luaL_Reg fns[] = {{"parse_ref", l_parse_ref},
                                   {"ref_with_tag", l_ref_with_tag},
                                   {"transports", l_transports},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
