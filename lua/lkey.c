/* pht Lua binding: RSA keys, signatures and symmetric key wrapping (pht.key). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lpht.h"

#define KEY_T "pht.key"
#define SYMKEY_T "pht.symkey"

static void key_closer(void *p)
{
    pht_key_free(p);
}

static const char *opt_password(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return NULL;
    return luaL_checkstring(L, idx);
}

static int push_key(lua_State *L, lpht_box *b, pht_key *key, const pht_error *err)
{
    if (key == NULL) return lpht_fail(L, err);
    b->p = key;
    return 1;
}

static int l_load_private_key(lua_State *L)
{
    size_t len;
    const char *pem = luaL_checklstring(L, 1, &len);
    const char *password = opt_password(L, 2);
    lpht_box *b = lpht_newbox(L, KEY_T, sizeof *b);
    pht_error err;
    return push_key(L, b, pht_key_load_private_pem(pem, len, password, &err), &err);
}

static int l_load_private_key_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *password = opt_password(L, 2);
    lpht_box *b = lpht_newbox(L, KEY_T, sizeof *b);
    pht_error err;
    return push_key(L, b, pht_key_load_private_file(path, password, &err), &err);
}

static int l_load_public_key(lua_State *L)
{
    size_t len;
    const char *pem = luaL_checklstring(L, 1, &len);
    lpht_box *b = lpht_newbox(L, KEY_T, sizeof *b);
    pht_error err;
    return push_key(L, b, pht_key_load_public_pem(pem, len, &err), &err);
}

static int l_load_public_key_hex(lua_State *L)
{
    size_t len;
    const char *hex = luaL_checklstring(L, 1, &len);
    lpht_box *b = lpht_newbox(L, KEY_T, sizeof *b);
    pht_error err;
    return push_key(L, b, pht_key_load_public_hex(hex, len, &err), &err);
}

static int l_generate_key(lua_State *L)
{
    lua_Integer bits = luaL_optinteger(L, 1, PHT_KEY_MIN_BITS);
    lpht_box *b = lpht_newbox(L, KEY_T, sizeof *b);
    pht_error err;
    /* Out-of-range counts become -1, which the core rejects with its message. */
    int n = (bits < 0 || bits > INT_MAX) ? -1 : (int)bits;
    return push_key(L, b, pht_key_generate(n, &err), &err);
}

/* Push a malloc'd text result and free it. */
static int push_text(lua_State *L, int rc, char *text, size_t len, const pht_error *err)
{
    if (rc != 0) return lpht_fail(L, err);
    lua_pushlstring(L, text, len);
    free(text);
    return 1;
}

static int m_public_pem(lua_State *L)
{
    pht_key *key = lpht_check(L, 1, KEY_T);
    char *pem = NULL;
    size_t len = 0;
    pht_error err;
    int rc = pht_key_public_pem(key, &pem, &len, &err);
    return push_text(L, rc, pem, len, &err);
}

static int m_public_hex(lua_State *L)
{
    pht_key *key = lpht_check(L, 1, KEY_T);
    char *hex = NULL;
    size_t len = 0;
    pht_error err;
    int rc = pht_key_public_hex(key, &hex, &len, &err);
    return push_text(L, rc, hex, len, &err);
}

static int m_private_pem(lua_State *L)
{
    pht_key *key = lpht_check(L, 1, KEY_T);
    const char *password = opt_password(L, 2);
    char *pem = NULL;
    size_t len = 0;
    pht_error err;
    if (pht_key_private_pem(key, password, &pem, &len, &err) != 0) return lpht_fail(L, &err);
    lua_pushlstring(L, pem, len);
    pht_secret_free(pem, len + 1);
    return 1;
}

static int m_fingerprint(lua_State *L)
{
    pht_key *key = lpht_check(L, 1, KEY_T);
    char hex[PHT_KEY_FINGERPRINT_HEX_LEN + 1];
    pht_error err;
    if (pht_key_fingerprint(key, hex, &err) != 0) return lpht_fail(L, &err);
    lua_pushstring(L, hex);
    return 1;
}

static int m_bits(lua_State *L)
{
    lua_pushinteger(L, pht_key_bits(lpht_check(L, 1, KEY_T)));
    return 1;
}

static int m_is_private(lua_State *L)
{
    lua_pushboolean(L, pht_key_is_private(lpht_check(L, 1, KEY_T)));
    return 1;
}

