/*
 * pht Lua binding: the registry client (pht.registry). Manifests travel as
 * Lua strings (capped by the client); blobs only as files, streamed by the
 * core.
 */
#include <string.h>

#include "lpht.h"

#define REGISTRY_T "pht.registry"

static void registry_closer(void *p)
{
    pht_registry_free(p);
}

static pht_registry *check_registry(lua_State *L)
{
    return lpht_check(L, 1, REGISTRY_T);
}

/*
 * The option k of the table at t, of Lua type want (nil: absent). Strings
 * stay referenced by the table; numbers and booleans go to *num.
 */
static const char *option(lua_State *L, int t, const char *k, int want, lua_Number *num)
{
    lua_getfield(L, t, k);
    int type = lua_type(L, -1);
    const char *s = NULL;
    if (type != LUA_TNIL && type != want)
        luaL_error(L, "option %s must be a %s", k, lua_typename(L, want));
    if (type == LUA_TSTRING) s = lua_tostring(L, -1);
    if (type == LUA_TBOOLEAN && num) *num = lua_toboolean(L, -1);
    if (type == LUA_TNUMBER && num) {
        *num = lua_tonumber(L, -1);
        if (*num < 0 || *num > 1e15) luaL_error(L, "option %s is out of range", k);
    }
    lua_pop(L, 1);
    return type == LUA_TNIL ? NULL : (s ? s : "");
}

/* pht.open_registry(endpoint [, opts]) */
static int l_open_registry(lua_State *L)
{
    const char *endpoint = luaL_checkstring(L, 1);
    pht_registry_options o;
    pht_registry_options_init(&o);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_Number n = 0;
        o.creds = option(L, 2, "creds", LUA_TSTRING, NULL);
        o.auth_file = option(L, 2, "auth_file", LUA_TSTRING, NULL);
        o.cert_dir = option(L, 2, "cert_dir", LUA_TSTRING, NULL);
        if (option(L, 2, "anonymous", LUA_TBOOLEAN, &n)) o.anonymous = n != 0;
        if (option(L, 2, "tls_verify", LUA_TBOOLEAN, &n)) o.tls_verify = n != 0;
        if (option(L, 2, "max_manifest", LUA_TNUMBER, &n)) o.max_manifest = (size_t)n;
        if (option(L, 2, "max_tries", LUA_TNUMBER, &n)) o.max_tries = n > 100 ? 100 : (int)n;
        if (option(L, 2, "retry_delay_ms", LUA_TNUMBER, &n))
            o.retry_delay_ms = n > 60000 ? 60000u : (unsigned)n;
    }
    lpht_box *b = lpht_newbox(L, REGISTRY_T, sizeof *b);
    pht_registry *r = NULL;
    pht_error err;
    if (pht_registry_open(&r, endpoint, &o, &err) != 0) return lpht_fail(L, &err);
    b->p = r;
    return 1;
}

static int m_host(lua_State *L)
{
    lua_pushstring(L, pht_registry_host(check_registry(L)));
    return 1;
}

static int m_credentials(lua_State *L)
{
    pht_registry *r = check_registry(L);
    const char *repo = luaL_optstring(L, 2, NULL);
    char user[256], source[512];
    pht_error err;
    if (pht_registry_credentials(r, repo, user, sizeof user, source, sizeof source, &err) != 0)
        return lpht_fail(L, &err);
    lua_pushstring(L, user);
    lua_pushstring(L, source);
    return 2;
}

