/* pht Lua binding: crypt (to be filled in by its area). */
#include "lpht.h"

void lpht_open_crypt(lua_State *L)
{
    (void)L;
}
