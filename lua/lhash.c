/* pht Lua binding: hash (to be filled in by its area). */
#include "lpht.h"

void lpht_open_hash(lua_State *L)
{
    (void)L;
}
