/*
 * Embeds Lua the way a host (the pht command, OpenResty) does: several
 * independent lua_States each load the module and use it, then close.
 * Run under valgrind as memcheck_test_lua_module.
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "pht.h"

static int failures = 0;

static void run(lua_State *L, const char *chunk)
{
    if (luaL_dostring(L, chunk) != 0) {
        fprintf(stderr, "chunk failed: %s\n", lua_tostring(L, -1));
        failures++;
        lua_pop(L, 1);
    }
}

static const char *const CHUNK =
    "local pht = require 'pht'\n"
    "assert(type(pht.version) == 'string', 'version')\n"
    "if pht.sha512 then\n"
    "  local d = pht.sha512('abc')\n"
    "  assert(#d == 64)\n"
    "  assert(pht.hex(d):sub(1, 16) == 'ddaf35a193617aba', pht.hex(d))\n"
    "end\n"
    "if pht.hasher then\n"
    "  local h = pht.hasher()\n"
    "  h:close(); h:close()\n"
    "  local ok, err = pcall(h.update, h, 'x')\n"
    "  assert(not ok and err:find('closed pht.hash', 1, true), err)\n"
    "end\n"
    "collectgarbage()\n";

int main(void)
{
    lua_State *states[3];
    for (int i = 0; i < 3; i++) {
        states[i] = luaL_newstate();
        luaL_openlibs(states[i]);
        luaL_requiref(states[i], "pht", luaopen_pht, 0);
        lua_pop(states[i], 1);
    }
    for (int i = 0; i < 3; i++) run(states[i], CHUNK);
    for (int i = 0; i < 3; i++) lua_close(states[i]);
    if (failures) fprintf(stderr, "%d chunk(s) failed\n", failures);
    return failures ? 1 : 0;
}
