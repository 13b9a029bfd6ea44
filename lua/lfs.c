/*
 * pht Lua binding: the filesystem helpers of pht/fs.h (private temporary
 * directories, mkdir -p, tree removal, exclusive writes, listings), for
 * workflow scripts that must not shell out.
 */
#include "lpht.h"

static int l_mkdtemp(lua_State *L)
{
    const char *parent = luaL_optstring(L, 1, NULL);
    char path[4096];
    pht_error err;
    if (pht_mkdtemp(parent, path, sizeof path, &err) != 0) return lpht_fail(L, &err);
    lua_pushstring(L, path);
    return 1;
}

static int l_mkdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer mode = luaL_optinteger(L, 2, 0755);
    int parents = lua_toboolean(L, 3);
    pht_error err;
    if (pht_mkdir(path, (mode_t)mode, parents, &err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_remove_tree(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    pht_error err;
    if (pht_remove_tree(path, &err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_write_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    lua_Integer mode = luaL_optinteger(L, 3, 0600);
    pht_error err;
    if (pht_write_file(path, data, len, (mode_t)mode, &err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_list_dir(lua_State *L)
{
    static const char *const types[] = {"?", "file", "dir", "symlink", "other"};
    const char *path = luaL_checkstring(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, 0);
    pht_dirent *list;
    size_t n;
    pht_error err;
    if (pht_dir_list(path, max > 0 ? (size_t)max : 0, &list, &n, &err) != 0)
        return lpht_fail(L, &err);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 4);
        lua_pushstring(L, list[i].name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, types[list[i].type]);
        lua_setfield(L, -2, "type");
        lua_pushinteger(L, (lua_Integer)list[i].size);
        lua_setfield(L, -2, "size");
        lua_pushinteger(L, (lua_Integer)list[i].mode);
        lua_setfield(L, -2, "mode");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    pht_dir_list_free(list, n);
    return 1;
}

void lpht_open_fs(lua_State *L)
{
    static const luaL_Reg fns[] = {{"mkdtemp", l_mkdtemp},         {"mkdir", l_mkdir},
                                   {"remove_tree", l_remove_tree}, {"write_file", l_write_file},
                                   {"list_dir", l_list_dir},       {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
