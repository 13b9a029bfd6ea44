/* Shared pieces of the image binding (limage.c, limage_writer.c). */
#ifndef LIMAGE_H
#define LIMAGE_H

#include "lpht.h"

/* The open pht.image at idx (raises otherwise). */
pht_image *limage_check(lua_State *L, int idx);
/* The pht.image at idx or NULL when idx holds something else. */
pht_image *limage_test(lua_State *L, int idx);
/* A string option of the table at t, or NULL; raises on a wrong type. */
const char *limage_opt_str(lua_State *L, int t, const char *k);

/* img:writer{...} and img:retag(dest, tags). */
int limage_writer(lua_State *L);
int limage_retag(lua_State *L);
/* w:set_config{...} (limage_config.c). */
int limage_set_config(lua_State *L);
void limage_open_writer(lua_State *L);

#endif
