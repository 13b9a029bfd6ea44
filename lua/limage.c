/*
 * pht Lua binding: images (pht.image) and streamed file readers
 * (pht.image_reader). Writers live in limage_writer.c. Readers and writers
 * keep their image alive in the core, so closing or collecting the image
 * first is safe.
 */
#include <stdlib.h>
#include <string.h>

#include "limage.h"

#define IMAGE_T "pht.image"
#define READER_T "pht.image_reader"

static void image_closer(void *p)
{
    pht_image_free(p);
}

static void reader_closer(void *p)
{
    pht_image_reader_free(p);
}

pht_image *limage_check(lua_State *L, int idx)
{
    return lpht_check(L, idx, IMAGE_T);
}

pht_image *limage_test(lua_State *L, int idx)
{
    lpht_box *b = luaL_testudata(L, idx, IMAGE_T);
    if (b && b->p == NULL) luaL_error(L, "attempt to use a closed %s", IMAGE_T);
    return b ? b->p : NULL;
}

static uint64_t opt_u64(lua_State *L, int t, const char *k, uint64_t def)
{
    lua_getfield(L, t, k);
    uint64_t v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < 0)
            luaL_error(L, "option %s must be a non-negative number", k);
        v = (uint64_t)lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

const char *limage_opt_str(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    const char *s = NULL;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option %s must be a string", k);
        s = lua_tostring(L, -1);
    }
    lua_pop(L, 1); /* the string stays referenced by the options table */
    return s;
}

static int l_open_image(lua_State *L)
{
    const char *ref = luaL_checkstring(L, 1);
    lpht_progress progress;
    pht_image_opts o;
    pht_image_opts_init(&o);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        o.tmpdir = limage_opt_str(L, 2, "tmpdir");
        o.max_entries = opt_u64(L, 2, "max_entries", o.max_entries);
        o.max_entry_bytes = opt_u64(L, 2, "max_entry_bytes", o.max_entry_bytes);
        o.max_layer_bytes = opt_u64(L, 2, "max_layer_bytes", o.max_layer_bytes);
        o.max_name = opt_u64(L, 2, "max_name", o.max_name);
        o.max_path_bytes = opt_u64(L, 2, "max_path_bytes", o.max_path_bytes);
        o.cache_dir = limage_opt_str(L, 2, "cache_dir");
        /* "SPEC" or seconds (the idle limit); the string stays on the stack until the open ends */
        lua_getfield(L, 2, "docker_timeout");
        if (lua_type(L, -1) == LUA_TNUMBER) {
            double n = lua_tonumber(L, -1);
            if (n < 0 || n > 1e7 || n != (double)(long)n)
                luaL_error(L, "option docker_timeout must be whole seconds or a string");
            o.docker_timeout = lua_pushfstring(L, "%d", (int)n);
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            o.docker_timeout = lua_tostring(L, -1);
        } else if (!lua_isnil(L, -1)) {
            luaL_error(L, "option docker_timeout must be whole seconds or a string");
        }
        lua_getfield(L, 2, "verify_layers");
        o.verify_layers = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, 2, "no_index");
        o.no_index = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, 2, "verify_behind");
        o.verify_behind = lua_toboolean(L, -1);
        lua_pop(L, 1);
        /* docker:// (the same names as pht.open_registry's) */
        o.registry_creds = limage_opt_str(L, 2, "creds");
        o.registry_auth_file = limage_opt_str(L, 2, "auth_file");
        o.registry_cert_dir = limage_opt_str(L, 2, "cert_dir");
        o.platform = limage_opt_str(L, 2, "platform");
        lua_getfield(L, 2, "tls_verify");
        o.registry_tls_insecure = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
        lua_pop(L, 1);
        /* stays on the stack until the open ends */
        lua_getfield(L, 2, "progress");
        if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
            luaL_error(L, "option progress must be a function");
        o.progress = lpht_progress_arg(L, -1, &progress);
        o.progress_ud = &progress;
    }
    lpht_box *b = lpht_newbox(L, IMAGE_T, sizeof *b);
    pht_error err;
    pht_image *img;
    if (pht_image_open(&img, ref, &o, &err) != 0) return lpht_fail(L, &err);
    b->p = img;
    return 1;
}