/* Push a malloc'd byte result (signature, wrapped key) and free it. */
static int push_bytes(lua_State *L, int rc, unsigned char *bytes, size_t len, const pht_error *err)
{
    if (rc != 0) return lpht_fail(L, err);
    lua_pushlstring(L, (const char *)bytes, len);
    free(bytes);
    return 1;
}

/* true; false, message, "EVERIFY" for a signature that does not verify; nil, message, code. */
static int push_verified(lua_State *L, int rc, const pht_error *err)
{
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (rc == PHT_EVERIFY) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, err->message);
        lua_pushstring(L, pht_code_name(rc));
        return 3;
    }
    return lpht_fail(L, err);
}

static int m_sign(lua_State *L)
{
    pht_key *key = lpht_check(L, 1, KEY_T);
    size_t len, siglen = 0;
    const char *msg = luaL_checklstring(L, 2, &len);
    unsigned char *sig = NULL;
    pht_error err;
    int rc = pht_key_sign(key, msg, len, &sig, &siglen, &err);
    return push_bytes(L, rc, sig, siglen, &err);
}

static int m_verify(lua_State *L)
{
    pht_key *key = lpht_check(L, 1, KEY_T);
    size_t len, siglen;
    const char *msg = luaL_checklstring(L, 2, &len);
    const char *sig = luaL_checklstring(L, 3, &siglen);
    pht_error err;
    return push_verified(L, pht_key_verify(key, msg, len, (const unsigned char *)sig, siglen, &err),
                         &err);
}

static int m_sign_digest(lua_State *L)
{
    pht_key *key = lpht_check(L, 1, KEY_T);
    size_t len, siglen = 0;
    const char *digest = luaL_checklstring(L, 2, &len);
    unsigned char *sig = NULL;
    pht_error err;
    int rc = pht_key_sign_digest(key, (const unsigned char *)digest, len, &sig, &siglen, &err);
    return push_bytes(L, rc, sig, siglen, &err);
}

static int m_verify_digest(lua_State *L)
{
    pht_key *key = lpht_check(L, 1, KEY_T);
    size_t len, siglen;
    const char *digest = luaL_checklstring(L, 2, &len);
    const char *sig = luaL_checklstring(L, 3, &siglen);
    pht_error err;
    int rc = pht_key_verify_digest(key, (const unsigned char *)digest, len,
                                   (const unsigned char *)sig, siglen, &err);
    return push_verified(L, rc, &err);
}

static int m_wrap(lua_State *L)
{
    pht_key *key = lpht_check(L, 1, KEY_T);
    pht_symkey *sym = lpht_check(L, 2, SYMKEY_T);
    unsigned char *out = NULL;
    size_t len = 0;
    pht_error err;
    int rc = pht_symkey_wrap(sym, key, &out, &len, &err);
    return push_bytes(L, rc, out, len, &err);
}

static int m_unwrap(lua_State *L)
{
    pht_key *key = lpht_check(L, 1, KEY_T);
    size_t len;
    const char *in = luaL_checklstring(L, 2, &len);
    lpht_box *b = lpht_newbox(L, SYMKEY_T, sizeof *b);
    pht_error err;
    if ((b->p = pht_symkey_unwrap(key, (const unsigned char *)in, len, &err)) == NULL)
        return lpht_fail(L, &err);
    return 1;
}

static const luaL_Reg key_methods[] = {
    {"public_pem", m_public_pem},
    {"public_hex", m_public_hex},
    {"private_pem", m_private_pem},
    {"fingerprint", m_fingerprint},
    {"bits", m_bits},
    {"is_private", m_is_private},
    {"sign", m_sign},
    {"verify", m_verify},
    {"sign_digest", m_sign_digest},
    {"verify_digest", m_verify_digest},
    {"wrap", m_wrap},
    {"unwrap", m_unwrap},
    {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"load_private_key", l_load_private_key}, {"load_private_key_file", l_load_private_key_file},
    {"load_public_key", l_load_public_key},   {"load_public_key_hex", l_load_public_key_hex},
    {"generate_key", l_generate_key},         {NULL, NULL},
};

void lpht_open_key(lua_State *L)
{
    lpht_newclass(L, KEY_T, key_methods, key_closer);
    /* key:unwrap makes pht.symkey boxes, a class lpht_open_crypt registers. */
    luaL_setfuncs(L, functions, 0);
}
