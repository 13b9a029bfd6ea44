/*
 * pht Lua binding: image writers (pht.image_writer) and streamed entries
 * (pht.image_stream). A stream keeps its writer alive, a writer its images.
 */
#include <stdlib.h>
#include <string.h>

#include "limage.h"

#define WRITER_T "pht.image_writer"
#define STREAM_T "pht.image_stream"

static void writer_closer(void *p)
{
    pht_image_writer_free(p);
}

static void stream_closer(void *p)
{
    pht_image_stream_free(p);
}

static int ok_or_fail(lua_State *L, int rc, const pht_error *err)
{
    if (rc != 0) return lpht_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

static int64_t opt_int(lua_State *L, int t, const char *k, int64_t def)
{
    lua_getfield(L, t, k);
    int64_t v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1)) luaL_error(L, "attribute %s must be a number", k);
        v = (int64_t)lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* attrs table {mode, uid, gid, mtime, opaque} at idx (may be nil). */
static pht_image_attrs check_attrs(lua_State *L, int idx)
{
    pht_image_attrs a;
    pht_image_attrs_init(&a);
    if (lua_isnoneornil(L, idx)) return a;
    luaL_checktype(L, idx, LUA_TTABLE);
    a.mode = (int32_t)opt_int(L, idx, "mode", -1);
    a.uid = opt_int(L, idx, "uid", 0);
    a.gid = opt_int(L, idx, "gid", 0);
    a.mtime = opt_int(L, idx, "mtime", -1);
    lua_getfield(L, idx, "opaque");
    a.opaque = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return a;
}

int limage_writer(lua_State *L)
{
    pht_image *img = limage_check(L, 1);
    pht_image_writer_opts o = {.keep_layers = -1};
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "base");
        if (lua_type(L, -1) == LUA_TSTRING)
            o.base_ref = lua_tostring(L, -1);
        else if (!lua_isnil(L, -1) && (o.base = limage_test(L, -1)) == NULL)
            return luaL_argerror(L, 2, "base must be a pht.image or an image reference");
        lua_pop(L, 1); /* still referenced by the table */
        lua_getfield(L, 2, "keep_layers");
        if (!lua_isnil(L, -1)) {
            if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < 0)
                return luaL_argerror(L, 2, "keep_layers must be a non-negative integer");
            o.keep_layers = (long)lua_tonumber(L, -1);
        }
        lua_pop(L, 1);
        o.tmpdir = limage_opt_str(L, 2, "tmpdir");
        o.dest = limage_opt_str(L, 2, "dest");
    }
    lpht_box *b = lpht_newbox(L, WRITER_T, sizeof *b);
    pht_error err;
    pht_image_writer *w;
    if (pht_image_writer_new(img, &o, &w, &err) != 0) return lpht_fail(L, &err);
    b->p = w;
    return 1;
}

static pht_image_writer *check_writer(lua_State *L)
{
    return lpht_check(L, 1, WRITER_T);
}

static int w_add_dir(lua_State *L)
{
    pht_image_writer *w = check_writer(L);
    const char *path = luaL_checkstring(L, 2);
    pht_image_attrs a = check_attrs(L, 3);
    pht_error err;
    return ok_or_fail(L, pht_image_writer_add_dir(w, path, &a, &err), &err);
}

/* Until progress_off: w reports to the function the writer at 1 keeps (w:set_progress). */
static void progress_on(lua_State *L, pht_image_writer *w, lpht_progress *p)
{
    pht_image_writer_set_progress(w, lpht_progress_arg(L, lpht_progress_kept(L, 1), p), p);
}

static int progress_off(pht_image_writer *w, int rc)
{
    pht_image_writer_set_progress(w, NULL, NULL);
    return rc;
}

static int w_add_file(lua_State *L)
{
    pht_image_writer *w = check_writer(L);
    const char *path = luaL_checkstring(L, 2);
    const char *src = luaL_checkstring(L, 3);
    pht_image_attrs a = check_attrs(L, 4);
    pht_error err;
    lpht_progress p;
    progress_on(L, w, &p);
    return ok_or_fail(L, progress_off(w, pht_image_writer_add_file(w, path, src, &a, &err)), &err);
}

