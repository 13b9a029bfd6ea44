/*
 * pht Lua binding: symmetric keys (pht.symkey), AES-256-CBC streams
 * (pht.cipher) and random bytes (pht/crypt.h).
 */
#include <string.h>

#include <openssl/crypto.h>

#include "lpht.h"

#define SYMKEY_T LPHT_SYMKEY_T
#define CIPHER_T "pht.cipher"

static void symkey_closer(void *p)
{
    pht_symkey_free(p);
}

static void cipher_closer(void *p)
{
    pht_cipher_free(p);
}

static int l_new_symkey(lua_State *L)
{
    lpht_box *b = lpht_newbox(L, SYMKEY_T, sizeof *b);
    pht_error err;
    if ((b->p = pht_symkey_new(&err)) == NULL) return lpht_fail(L, &err);
    return 1;
}

static int l_symkey_from_bytes(lua_State *L)
{
    size_t len;
    const char *raw = luaL_checklstring(L, 1, &len);
    lpht_box *b = lpht_newbox(L, SYMKEY_T, sizeof *b);
    pht_error err;
    if ((b->p = pht_symkey_from_bytes((const unsigned char *)raw, len, &err)) == NULL)
        return lpht_fail(L, &err);
    return 1;
}

static int m_export(lua_State *L)
{
    pht_symkey *key = lpht_check(L, 1, SYMKEY_T);
    unsigned char raw[PHT_SYMKEY_LEN];
    pht_symkey_export(key, raw);
    lua_pushlstring(L, (const char *)raw, sizeof raw);
    OPENSSL_cleanse(raw, sizeof raw);
    return 1;
}

static int new_cipher(lua_State *L, int encrypt)
{
    pht_symkey *key = lpht_check(L, 1, SYMKEY_T);
    lpht_box *b = lpht_newbox(L, CIPHER_T, sizeof *b);
    pht_error err;
    b->p = encrypt ? pht_cipher_new_encrypt(key, &err) : pht_cipher_new_decrypt(key, &err);
    if (b->p == NULL) return lpht_fail(L, &err);
    return 1;
}

static int m_encryptor(lua_State *L)
{
    return new_cipher(L, 1);
}

static int m_decryptor(lua_State *L)
{
    return new_cipher(L, 0);
}

/*
 * A scratch buffer owned by a userdata at the top of the stack, so a raised
 * error frees it; the caller wipes it (it may hold plaintext) and pops it.
 */
static unsigned char *scratch(lua_State *L, size_t n)
{
    return lua_newuserdata(L, n ? n : 1);
}

static void drop_scratch(lua_State *L, unsigned char *buf, size_t n, int idx)
{
    OPENSSL_cleanse(buf, n ? n : 1);
    lua_remove(L, idx);
}

static int m_update(lua_State *L)
{
    pht_cipher *c = lpht_check(L, 1, CIPHER_T);
    size_t len, outlen = 0;
    const char *in = luaL_checklstring(L, 2, &len);
    size_t cap = len + PHT_CIPHER_OVERHEAD;
    unsigned char *out = scratch(L, cap);
    int top = lua_gettop(L);
    pht_error err;
    if (pht_cipher_update(c, (const unsigned char *)in, len, out, &outlen, &err) != 0) {
        drop_scratch(L, out, cap, top);
        return lpht_fail(L, &err);
    }
    lua_pushlstring(L, (const char *)out, outlen);
    drop_scratch(L, out, cap, top);
    return 1;
}

static int m_final(lua_State *L)
{
    pht_cipher *c = lpht_check(L, 1, CIPHER_T);
    unsigned char out[PHT_CIPHER_OVERHEAD];
    size_t outlen = 0;
    pht_error err;
    int rc = pht_cipher_final(c, out, &outlen, &err);
    if (rc == 0) lua_pushlstring(L, (const char *)out, outlen);
    OPENSSL_cleanse(out, sizeof out);
    return rc == 0 ? 1 : lpht_fail(L, &err);
}

/* One-shot encrypt or decrypt of a string. */
static int crypt_string(lua_State *L, int encrypt)
{
    pht_symkey *key = lpht_check(L, 1, SYMKEY_T);
    size_t len, a = 0, z = 0;
    const char *in = luaL_checklstring(L, 2, &len);
    size_t cap = len + PHT_CIPHER_OVERHEAD;
    unsigned char *out = scratch(L, cap);
    int top = lua_gettop(L);
    pht_error err;
    pht_cipher *c = encrypt ? pht_cipher_new_encrypt(key, &err) : pht_cipher_new_decrypt(key, &err);
    int rc = c ? 0 : err.code;
    if (rc == 0) rc = pht_cipher_update(c, (const unsigned char *)in, len, out, &a, &err);
    if (rc == 0) rc = pht_cipher_final(c, out + a, &z, &err);
    pht_cipher_free(c);
    if (rc != 0) {
        drop_scratch(L, out, cap, top);
        return lpht_fail(L, &err);
    }
    lua_pushlstring(L, (const char *)out, a + z);
    drop_scratch(L, out, cap, top);
    return 1;
}

static int m_encrypt(lua_State *L)
{
    return crypt_string(L, 1);
}

static int m_decrypt(lua_State *L)
{
    return crypt_string(L, 0);
}

static int crypt_file(lua_State *L, int encrypt)
{
    pht_symkey *key = lpht_check(L, 1, SYMKEY_T);
    const char *src = luaL_checkstring(L, 2);
    const char *dst = luaL_checkstring(L, 3);
    pht_error err;
    int rc =
        encrypt ? pht_encrypt_file(key, src, dst, &err) : pht_decrypt_file(key, src, dst, &err);
    if (rc != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int m_encrypt_file(lua_State *L)
{
    return crypt_file(L, 1);
}

static int m_decrypt_file(lua_State *L)
{
    return crypt_file(L, 0);
}

/* More than this at once is surely a mistake. */
#define RANDOM_MAX (1 << 20)

static int l_random(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= RANDOM_MAX, 1, "byte count must be 0 .. 1048576");
    unsigned char *out = lua_newuserdata(L, (size_t)n + 1);
    pht_error err;
    if (pht_random_bytes(out, (size_t)n, &err) != 0) return lpht_fail(L, &err);
    lua_pushlstring(L, (const char *)out, (size_t)n);
    return 1;
}

static const luaL_Reg symkey_methods[] = {
    {"export", m_export},
    {"encryptor", m_encryptor},
    {"decryptor", m_decryptor},
    {"encrypt", m_encrypt},
    {"decrypt", m_decrypt},
    {"encrypt_file", m_encrypt_file},
    {"decrypt_file", m_decrypt_file},
    {NULL, NULL},
};

static const luaL_Reg cipher_methods[] = {
    {"update", m_update},
    {"final", m_final},
    {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"new_symkey", l_new_symkey},
    {"symkey_from_bytes", l_symkey_from_bytes},
    {"random", l_random},
    {NULL, NULL},
};

void lpht_open_crypt(lua_State *L)
{
    lpht_newclass(L, SYMKEY_T, symkey_methods, symkey_closer);
    lpht_newclass(L, CIPHER_T, cipher_methods, cipher_closer);
    luaL_setfuncs(L, functions, 0);
}