static int m_reference(lua_State *L)
{
    lua_pushstring(L, pht_image_reference(limage_check(L, 1)));
    return 1;
}

static int m_transport(lua_State *L)
{
    lua_pushstring(L, pht_image_transport(limage_check(L, 1)));
    return 1;
}

static int m_manifest(lua_State *L)
{
    lua_pushstring(L, pht_image_manifest(limage_check(L, 1)));
    return 1;
}

static int m_image_config(lua_State *L)
{
    lua_pushstring(L, pht_image_config(limage_check(L, 1)));
    return 1;
}

static void set_num(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static int m_layers(lua_State *L)
{
    pht_image *img = limage_check(L, 1);
    size_t n = pht_image_layer_count(img);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        pht_image_layer li;
        pht_error err;
        if (pht_image_layer_info(img, i, &li, &err) != 0) return lpht_fail(L, &err);
        lua_createtable(L, 0, 8);
        lpht_setfield_str(L, "digest", li.digest);
        lpht_setfield_str(L, "diff_id", li.diff_id);
        lpht_setfield_str(L, "media_type", li.media_type);
        set_num(L, "size", (lua_Integer)li.size);
        set_num(L, "diff_size", (lua_Integer)li.diff_size);
        lpht_setfield_str(L, "created_by", li.created_by);
        lpht_setfield_str(L, "comment", li.comment);
        lua_pushboolean(L, li.verified);
        lua_setfield(L, -2, "verified");
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

/* img:protocol_top(): pht_image_protocol_top, the number of layers that stay. */
static int m_protocol_top(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)pht_image_protocol_top(limage_check(L, 1)));
    return 1;
}

static const char *type_name(int t)
{
    switch (t) {
    case PHT_IMAGE_FILE:
        return "file";
    case PHT_IMAGE_DIR:
        return "dir";
    case PHT_IMAGE_SYMLINK:
        return "symlink";
    case PHT_IMAGE_HARDLINK:
        return "hardlink";
    default:
        return "other";
    }
}

static void push_stat(lua_State *L, const pht_image_stat *st, const char *path)
{
    lua_createtable(L, 0, 9);
    if (path) lpht_setfield_str(L, "path", path);
    lpht_setfield_str(L, "type", type_name(st->type));
    set_num(L, "size", (lua_Integer)st->size);
    set_num(L, "mode", (lua_Integer)st->mode);
    set_num(L, "uid", (lua_Integer)st->uid);
    set_num(L, "gid", (lua_Integer)st->gid);
    set_num(L, "mtime", (lua_Integer)st->mtime);
    lpht_setfield_str(L, "link", st->link);
}

/*
 * Until progress_off: img reports to the function the image at 1 keeps
 * (img:set_progress), pushed on the stack. Any call that may land layers
 * (a docker-daemon image lands /opt on first use) reports.
 */
static void progress_on(lua_State *L, pht_image *img, lpht_progress *p)
{
    pht_image_set_progress(img, lpht_progress_arg(L, lpht_progress_kept(L, 1), p), p);
}

static int progress_off(pht_image *img, int rc)
{
    pht_image_set_progress(img, NULL, NULL);
    return rc;
}

static int m_stat(lua_State *L)
{
    pht_image *img = limage_check(L, 1);
    const char *path = luaL_checkstring(L, 2);
    pht_image_stat st;
    pht_error err;
    lpht_progress p;
    progress_on(L, img, &p);
    if (progress_off(img, pht_image_stat_path(img, path, &st, &err)) != 0)
        return lpht_fail(L, &err);
    push_stat(L, &st, NULL);
    return 1;
}

/* A yes/no question about the files at or below path (pht_image_in_place, pht_image_in_order). */
static int ask_tree(lua_State *L, int (*ask)(pht_image *, const char *, int *, pht_error *))
{
    pht_image *img = limage_check(L, 1);
    const char *path = luaL_checkstring(L, 2);
    int yes;
    pht_error err;
    lpht_progress p;
    progress_on(L, img, &p);
    if (progress_off(img, ask(img, path, &yes, &err)) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, yes);
    return 1;
}

/* img:in_place(path): true if every file at or below path is read in place. */
static int m_in_place(lua_State *L)
{
    return ask_tree(L, pht_image_in_place);
}

