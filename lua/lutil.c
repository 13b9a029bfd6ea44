/* pht Lua binding: hex encoding, the monotonic clock, the terminal test (pht/util.h). */
#include "lpht.h"

static int l_hex(lua_State *L)
{
    size_t len;
    const unsigned char *in = (const unsigned char *)luaL_checklstring(L, 1, &len);
    char *out = lua_newuserdata(L, 2 * len + 1);
    pht_hex_encode(in, len, out);
    lua_pushlstring(L, out, 2 * len);
    return 1;
}

static int l_unhex(lua_State *L)
{
    size_t len;
    const char *hex = luaL_checklstring(L, 1, &len);
    unsigned char *out = lua_newuserdata(L, len / 2 + 1);
    pht_error err;
    if (pht_hex_decode(hex, len, out, "hex", &err) != 0) return lpht_fail(L, &err);
    lua_pushlstring(L, (const char *)out, len / 2);
    return 1;
}

static int l_clock(lua_State *L)
{
    lua_pushnumber(L, pht_monotonic_seconds());
    return 1;
}

static int l_isatty(lua_State *L)
{
    lua_Integer fd = luaL_checkinteger(L, 1);
    lua_pushboolean(L, fd >= 0 && fd <= 1 << 30 && pht_is_terminal((int)fd));
    return 1;
}

/* pht.owner(): this process's owner mark */
static int l_owner(lua_State *L)
{
    char mark[PHT_OWNER_MAX];
    pht_owner_self(mark, sizeof mark);
    lua_pushstring(L, mark);
    return 1;
}

/* pht.owner_gone(mark) */
static int l_owner_gone(lua_State *L)
{
    lua_pushboolean(L, pht_owner_gone(luaL_checkstring(L, 1)));
    return 1;
}

void lpht_open_util(lua_State *L)
{
    static const luaL_Reg fns[] = {{"hex", l_hex},       {"unhex", l_unhex},
                                   {"clock", l_clock},   {"isatty", l_isatty},
                                   {"owner", l_owner},   {"owner_gone", l_owner_gone},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
