/*
 * pht Lua binding: JSON for Lua values over cJSON (pht.json_encode,
 * pht.json_decode, pht.null), and the conversions the other binding files
 * use (lpht_push_json, lpht_to_json).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "lpht.h"

/* pht.null: a unique light userdata standing for JSON null inside tables. */
static char null_sentinel;
#define JSON_NULL ((void *)&null_sentinel)
#define JSON_MAX_DEPTH 128

/* An empty table whose metatable's __jsontype is "array" encodes as []. */
static int marked_array(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx)) return 0;
    lua_getfield(L, -1, "__jsontype");
    int yes = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "array") == 0;
    lua_pop(L, 2);
    return yes;
}

/* A table is an array when its keys are exactly 1..n (n >= 1), or when it
 * is empty and marked as one (marked_array). */
static int table_array_length(lua_State *L, int idx, size_t *n)
{
    size_t count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (!lpht_isinteger(L, -1)) {
            lua_pop(L, 1);
            return 0;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k < 1) {
            lua_pop(L, 1);
            return 0;
        }
        count++;
        if ((size_t)k > max) max = (size_t)k;
    }
    *n = count;
    if (count == 0) return marked_array(L, idx);
    return count == max;
}

static cJSON *to_json(lua_State *L, int idx, int depth, const char **why)
{
    if (depth > JSON_MAX_DEPTH) {
        *why = "nesting too deep (or a cycle)";
        return NULL;
    }
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return cJSON_CreateNull();
    case LUA_TBOOLEAN:
        return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
        lua_Number x = lua_tonumber(L, idx);
        if (!isfinite(x)) {
            *why = "number is not finite";
            return NULL;
        }
        return cJSON_CreateNumber(x);
    }
    case LUA_TSTRING:
        return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == JSON_NULL) return cJSON_CreateNull();
        break;
    case LUA_TTABLE: {
        if (!lua_checkstack(L, 4)) {
            *why = "nesting too deep (or a cycle)";
            return NULL;
        }
        size_t n = 0;
        if (table_array_length(L, idx, &n)) {
            cJSON *arr = cJSON_CreateArray();
            for (size_t i = 1; arr && i <= n; i++) {
                lua_rawgeti(L, idx, (lua_Integer)i);
                cJSON *item = to_json(L, -1, depth + 1, why);
                lua_pop(L, 1);
                if (item == NULL || !cJSON_AddItemToArray(arr, item)) {
                    cJSON_Delete(item);
                    cJSON_Delete(arr);
                    return NULL;
                }
            }
            if (arr == NULL) *why = "out of memory";
            return arr;
        }
        cJSON *obj = cJSON_CreateObject();
        lua_pushnil(L);
        while (obj && lua_next(L, idx) != 0) {
            if (lua_type(L, -2) != LUA_TSTRING) {
                lua_pop(L, 2);
                cJSON_Delete(obj);
                *why = "object keys must be strings";
                return NULL;
            }
            cJSON *item = to_json(L, -1, depth + 1, why);
            if (item == NULL || !cJSON_AddItemToObject(obj, lua_tostring(L, -2), item)) {
                lua_pop(L, 2);
                cJSON_Delete(item);
                cJSON_Delete(obj);
                return NULL;
            }
            lua_pop(L, 1);
        }
        if (obj == NULL) *why = "out of memory";
        return obj;
    }
    default:
        break;
    }
    *why = lua_typename(L, lua_type(L, idx));
    return NULL;
}

cJSON *lpht_to_json(lua_State *L, int idx, const char **why)
{
    return to_json(L, idx, 0, why);
}

/* Sort object members by key so encoded output is stable. */
static void sort_members(cJSON *node)
{
    for (cJSON *c = node->child; c; c = c->next)
        sort_members(c);
    if (!cJSON_IsObject(node) || node->child == NULL) return;
    /* Insertion sort on the linked list (objects here are small). */
    cJSON *sorted = NULL;
    cJSON *c = node->child;
    while (c) {
        cJSON *next = c->next;
        c->prev = c->next = NULL;
        if (sorted == NULL || strcmp(c->string, sorted->string) < 0) {
            c->next = sorted;
            sorted = c;
        } else {
            cJSON *at = sorted;
            while (at->next && strcmp(at->next->string, c->string) <= 0)
                at = at->next;
            c->next = at->next;
            at->next = c;
        }
        c = next;
    }
    /* cJSON keeps child->prev pointing at the last element. */
    cJSON *last = sorted;
    for (cJSON *p = sorted; p; p = p->next) {
        if (p->next) p->next->prev = p;
        last = p;
    }
    sorted->prev = last;
    node->child = sorted;
}

static int l_json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    int pretty = lua_toboolean(L, 2);
    const char *why = NULL;
    cJSON *doc = to_json(L, 1, 0, &why);
    if (doc == NULL) return lpht_failf(L, PHT_EINVAL, "json_encode: cannot encode %s", why);
    sort_members(doc);
    char *text = pretty ? cJSON_Print(doc) : cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (text == NULL) return lpht_failf(L, PHT_ENOMEM, "json_encode: out of memory");
    lua_pushstring(L, text);
    cJSON_free(text);
    return 1;
}

static void push_value(lua_State *L, const cJSON *node, int as_sentinel, int array_nulls)
{
    luaL_checkstack(L, 4, "JSON nested too deeply");
    if (cJSON_IsNull(node)) {
        if (as_sentinel)
            lua_pushlightuserdata(L, JSON_NULL);
        else
            lua_pushnil(L);
    } else if (cJSON_IsBool(node)) {
        lua_pushboolean(L, cJSON_IsTrue(node));
    } else if (cJSON_IsNumber(node)) {
        double d = node->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsString(node)) {
        lua_pushstring(L, node->valuestring);
    } else if (cJSON_IsArray(node)) {
        lua_newtable(L);
        int i = 1;
        for (const cJSON *c = node->child; c; c = c->next, i++) {
            if (cJSON_IsNull(c) && !array_nulls) continue; /* a hole */
            push_value(L, c, array_nulls, array_nulls);
            lua_rawseti(L, -2, i);
        }
    } else {
        lua_newtable(L);
        for (const cJSON *c = node->child; c; c = c->next) {
            if (cJSON_IsNull(c)) continue; /* no entry */
            push_value(L, c, 0, array_nulls);
            lua_setfield(L, -2, c->string);
        }
    }
}

void lpht_push_json(lua_State *L, const cJSON *node, int array_nulls)
{
    push_value(L, node, 0, array_nulls);
}

static int l_json_decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (doc == NULL) {
        size_t at = end ? (size_t)(end - text) : 0;
        return lpht_failf(L, PHT_EFORMAT, "json_decode: malformed JSON near byte %zu", at);
    }
    lpht_push_json(L, doc, 1);
    cJSON_Delete(doc);
    return 1;
}

void lpht_open_json(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"json_encode", l_json_encode}, {"json_decode", l_json_decode}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
    lua_pushlightuserdata(L, JSON_NULL);
    lua_setfield(L, -2, "null");
}
