/* pht Lua binding: key (to be filled in by its area). */
#include "lpht.h"

void lpht_open_key(lua_State *L)
{
    (void)L;
}