static int m_ping(lua_State *L)
{
    pht_error err;
    if (pht_registry_ping(check_registry(L), &err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int m_get_manifest(lua_State *L)
{
    pht_registry *r = check_registry(L);
    const char *repo = luaL_checkstring(L, 2), *ref = luaL_checkstring(L, 3);
    pht_registry_manifest m;
    pht_error err;
    int rc = pht_registry_get_manifest(r, repo, ref, &m, &err);
    if (rc == 0) {
        lua_pushlstring(L, m.data, m.len);
        lua_pushstring(L, m.media_type);
        lua_pushstring(L, m.digest);
    }
    pht_registry_manifest_clear(&m);
    return rc == 0 ? 3 : lpht_fail(L, &err);
}

static int m_head_manifest(lua_State *L)
{
    pht_registry *r = check_registry(L);
    const char *repo = luaL_checkstring(L, 2), *ref = luaL_checkstring(L, 3);
    pht_registry_manifest m;
    pht_error err;
    if (pht_registry_head_manifest(r, repo, ref, &m, &err) != 0) return lpht_fail(L, &err);
    lua_pushstring(L, m.digest);
    lua_pushstring(L, m.media_type);
    lua_pushinteger(L, (lua_Integer)m.len);
    return 3;
}

static int m_put_manifest(lua_State *L)
{
    pht_registry *r = check_registry(L);
    const char *repo = luaL_checkstring(L, 2), *ref = luaL_checkstring(L, 3);
    size_t len;
    const char *data = luaL_checklstring(L, 4, &len);
    const char *media_type = luaL_checkstring(L, 5);
    char digest[PHT_REGISTRY_DIGEST_MAX];
    pht_error err;
    if (pht_registry_put_manifest(r, repo, ref, media_type, data, len, digest, &err) != 0)
        return lpht_fail(L, &err);
    lua_pushstring(L, digest);
    return 1;
}

static int m_blob_exists(lua_State *L)
{
    pht_registry *r = check_registry(L);
    const char *repo = luaL_checkstring(L, 2), *digest = luaL_checkstring(L, 3);
    int exists = 0;
    int64_t size = -1;
    pht_error err;
    if (pht_registry_blob_exists(r, repo, digest, &exists, &size, &err) != 0)
        return lpht_fail(L, &err);
    lua_pushboolean(L, exists);
    if (!exists || size < 0) return 1;
    lua_pushinteger(L, (lua_Integer)size);
    return 2;
}

static int m_get_blob(lua_State *L)
{
    pht_registry *r = check_registry(L);
    const char *repo = luaL_checkstring(L, 2), *digest = luaL_checkstring(L, 3);
    const char *path = luaL_checkstring(L, 4);
    lua_Integer size = luaL_optinteger(L, 5, -1);
    pht_error err;
    if (pht_registry_get_blob_file(r, repo, digest, size < 0 ? -1 : (int64_t)size, path, &err) != 0)
        return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int m_mount_blob(lua_State *L)
{
    pht_registry *r = check_registry(L);
    const char *repo = luaL_checkstring(L, 2), *digest = luaL_checkstring(L, 3);
    const char *from = luaL_checkstring(L, 4);
    int mounted = 0;
    pht_error err;
    if (pht_registry_mount_blob(r, repo, digest, from, &mounted, &err) != 0)
        return lpht_fail(L, &err);
    lua_pushboolean(L, mounted);
    return 1;
}

static int m_upload_blob(lua_State *L)
{
    pht_registry *r = check_registry(L);
    const char *repo = luaL_checkstring(L, 2), *path = luaL_checkstring(L, 3);
    const char *digest = NULL, *from = NULL;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        digest = option(L, 4, "digest", LUA_TSTRING, NULL);
        from = option(L, 4, "mount_from", LUA_TSTRING, NULL);
    }
    char out[PHT_REGISTRY_DIGEST_MAX];
    int how = 0;
    pht_error err;
    if (pht_registry_upload_file(r, repo, path, digest, from, out, &how, &err) != 0)
        return lpht_fail(L, &err);
    lua_pushstring(L, out);
    lua_pushstring(L, how == PHT_REGISTRY_MOUNTED ? "mounted" : "uploaded");
    return 2;
}

static const luaL_Reg registry_methods[] = {
    {"host", m_host},
    {"credentials", m_credentials},
    {"ping", m_ping},
    {"get_manifest", m_get_manifest},
    {"head_manifest", m_head_manifest},
    {"put_manifest", m_put_manifest},
    {"blob_exists", m_blob_exists},
    {"get_blob", m_get_blob},
    {"mount_blob", m_mount_blob},
    {"upload_blob", m_upload_blob},
    {NULL, NULL},
};

void lpht_open_registry(lua_State *L)
{
    lpht_newclass(L, REGISTRY_T, registry_methods, registry_closer);
    lua_pushcfunction(L, l_open_registry);
    lua_setfield(L, -2, "open_registry");
}