/* img:in_order(path): true if its files, opened in walk order, read each layer once. */
static int m_in_order(lua_State *L)
{
    return ask_tree(L, pht_image_in_order);
}

typedef struct walk_ud {
    lua_State *L;
    int n, full;
} walk_ud;

static int walk_cb(void *ud, const char *rel, const pht_image_stat *st)
{
    walk_ud *w = ud;
    if (w->full)
        push_stat(w->L, st, rel);
    else
        lua_pushstring(w->L, rel);
    lua_rawseti(w->L, -2, ++w->n);
    return 0;
}

static int do_walk(lua_State *L, int full)
{
    pht_image *img = limage_check(L, 1);
    const char *dir = luaL_optstring(L, 2, "/");
    lpht_progress p;
    progress_on(L, img, &p);
    lua_newtable(L);
    walk_ud w = {L, 0, full};
    pht_error err;
    if (progress_off(img, pht_image_walk(img, dir, full, walk_cb, &w, &err)) != 0)
        return lpht_fail(L, &err);
    return 1;
}

static int m_list(lua_State *L)
{
    return do_walk(L, 0);
}

static int m_walk(lua_State *L)
{
    return do_walk(L, 1);
}

/* Read up to max bytes of r into a Lua string on the stack; 0 or a failure count. */
static int read_into(lua_State *L, pht_image_reader *r, size_t max, size_t *total)
{
    luaL_Buffer buf;
    luaL_buffinit(L, &buf);
    *total = 0;
    while (*total < max) {
        char *p = luaL_prepbuffer(&buf);
        size_t want = max - *total < LUAL_BUFFERSIZE ? max - *total : LUAL_BUFFERSIZE, got;
        pht_error err;
        if (pht_image_reader_read(r, p, want, &got, &err) != 0) {
            luaL_pushresult(&buf);
            lua_pop(L, 1);
            return lpht_fail(L, &err);
        }
        if (got == 0) break;
        luaL_addsize(&buf, got);
        *total += got;
    }
    luaL_pushresult(&buf);
    return 0;
}

static int m_read_file(lua_State *L)
{
    pht_image *img = limage_check(L, 1);
    const char *path = luaL_checkstring(L, 2);
    lua_Number max = luaL_optnumber(L, 3, 16 * 1024 * 1024);
    pht_image_stat st;
    pht_error err;
    lpht_progress p;
    progress_on(L, img, &p);
    if (progress_off(img, pht_image_stat_path(img, path, &st, &err)) != 0)
        return lpht_fail(L, &err);
    if ((lua_Number)st.size > max)
        return lpht_failf(L, PHT_ELIMIT, "%s is %llu bytes, over the %.0f-byte limit of this read",
                          path, (unsigned long long)st.size, (double)max);
    pht_image_reader *r;
    if (pht_image_open_file(img, path, &r, &err) != 0) return lpht_fail(L, &err);
    size_t total;
    int nret = read_into(L, r, (size_t)st.size, &total);
    pht_image_reader_free(r);
    return nret ? nret : 1;
}

static int m_open_file(lua_State *L)
{
    pht_image *img = limage_check(L, 1);
    const char *path = luaL_checkstring(L, 2);
    lpht_progress p;
    progress_on(L, img, &p);
    lpht_box *b = lpht_newbox(L, READER_T, sizeof *b);
    pht_error err;
    pht_image_reader *r;
    if (progress_off(img, pht_image_open_file(img, path, &r, &err)) != 0) return lpht_fail(L, &err);
    b->p = r;
    return 1;
}

