/*
 * pht Lua binding: train_config.json as the `pht.config` type.
 *
 * JSON values cross into Lua through cJSON: the core hands out a field's JSON
 * text and this file turns it into Lua values (objects as tables, null as
 * nil), and a Lua `@context` table into JSON text for pht.new_config.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "lpht.h"

#define TNAME "pht.config"

static pht_config *check_config(lua_State *L)
{
    return lpht_check(L, 1, TNAME);
}

static void config_closer(void *p)
{
    pht_config_free(p);
}

/* An id argument or field as text: strings as is, integers in decimal. */
static const char *id_text(lua_State *L, int idx, char *buf, size_t size)
{
    if (lua_type(L, idx) == LUA_TNUMBER && lpht_isinteger(L, idx)) {
        snprintf(buf, size, "%lld", (long long)lua_tointeger(L, idx));
        return buf;
    }
    return lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
}

/* ---- constructors ------------------------------------------------------------- */

static int push_config(lua_State *L, lpht_box *box, int rc, pht_config *cfg, pht_error *err)
{
    if (rc != 0) return lpht_fail(L, err);
    box->p = cfg;
    return 1;
}

static int l_parse_config(lua_State *L)
{
    size_t len;
    const char *json = luaL_checklstring(L, 1, &len);
    lpht_box *box = lpht_newbox(L, TNAME, sizeof *box);
    pht_error err;
    pht_config *cfg = NULL;
    int rc = pht_config_parse(json, len, &cfg, &err);
    return push_config(L, box, rc, cfg, &err);
}

static int l_load_config(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lpht_box *box = lpht_newbox(L, TNAME, sizeof *box);
    pht_error err;
    pht_config *cfg = NULL;
    int rc = pht_config_load(path, &cfg, &err);
    return push_config(L, box, rc, cfg, &err);
}

/*
 * Reading the fields table for pht.new_config. Strings stay anchored in the
 * table or in the anchor table at `anchor`; a wrong type ends the call with
 * nil, message, "ECONFIG", naming the field like validation does.
 */
typedef struct fields {
    lua_State *L;
    int anchor;
    char why[256];
} fields;

/* Push t[key] (t at index t); returns its Lua type. */
static int field(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    return lua_type(L, -1);
}

