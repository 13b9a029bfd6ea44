/*
 * pht Lua binding: the Docker Engine client's container calls (pht.docker),
 * the pieces of a station's run of a train. Create objects travel as JSON
 * text; ids as strings.
 */
#include <stdlib.h>

#include "lpht.h"

#define DOCKER_T "pht.docker"

static void docker_closer(void *p)
{
    pht_docker_free(p);
}

static pht_docker *check_docker(lua_State *L)
{
    return lpht_check(L, 1, DOCKER_T);
}

/* pht.open_docker([host[, timeout_spec]]) */
static int l_open_docker(lua_State *L)
{
    const char *host = luaL_optstring(L, 1, NULL);
    const char *spec = luaL_optstring(L, 2, NULL);
    lpht_box *b = lpht_newbox(L, DOCKER_T, sizeof *b);
    pht_docker *d = NULL;
    pht_error err;
    if (pht_docker_open(&d, host, &err) != 0) return lpht_fail(L, &err);
    b->p = d;
    if (spec != NULL) {
        pht_docker_timeouts t;
        pht_docker_get_timeouts(d, &t);
        if (pht_docker_timeouts_parse(&t, spec, &err) != 0) return lpht_fail(L, &err);
        pht_docker_set_timeouts(d, &t);
    }
    return 1;
}

static int m_create(lua_State *L)
{
    pht_docker *d = check_docker(L);
    const char *name = luaL_checkstring(L, 2), *cfg = luaL_checkstring(L, 3);
    char id[PHT_DOCKER_ID_MAX];
    pht_error err;
    if (pht_docker_container_create(d, name, cfg, id, &err) != 0) return lpht_fail(L, &err);
    lua_pushstring(L, id);
    return 1;
}

static int m_start(lua_State *L)
{
    pht_docker *d = check_docker(L);
    pht_error err;
    if (pht_docker_container_start(d, luaL_checkstring(L, 2), &err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int m_wait(lua_State *L)
{
    pht_docker *d = check_docker(L);
    int status = -1;
    pht_error err;
    if (pht_docker_container_wait(d, luaL_checkstring(L, 2), &status, &err) != 0)
        return lpht_fail(L, &err);
    lua_pushinteger(L, status);
    return 1;
}

static int m_commit(lua_State *L)
{
    pht_docker *d = check_docker(L);
    const char *id = luaL_checkstring(L, 2);
    const char *repo = luaL_optstring(L, 3, NULL), *tag = luaL_optstring(L, 4, NULL);
    char image[PHT_DOCKER_ID_MAX];
    pht_error err;
    if (pht_docker_container_commit(d, id, repo, tag, image, &err) != 0) return lpht_fail(L, &err);
    lua_pushstring(L, image);
    return 1;
}

static int m_remove(lua_State *L)
{
    pht_docker *d = check_docker(L);
    pht_error err;
    if (pht_docker_container_remove(d, luaL_checkstring(L, 2), &err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* docker:logs(id, out_file, err_file, follow): either file may be nil (dropped). */
static int m_logs(lua_State *L)
{
    pht_docker *d = check_docker(L);
    const char *id = luaL_checkstring(L, 2);
    FILE *out = lua_isnoneornil(L, 3) ? NULL : lpht_checkfile(L, 3);
    FILE *errs = lua_isnoneornil(L, 4) ? NULL : lpht_checkfile(L, 4);
    int follow = lua_toboolean(L, 5);
    /* what Lua buffered goes first; the core writes to the descriptors */
    if (out) fflush(out);
    if (errs) fflush(errs);
    pht_error err;
    if (pht_docker_container_logs_fd(d, id, follow, out ? fileno(out) : -1, errs ? fileno(errs) : -1,
                                     &err) != 0)
        return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int m_inspect_image(lua_State *L)
{
    pht_docker *d = check_docker(L);
    char *json = NULL;
    pht_error err;
    if (pht_docker_image_inspect_json(d, luaL_checkstring(L, 2), &json, &err) != 0)
        return lpht_fail(L, &err);
    lua_pushstring(L, json);
    free(json);
    return 1;
}

/* docker:remove_image(name, force) */
static int m_remove_image(lua_State *L)
{
    pht_docker *d = check_docker(L);
    int flags = lua_toboolean(L, 3) ? PHT_DOCKER_FORCE : 0;
    pht_error err;
    if (pht_docker_image_remove(d, luaL_checkstring(L, 2), flags, &err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* Append {id=, name=, state=, value=} to the list at the top of the stack. */
static int push_container(void *ud, const pht_docker_container *c, const char *value)
{
    lua_State *L = ud;
    lua_createtable(L, 0, 4);
    lpht_setfield_str(L, "id", c->id);
    lpht_setfield_str(L, "name", c->name);
    lpht_setfield_str(L, "state", c->state);
    if (value) lpht_setfield_str(L, "value", value);
    lua_rawseti(L, -2, (int)lpht_rawlen(L, -2) + 1);
    return 0;
}

/* docker:containers_labelled(key) -> { {id=, name=, state=, value=} ... } */
static int m_containers_labelled(lua_State *L)
{
    pht_docker *d = check_docker(L);
    const char *key = luaL_checkstring(L, 2);
    pht_error err;
    lua_newtable(L);
    if (pht_docker_containers_labelled(d, key, push_container, L, &err) != 0) return lpht_fail(L, &err);
    return 1;
}

static int push_image(void *ud, const char *id, const char *value)
{
    lua_State *L = ud;
    lua_createtable(L, 0, 2);
    lpht_setfield_str(L, "id", id);
    if (value) lpht_setfield_str(L, "value", value);
    lua_rawseti(L, -2, (int)lpht_rawlen(L, -2) + 1);
    return 0;
}

/* docker:images_labelled(key) -> { {id=, value=} ... } */
static int m_images_labelled(lua_State *L)
{
    pht_docker *d = check_docker(L);
    const char *key = luaL_checkstring(L, 2);
    pht_error err;
    lua_newtable(L);
    if (pht_docker_images_labelled(d, key, push_image, L, &err) != 0) return lpht_fail(L, &err);
    return 1;
}

static int m_ping(lua_State *L)
{
    pht_docker *d = check_docker(L);
    pht_error err;
    if (pht_docker_ping(d, &err) != 0) return lpht_fail(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg docker_methods[] = {
    {"ping", m_ping},
    {"create", m_create},
    {"start", m_start},
    {"wait", m_wait},
    {"logs", m_logs},
    {"commit", m_commit},
    {"remove", m_remove},
    {"inspect_image", m_inspect_image},
    {"remove_image", m_remove_image},
    {"containers_labelled", m_containers_labelled},
    {"images_labelled", m_images_labelled},
    {NULL, NULL},
};

void lpht_open_docker(lua_State *L)
{
    lpht_newclass(L, DOCKER_T, docker_methods, docker_closer);
    lua_pushcfunction(L, l_open_docker);
    lua_setfield(L, -2, "open_docker");
}