static int w_add_bytes(lua_State *L)
{
    pht_image_writer *w = check_writer(L);
    const char *path = luaL_checkstring(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    pht_image_attrs a = check_attrs(L, 4);
    pht_error err;
    lpht_progress p;
    progress_on(L, w, &p);
    return ok_or_fail(L, progress_off(w, pht_image_writer_add_bytes(w, path, data, len, &a, &err)),
                      &err);
}

/* w:set_progress(fn): later adds and the commit report to fn(bytes); nil stops it. */
static int w_set_progress(lua_State *L)
{
    check_writer(L);
    lua_settop(L, 2);
    lpht_progress_keep(L, 1, 2);
    return 0;
}

static int w_add_symlink(lua_State *L)
{
    pht_image_writer *w = check_writer(L);
    const char *path = luaL_checkstring(L, 2);
    const char *target = luaL_checkstring(L, 3);
    pht_image_attrs a = check_attrs(L, 4);
    pht_error err;
    return ok_or_fail(L, pht_image_writer_add_symlink(w, path, target, &a, &err), &err);
}

static int w_whiteout(lua_State *L)
{
    pht_image_writer *w = check_writer(L);
    const char *path = luaL_checkstring(L, 2);
    pht_error err;
    return ok_or_fail(L, pht_image_writer_whiteout(w, path, &err), &err);
}

static int w_begin_file(lua_State *L)
{
    pht_image_writer *w = check_writer(L);
    const char *path = luaL_checkstring(L, 2);
    int64_t size = -1;
    if (!lua_isnoneornil(L, 3)) {
        lua_Number n = luaL_checknumber(L, 3);
        luaL_argcheck(L, n >= 0, 3, "size must be non-negative (or nil when unknown)");
        size = (int64_t)n;
    }
    pht_image_attrs a = check_attrs(L, 4);
    lpht_box *b = lpht_newbox(L, STREAM_T, sizeof *b);
    pht_error err;
    pht_image_stream *s;
    if (pht_image_writer_begin_file(w, path, size, &a, &s, &err) != 0) return lpht_fail(L, &err);
    b->p = s;
    return 1;
}

static int s_write(lua_State *L)
{
    pht_image_stream *s = lpht_check(L, 1, STREAM_T);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    pht_error err;
    if (pht_image_stream_write(s, data, len, &err) != 0) return lpht_fail(L, &err);
    lua_settop(L, 1);
    return 1;
}

/* The Lua progress function of a one-pass call and the first error it raised. */
typedef struct lprogress {
    lua_State *L;
    int fn; /* stack index, 0: none */
    int failed;
} lprogress;

static int call_progress(void *ud, uint64_t bytes)
{
    lprogress *p = ud;
    lua_State *L = p->L;
    lua_pushvalue(L, p->fn);
    lua_pushnumber(L, (lua_Number)bytes);
    if (lua_pcall(L, 1, 0, 0) != 0) {
        p->failed = lua_gettop(L); /* the message stays on the stack */
        return 1;
    }
    return 0;
}

/*
 * w:add_encrypted(path, src, symkey, opts) and w:add_decrypted(...): one
 * pass from the file src into entry path (pht_encrypt_into /
 * pht_decrypt_into); opts holds the attributes plus `hash` (a pht.hash fed
 * the plaintext), `progress` (a function called with byte counts) and
 * `image` (a pht image: src is then a path in it, pht_encrypt_image_into /
 * pht_decrypt_image_into).
 */
static int add_crypted(lua_State *L, int encrypt)
{
    pht_image_writer *w = check_writer(L);
    const char *path = luaL_checkstring(L, 2);
    const char *src = luaL_checkstring(L, 3);
    pht_symkey *key = lpht_check(L, 4, LPHT_SYMKEY_T);
    pht_image_attrs a = check_attrs(L, 5);
    pht_hash *h = NULL;
    int hidx = 0;
    lprogress pg = {.L = L};
    pht_image *img = NULL;
    if (!lua_isnoneornil(L, 5)) {
        lua_getfield(L, 5, "image");
        if (!lua_isnil(L, -1)) img = limage_check(L, lua_gettop(L));
        lua_getfield(L, 5, "hash");
        if (!lua_isnil(L, -1)) h = lpht_check(L, hidx = lua_gettop(L), LPHT_HASH_T);
        lua_getfield(L, 5, "progress");
        if (!lua_isnil(L, -1)) {
            luaL_argcheck(L, lua_isfunction(L, -1), 5, "progress must be a function");
            pg.fn = lua_gettop(L);
        }
    }
    /*
     * While the progress function runs, the writer, key and hash look closed
     * to it: closing one there (whose memory this call and the hashing
     * thread still use) is a no-op, using one raises.
     */
    lpht_box *boxes[3] = {lpht_checkbox(L, 1, WRITER_T), lpht_checkbox(L, 4, LPHT_SYMKEY_T),
                          h ? lpht_checkbox(L, hidx, LPHT_HASH_T) : NULL};
    if (pg.fn) {
        luaL_checkstack(L, 4, "progress");
        for (int i = 0; i < 3; i++)
            if (boxes[i]) boxes[i]->p = NULL;
    }
    pht_error err;
    pht_crypt_progress_fn fn = pg.fn ? call_progress : NULL;
    int rc;
    if (img)
        rc = encrypt ? pht_encrypt_image_into(key, img, src, h, w, path, &a, fn, &pg, &err)
                     : pht_decrypt_image_into(key, img, src, h, w, path, &a, fn, &pg, &err);
    else
        rc = encrypt ? pht_encrypt_into(key, src, h, w, path, &a, fn, &pg, &err)
                     : pht_decrypt_into(key, src, h, w, path, &a, fn, &pg, &err);
    if (pg.fn) {
        boxes[0]->p = w;
        boxes[1]->p = key;
        if (boxes[2]) boxes[2]->p = h;
    }
    if (rc != 0 && pg.failed) {
        const char *why = lua_tostring(L, pg.failed);
        return lpht_failf(L, rc, "%s: progress callback failed: %s", path,
                          why ? why : "(error object is not a string)");
    }
    return ok_or_fail(L, rc, &err);
}

static int w_add_encrypted(lua_State *L)
{
    return add_crypted(L, 1);
}

static int w_add_decrypted(lua_State *L)
{
    return add_crypted(L, 0);
}

/* Finishes the entry (reporting a short write), then releases the stream. */
static int s_close(lua_State *L)
{
    lpht_box *b = lpht_checkbox(L, 1, STREAM_T);
    if (b->p == NULL) {
        lua_pushboolean(L, 1);
        return 1;
    }
    pht_image_stream *s = b->p;
    pht_error err;
    int rc = pht_image_stream_close(s, &err);
    b->p = NULL;
    pht_image_stream_free(s);
    return ok_or_fail(L, rc, &err);
}

static int do_commit(lua_State *L, pht_image_writer *w, const char *dest, int opts)
{
    pht_image_commit_opts co = {0};
    size_t ntags = 0;
    const char **tags = NULL;
    if (opts) {
        lua_getfield(L, opts, "tags");
        int t = lua_gettop(L);
        if (lua_type(L, t) == LUA_TSTRING) {
            ntags = 1;
        } else if (lua_type(L, t) == LUA_TTABLE) {
            ntags = lpht_rawlen(L, t);
        } else if (!lua_isnil(L, t)) {
            return luaL_argerror(L, opts, "tags must be a string or an array of strings");
        }
        tags = lua_newuserdata(L, (ntags ? ntags : 1) * sizeof *tags);
        for (size_t i = 0; i < ntags; i++) {
            if (lua_type(L, t) == LUA_TSTRING) {
                tags[i] = lua_tostring(L, t);
                continue;
            }
            lua_rawgeti(L, t, (int)i + 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                return luaL_argerror(L, opts, "tags must be a string or an array of strings");
            tags[i] = lua_tostring(L, -1);
            lua_pop(L, 1); /* still referenced by the tags table */
        }
        co.created_by = limage_opt_str(L, opts, "history");
        co.comment = limage_opt_str(L, opts, "comment");
        lua_getfield(L, opts, "keep_unreferenced");
        co.keep_unreferenced = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, opts, "drop_plaintext");
        co.drop_plaintext = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    co.tags = tags;
    co.ntags = ntags;
    pht_error err;
    lpht_progress p;
    progress_on(L, w, &p);
    return ok_or_fail(L, progress_off(w, pht_image_writer_commit(w, dest, &co, &err)), &err);
}

static int w_commit(lua_State *L)
{
    pht_image_writer *w = check_writer(L);
    const char *dest = luaL_checkstring(L, 2);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    return do_commit(L, w, dest, lua_isnoneornil(L, 3) ? 0 : 3);
}

int limage_retag(lua_State *L)
{
    pht_image *img = limage_check(L, 1);
    const char *dest = luaL_checkstring(L, 2);
    lua_settop(L, 3);
    if (!lua_isnil(L, 3)) {
        if (lua_type(L, 3) != LUA_TSTRING && lua_type(L, 3) != LUA_TTABLE)
            return luaL_argerror(L, 3, "tags must be a string or an array of strings");
        lua_createtable(L, 0, 1);
        lua_pushvalue(L, 3);
        lua_setfield(L, -2, "tags");
        lua_replace(L, 3);
    }
    lpht_box *b = lpht_newbox(L, WRITER_T, sizeof *b); /* collected with the call's stack */
    pht_error err;
    pht_image_writer *w;
    if (pht_image_writer_new(img, NULL, &w, &err) != 0) return lpht_fail(L, &err);
    b->p = w;
    return do_commit(L, w, dest, lua_isnil(L, 3) ? 0 : 3);
}

static const luaL_Reg writer_methods[] = {
    {"add_dir", w_add_dir},
    {"add_file", w_add_file},
    {"add_bytes", w_add_bytes},
    {"add_symlink", w_add_symlink},
    {"whiteout", w_whiteout},
    {"begin_file", w_begin_file},
    {"add_encrypted", w_add_encrypted},
    {"add_decrypted", w_add_decrypted},
    {"set_config", limage_set_config},
    {"set_progress", w_set_progress},
    {"commit", w_commit},
    {NULL, NULL},
};

static const luaL_Reg stream_methods[] = {
    {"write", s_write},
    {NULL, NULL},
};

void limage_open_writer(lua_State *L)
{
    lpht_newclass(L, WRITER_T, writer_methods, writer_closer);
    lpht_newclass(L, STREAM_T, stream_methods, stream_closer);
    /* stream:close finishes the entry and reports errors; __gc abandons it */
    luaL_getmetatable(L, STREAM_T);
    lua_getfield(L, -1, "__index");
    lua_pushcfunction(L, s_close);
    lua_setfield(L, -2, "close");
    lua_pop(L, 2);
}