/* The string at the top (popped) or NULL when nil; sets why on another type. */
static const char *take_string(fields *f, const char *path)
{
    lua_State *L = f->L;
    const char *s = NULL;
    if (lua_type(L, -1) == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (!lua_isnil(L, -1) && f->why[0] == '\0')
        snprintf(f->why, sizeof f->why, "%s: expected string, got %s", path, luaL_typename(L, -1));
    lua_pop(L, 1); /* s stays alive: it is a value of the fields table */
    return s;
}

static const char *string_field(fields *f, int t, const char *key, const char *path)
{
    field(f->L, t, key);
    return take_string(f, path);
}

/* An id field: a string, or an integer kept as text in the anchor table. */
static pht_config_id id_field(fields *f, int t, const char *key, const char *path)
{
    lua_State *L = f->L;
    pht_config_id id = {NULL, 0};
    char buf[32];
    int type = field(L, t, key);
    if (type == LUA_TNUMBER && lpht_isinteger(L, -1)) {
        lua_pushstring(L, id_text(L, -1, buf, sizeof buf));
        id.text = lua_tostring(L, -1);
        lua_rawseti(L, f->anchor, (int)lpht_rawlen(L, f->anchor) + 1);
        id.integer = 1;
    } else if (type == LUA_TSTRING) {
        id.text = lua_tostring(L, -1);
    } else if (type != LUA_TNIL && f->why[0] == '\0') {
        snprintf(f->why, sizeof f->why, "%s: expected string or integer, got %s", path,
                 luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return id;
}

/* Push t[key] if it is a table (returns its index) or nothing (returns 0). */
static int table_field(fields *f, int t, const char *key, const char *path)
{
    int type = field(f->L, t, key);
    if (type == LUA_TTABLE) return lua_gettop(f->L);
    if (type != LUA_TNIL && f->why[0] == '\0')
        snprintf(f->why, sizeof f->why, "%s: expected table, got %s", path,
                 luaL_typename(f->L, -1));
    lua_pop(f->L, 1);
    return 0;
}

static void read_route(fields *f, int t, pht_config_spec *spec)
{
    lua_State *L = f->L;
    int route = table_field(f, t, "route", "route");
    if (route == 0) return;
    size_t n = lpht_rawlen(L, route);
    pht_config_stop_spec *stops = lua_newuserdata(L, (n ? n : 1) * sizeof *stops);
    lua_rawseti(L, f->anchor, (int)lpht_rawlen(L, f->anchor) + 1);
    memset(stops, 0, (n ? n : 1) * sizeof *stops);
    for (size_t i = 0; i < n; i++) {
        char path[64];
        lua_rawgeti(L, route, (int)i + 1);
        int stop = lua_gettop(L);
        if (!lua_istable(L, stop)) {
            if (f->why[0] == '\0')
                snprintf(f->why, sizeof f->why, "route[%zu]: expected table, got %s", i,
                         luaL_typename(L, stop));
            lua_pop(L, 1);
            continue;
        }
        snprintf(path, sizeof path, "route[%zu].station", i);
        stops[i].station = id_field(f, stop, "station", path);
        snprintf(path, sizeof path, "route[%zu].eco_system", i);
        stops[i].eco_system = string_field(f, stop, "eco_system", path);
        snprintf(path, sizeof path, "route[%zu].rsa_public_key", i);
        stops[i].rsa_public_key = string_field(f, stop, "rsa_public_key", path);
        snprintf(path, sizeof path, "route[%zu].encrypted_key", i);
        stops[i].encrypted_key = string_field(f, stop, "encrypted_key", path);
        field(L, stop, "index");
        if (!lua_isnil(L, -1) &&
            !(lua_type(L, -1) == LUA_TNUMBER && lua_tointeger(L, -1) == (lua_Integer)i &&
              lpht_isinteger(L, -1)) &&
            f->why[0] == '\0')
            snprintf(f->why, sizeof f->why,
                     "route[%zu].index: expected %zu (list the stops in route order)", i, i);
        lua_pop(L, 2);
    }
    spec->route = stops;
    spec->route_count = n;
    lua_pop(L, 1);
}

static void read_file_list(fields *f, int t, pht_config_spec *spec)
{
    lua_State *L = f->L;
    int list = table_field(f, t, "file_list", "file_list");
    if (list == 0) return;
    size_t n = lpht_rawlen(L, list);
    const char **names = lua_newuserdata(L, (n ? n : 1) * sizeof *names);
    lua_rawseti(L, f->anchor, (int)lpht_rawlen(L, f->anchor) + 1);
    for (size_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof path, "file_list[%zu]", i);
        lua_rawgeti(L, list, (int)i + 1);
        names[i] = take_string(f, path);
        if (names[i] == NULL && f->why[0] == '\0')
            snprintf(f->why, sizeof f->why, "file_list[%zu]: expected string, got nil", i);
    }
    spec->file_list = names;
    spec->file_count = n;
    lua_pop(L, 1);
}

static int l_new_config(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_newtable(L); /* 2: anchor for texts made here */
    fields f = {L, 2, ""};
    pht_config_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.train_id = string_field(&f, 1, "@id", "@id");
    int ctx = table_field(&f, 1, "@context", "@context");
    if (ctx != 0) {
        const char *why = "out of memory";
        cJSON *json = lpht_to_json(L, ctx, &why);
        char *text = json ? cJSON_PrintUnformatted(json) : NULL;
        cJSON_Delete(json);
        lua_pop(L, 1);
        if (text == NULL) return lpht_failf(L, PHT_ECONFIG, "@context: cannot encode %s", why);
        lua_pushstring(L, text);
        cJSON_free(text);
        spec.context_json = lua_tostring(L, -1);
        lua_rawseti(L, 2, (int)lpht_rawlen(L, 2) + 1);
    }
    int src = table_field(&f, 1, "source", "source");
    if (src != 0) {
        spec.source_type = string_field(&f, src, "type", "source.type");
        spec.source_address = string_field(&f, src, "address", "source.address");
        spec.source_tag = string_field(&f, src, "tag", "source.tag");
        spec.source_branch = string_field(&f, src, "branch", "source.branch");
        lua_pop(L, 1);
    }
    int creator = table_field(&f, 1, "creator", "creator");
    if (creator != 0) {
        spec.creator_id = id_field(&f, creator, "id", "creator.id");
        spec.creator_public_key =
            string_field(&f, creator, "rsa_public_key", "creator.rsa_public_key");
        spec.creator_encrypted_key =
            string_field(&f, creator, "encrypted_key", "creator.encrypted_key");
        lua_pop(L, 1);
    }
    spec.proposal_id = id_field(&f, 1, "proposal_id", "proposal_id");
    spec.session_id = string_field(&f, 1, "session_id", "session_id");
    read_route(&f, 1, &spec);
    read_file_list(&f, 1, &spec);
    spec.hash = string_field(&f, 1, "hash", "hash");
    spec.signature = string_field(&f, 1, "signature", "signature");
    int build = table_field(&f, 1, "build", "build");
    if (build != 0) {
        spec.build_signature = string_field(&f, build, "signature", "build.signature");
        spec.build_public_key = string_field(&f, build, "rsa_public_key", "build.rsa_public_key");
        lua_pop(L, 1);
    }
    if (f.why[0] != '\0') return lpht_failf(L, PHT_ECONFIG, "%s", f.why);
    lpht_box *box = lpht_newbox(L, TNAME, sizeof *box);
    pht_error err;
    pht_config *cfg = NULL;
    int rc = pht_config_new(&spec, &cfg, &err);
    return push_config(L, box, rc, cfg, &err);
}

/* ---- methods ------------------------------------------------------------------ */

static int l_to_json(lua_State *L)
{
    pht_config *cfg = check_config(L);
    int indent = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
    char *json = NULL;
    size_t len = 0;
    pht_error err;
    if (pht_config_to_json(cfg, indent, &json, &len, &err) != 0) return lpht_fail(L, &err);
    lua_pushlstring(L, json, len);
    free(json);
    return 1;
}

static int l_get(lua_State *L)
{
    pht_config *cfg = check_config(L);
    const char *key = luaL_checkstring(L, 2);
    char *json = NULL;
    pht_error err;
    int rc = pht_config_get_json(cfg, key, &json, &err);
    if (rc == PHT_ENOTFOUND) {
        lua_pushnil(L);
        return 1;
    }
    if (rc != 0) return lpht_fail(L, &err);
    cJSON *v = cJSON_Parse(json);
    free(json);
    if (v == NULL) return lpht_failf(L, PHT_ENOMEM, "%s: out of memory", key);
    lpht_push_json(L, v, 0);
    cJSON_Delete(v);
    return 1;
}

static int l_creator_id(lua_State *L)
{
    lua_pushstring(L, pht_config_creator_id(check_config(L)));
    return 1;
}

static int l_session_id(lua_State *L)
{
    lua_pushlstring(L, (const char *)pht_config_session_id(check_config(L)), PHT_SESSION_ID_SIZE);
    return 1;
}

static int l_file_list(lua_State *L)
{
    pht_config *cfg = check_config(L);
    size_t n = pht_config_file_count(cfg);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, pht_config_file(cfg, i));
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

static void push_stop(lua_State *L, const pht_config_stop *st)
{
    lua_createtable(L, 0, 6);
    lpht_setfield_str(L, "station", st->station);
    lua_pushinteger(L, (lua_Integer)st->index);
    lua_setfield(L, -2, "index");
    lpht_setfield_str(L, "eco_system", st->eco_system);
    lpht_setfield_str(L, "rsa_public_key", st->rsa_public_key);
    if (st->digest != NULL) {
        lua_createtable(L, 0, 2);
        lpht_setfield_str(L, "digest", st->digest);
        lpht_setfield_str(L, "signature", st->signature);
        lua_setfield(L, -2, "signature");
    }
    lpht_setfield_str(L, "encrypted_key", st->encrypted_key);
}

static int l_route(lua_State *L)
{
    pht_config *cfg = check_config(L);
    size_t n = pht_config_route_count(cfg);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        pht_config_stop st;
        pht_error err;
        if (pht_config_stop_at(cfg, i, &st, &err) != 0) return lpht_fail(L, &err);
        push_stop(L, &st);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

static int l_stop(lua_State *L)
{
    pht_config *cfg = check_config(L);
    char buf[32];
    const char *station = id_text(L, 2, buf, sizeof buf);
    if (station == NULL) return luaL_argerror(L, 2, "station id: string or integer expected");
    pht_config_stop st;
    pht_error err;
    if (pht_config_find_stop(cfg, station, &st, &err) != 0) return lpht_fail(L, &err);
    push_stop(L, &st);
    return 1;
}

static int done(lua_State *L, int rc, pht_error *err)
{
    if (rc != 0) return lpht_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_set(lua_State *L)
{
    pht_config *cfg = check_config(L);
    const char *key = luaL_checkstring(L, 2);
    pht_error err;
    int rc;
    switch (lua_type(L, 3)) {
    case LUA_TNONE:
    case LUA_TNIL:
        rc = pht_config_set_string(cfg, key, NULL, &err);
        break;
    case LUA_TSTRING:
        rc = pht_config_set_string(cfg, key, lua_tostring(L, 3), &err);
        break;
    case LUA_TBOOLEAN:
        rc = pht_config_set_boolean(cfg, key, lua_toboolean(L, 3), &err);
        break;
    case LUA_TNUMBER:
        if (!lpht_isinteger(L, 3)) return luaL_argerror(L, 3, "integer expected, got a fraction");
        rc = pht_config_set_integer(cfg, key, (long long)lua_tointeger(L, 3), &err);
        break;
    default:
        return luaL_argerror(L, 3, "string, integer, boolean or nil expected");
    }
    return done(L, rc, &err);
}

static size_t check_index(lua_State *L, int idx)
{
    lua_Integer i = luaL_checkinteger(L, idx);
    if (i < 0) luaL_argerror(L, idx, "route index must be >= 0");
    return (size_t)i;
}

static int l_set_stop_signature(lua_State *L)
{
    pht_config *cfg = check_config(L);
    size_t index = check_index(L, 2);
    const char *digest = luaL_optstring(L, 3, NULL);
    const char *sig = luaL_optstring(L, 4, NULL);
    pht_error err;
    return done(L, pht_config_set_stop_signature(cfg, index, digest, sig, &err), &err);
}

static int l_set_stop_key(lua_State *L)
{
    pht_config *cfg = check_config(L);
    size_t index = check_index(L, 2);
    const char *hex = luaL_optstring(L, 3, NULL);
    pht_error err;
    return done(L, pht_config_set_stop_key(cfg, index, hex, &err), &err);
}

static int l_set_creator_key(lua_State *L)
{
    pht_config *cfg = check_config(L);
    const char *hex = luaL_optstring(L, 2, NULL);
    pht_error err;
    return done(L, pht_config_set_creator_key(cfg, hex, &err), &err);
}

static int l_validate(lua_State *L)
{
    pht_config *cfg = check_config(L);
    pht_error err;
    return done(L, pht_config_validate(cfg, &err), &err);
}

static const luaL_Reg methods[] = {
    {"to_json", l_to_json},
    {"get", l_get},
    {"creator_id", l_creator_id},
    {"session_id", l_session_id},
    {"file_list", l_file_list},
    {"route", l_route},
    {"stop", l_stop},
    {"set", l_set},
    {"set_stop_signature", l_set_stop_signature},
    {"set_stop_key", l_set_stop_key},
    {"set_creator_key", l_set_creator_key},
    {"validate", l_validate},
    {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"parse_config", l_parse_config},
    {"load_config", l_load_config},
    {"new_config", l_new_config},
    {NULL, NULL},
};

void lpht_open_config(lua_State *L)
{
    lpht_newclass(L, TNAME, methods, config_closer);
    luaL_setfuncs(L, functions, 0);
}
