/*
 * pht Lua binding: the Docker Engine client's container calls (pht.docker),
 * the pieces of a station's run of a train. Create objects travel as JSON
 * text; ids as strings.
 */
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

/* pht.open_docker([host]) */
static int l_open_docker(lua_State *L)
{
    const char *host = luaL_optstring(L, 1, NULL);
    lpht_box *b = lpht_newbox(L, DOCKER_T, sizeof *b);
    pht_docker *d = NULL;
    pht_error err;
    if (pht_docker_open(&d, host, &err) != 0) return lpht_fail(L, &err);
    b->p = d;
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

static const luaL_Reg docker_methods[] = {
    {"create", m_create}, {"start", m_start},   {"wait", m_wait},
    {"commit", m_commit}, {"remove", m_remove}, {NULL, NULL},
};

void lpht_open_docker(lua_State *L)
{
    lpht_newclass(L, DOCKER_T, docker_methods, docker_closer);
    lua_pushcfunction(L, l_open_docker);
    lua_setfield(L, -2, "open_docker");
}
