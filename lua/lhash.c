/* pht Lua binding: SHA-512, the e_h/e_d builders, the chain digest and the walk order (pht/hash.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpht.h"

#define HASH_T LPHT_HASH_T

static void hash_closer(void *p)
{
    pht_hash_free(p);
}

static int l_sha512(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    unsigned char md[PHT_SHA512_LEN];
    pht_error err;
    if (pht_sha512(data, len, md, &err) != 0) return lpht_fail(L, &err);
    lua_pushlstring(L, (const char *)md, sizeof md);
    return 1;
}

static int l_hasher(lua_State *L)
{
    lpht_box *b = lpht_newbox(L, HASH_T, sizeof *b);
    pht_error err;
    if ((b->p = pht_hash_new(&err)) == NULL) return lpht_fail(L, &err);
    return 1;
}

/* The creator id as text: a string as is, an integer as its decimal text. */
static const char *creator_id_text(lua_State *L, int idx, size_t *len, char *buf, size_t cap)
{
    if (lua_type(L, idx) == LUA_TSTRING) return lua_tolstring(L, idx, len);
    if (lpht_isinteger(L, idx)) {
        int n = snprintf(buf, cap, "%lld", (long long)lua_tointeger(L, idx));
        *len = (size_t)n;
        return buf;
    }
    luaL_argerror(L, idx, "creator id must be a string or an integer");
    return NULL;
}

static int l_immutable_hasher(lua_State *L)
{
    char buf[32];
    size_t idlen, sidlen;
    const char *id = creator_id_text(L, 1, &idlen, buf, sizeof buf);
    const char *sid = luaL_checklstring(L, 2, &sidlen);
    lpht_box *b = lpht_newbox(L, HASH_T, sizeof *b);
    pht_error err;
    b->p = pht_hash_new_immutable(id, idlen, (const unsigned char *)sid, sidlen, &err);
    if (b->p == NULL) return lpht_fail(L, &err);
    return 1;
}

static int l_results_hasher(lua_State *L)
{
    size_t sidlen;
    const char *sid = luaL_checklstring(L, 1, &sidlen);
    lpht_box *b = lpht_newbox(L, HASH_T, sizeof *b);
    pht_error err;
    if ((b->p = pht_hash_new_results((const unsigned char *)sid, sidlen, &err)) == NULL)
        return lpht_fail(L, &err);
    return 1;
}

static int m_update(lua_State *L)
{
    pht_hash *h = lpht_check(L, 1, HASH_T);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    pht_error err;
    if (pht_hash_update(h, data, len, &err) != 0) return lpht_fail(L, &err);
    lua_settop(L, 1);
    return 1;
}

static int m_update_file(lua_State *L)
{
    pht_hash *h = lpht_check(L, 1, HASH_T);
    const char *path = luaL_checkstring(L, 2);
    pht_error err;
    if (pht_hash_update_file(h, path, &err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int m_begin_query(lua_State *L)
{
    pht_hash *h = lpht_check(L, 1, HASH_T);
    pht_error err;
    if (pht_hash_begin_query(h, &err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int m_digest(lua_State *L)
{
    pht_hash *h = lpht_check(L, 1, HASH_T);
    unsigned char md[PHT_SHA512_LEN];
    pht_error err;
    if (pht_hash_final(h, md, &err) != 0) return lpht_fail(L, &err);
    lua_pushlstring(L, (const char *)md, sizeof md);
    return 1;
}

static int l_walk_sort(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t n = lpht_rawlen(L, 1);
    /* The array lives in a userdata so a raised error leaks nothing. */
    const char **paths = lua_newuserdata(L, (n ? n : 1) * sizeof *paths);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (int)i + 1);
        size_t len;
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_argerror(L, 1, "paths must be an array of strings");
        paths[i] = lua_tolstring(L, -1, &len); /* anchored in the argument table */
        /* Sorted and returned as C strings: a NUL would cut the path short. */
        if (strlen(paths[i]) != len) return luaL_argerror(L, 1, "a path contains a NUL byte");
        lua_pop(L, 1);
    }
    pht_path_walk_sort(paths, n);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, paths[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

static int l_chain_digest(lua_State *L)
{
    size_t plen, elen;
    const char *prev = luaL_checklstring(L, 1, &plen);
    const char *ed = luaL_checklstring(L, 2, &elen);
    if (elen != PHT_SHA512_LEN)
        return lpht_failf(L, PHT_EFORMAT, "chain digest: result hash is %d bytes, expected %d",
                          (int)elen, PHT_SHA512_LEN);
    unsigned char md[PHT_SHA512_LEN];
    pht_error err;
    if (pht_chain_digest((const unsigned char *)prev, plen, (const unsigned char *)ed, md, &err))
        return lpht_fail(L, &err);
    lua_pushlstring(L, (const char *)md, sizeof md);
    return 1;
}

static const luaL_Reg hash_methods[] = {
    {"update", m_update},
    {"update_file", m_update_file},
    {"begin_query", m_begin_query},
    {"digest", m_digest},
    {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"sha512", l_sha512},
    {"hasher", l_hasher},
    {"immutable_hasher", l_immutable_hasher},
    {"results_hasher", l_results_hasher},
    {"walk_sort", l_walk_sort},
    {"chain_digest", l_chain_digest},
    {NULL, NULL},
};

void lpht_open_hash(lua_State *L)
{
    lpht_newclass(L, HASH_T, hash_methods, hash_closer);
    luaL_setfuncs(L, functions, 0);
}