static int r_read(lua_State *L)
{
    pht_image_reader *r = lpht_check(L, 1, READER_T);
    lua_Integer n = luaL_optinteger(L, 2, 65536);
    luaL_argcheck(L, n > 0, 2, "must be positive");
    size_t total;
    int nret = read_into(L, r, (size_t)n, &total);
    if (nret) return nret;
    if (total == 0) {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
    return 1;
}

/* img:check_master(master[, top]): true, or nil, message, code (pht_image_check_master). */
static int m_check_master(lua_State *L)
{
    pht_image *img = limage_check(L, 1);
    pht_image *master = limage_check(L, 2);
    lua_Integer top = luaL_optinteger(L, 3, 0);
    if (top < 0) return luaL_argerror(L, 3, "must not be negative");
    pht_error err;
    if (pht_image_check_master(img, master, (size_t)top, &err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* img:verified(): true once the open's digest checks matched (waits for verify_behind's). */
static int m_verified(lua_State *L)
{
    pht_image *img = limage_check(L, 1);
    pht_error err;
    if (pht_image_verified(img, &err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int m_extract(lua_State *L)
{
    pht_image *img = limage_check(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    const char *dest = luaL_checkstring(L, 3);
    lpht_progress p;
    progress_on(L, img, &p);
    pht_error err;
    if (progress_off(img, pht_image_extract(img, dir, dest, &err)) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* img:set_progress(fn): later extracts (and landings) report to fn(bytes); nil stops it. */
static int m_set_progress(lua_State *L)
{
    limage_check(L, 1);
    lua_settop(L, 2);
    lpht_progress_keep(L, 1, 2);
    return 0;
}

static const luaL_Reg image_methods[] = {
    {"reference", m_reference},
    {"transport", m_transport},
    {"manifest", m_manifest},
    {"image_config", m_image_config},
    {"layers", m_layers},
    {"protocol_top", m_protocol_top},
    {"stat", m_stat},
    {"list", m_list},
    {"walk", m_walk},
    {"read_file", m_read_file},
    {"open_file", m_open_file},
    {"extract", m_extract},
    {"writer", limage_writer},
    {"retag", limage_retag},
    {"set_progress", m_set_progress},
    {"check_master", m_check_master},
    {"verified", m_verified},
    {"in_place", m_in_place},
    {"in_order", m_in_order},
    {NULL, NULL},
};

static const luaL_Reg reader_methods[] = {
    {"read", r_read},
    {NULL, NULL},
};

/* pht.oci_plaintext(dir, keep): the manifests of an OCI layout holding a pre-run's plaintext. */
static int l_oci_plaintext(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1), *keep = luaL_optstring(L, 2, NULL);
    pht_oci_plaintext *v;
    size_t n;
    pht_error err;
    if (pht_oci_find_plaintext(dir, keep, &v, &n, &err) != 0) return lpht_fail(L, &err);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, v[i].digest);
        lua_setfield(L, -2, "digest");
        if (v[i].name) {
            lua_pushstring(L, v[i].name);
            lua_setfield(L, -2, "name");
        }
        lua_pushstring(L, v[i].why);
        lua_setfield(L, -2, "why");
        lua_rawseti(L, -2, (int)i + 1);
    }
    pht_oci_plaintext_free(v, n);
    return 1;
}

/* pht.oci_remove_manifests(dir, {digest, ...}): drop them from index.json, collect blobs. */
static int l_oci_remove_manifests(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    size_t n = (size_t)lpht_rawlen(L, 2);
    const char **dgs = lua_newuserdata(L, (n ? n : 1) * sizeof *dgs);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 2, (int)i + 1);
        dgs[i] = lua_tostring(L, -1);
        if (dgs[i] == NULL) return luaL_argerror(L, 2, "digests must be strings");
        lua_pop(L, 1); /* the table keeps the string alive */
    }
    size_t blobs = 0;
    pht_error err;
    if (pht_oci_remove_manifests(dir, dgs, n, &blobs, &err) != 0) return lpht_fail(L, &err);
    lua_pushinteger(L, (lua_Integer)blobs);
    return 1;
}

void lpht_open_image(lua_State *L)
{
    lpht_newclass(L, IMAGE_T, image_methods, image_closer);
    lpht_newclass(L, READER_T, reader_methods, reader_closer);
    limage_open_writer(L);
    lua_pushcfunction(L, l_open_image);
    lua_setfield(L, -2, "open_image");
    lua_pushcfunction(L, l_oci_plaintext);
    lua_setfield(L, -2, "oci_plaintext");
    lua_pushcfunction(L, l_oci_remove_manifests);
    lua_setfield(L, -2, "oci_remove_manifests");
    lua_pushstring(L, PHT_PRE_RUN_MARK);
    lua_setfield(L, -2, "PRE_RUN_MARK");
}
