/* pht Lua binding: image (to be filled in by its area). */
#include "lpht.h"

void lpht_open_image(lua_State *L)
{
    (void)L;
}
