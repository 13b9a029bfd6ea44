/* pht Lua binding: config (to be filled in by its area). */
#include "lpht.h"

void lpht_open_config(lua_State *L)
{
    (void)L;
}
