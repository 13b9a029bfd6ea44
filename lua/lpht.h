/*
 * Shared pieces of the `pht` Lua binding, private to the lua/ C files
 * (hosts include the public pht.h). The binding only translates between Lua
 * values and core calls; the protocol lives in core/ and scripts/.
 *
 * Error style for Lua callers (see doc/lua-api.md):
 *   - an operation that can fail on its input returns nil, message, code
 *     (code is the core's short name: "EVERIFY", "EFORMAT", ...);
 *   - a well-formed signature that does not verify returns false;
 *   - wrong argument types raise (luaL_argerror).
 */
#ifndef LPHT_H
#define LPHT_H

#include <stddef.h>

#include "compat.h"
#include "pht/pht.h"

/*
 * Every handle is a userdata box whose first member is the core object. The
 * box is created empty (p == NULL) before the resource is acquired, so an
 * error raised in between leaks nothing; p == NULL afterwards means closed.
 */
typedef struct lpht_box {
    void *p;
} lpht_box;

/* Type names other binding files check (lcrypt.c, lhash.c own them). */
#define LPHT_SYMKEY_T "pht.symkey"
#define LPHT_HASH_T "pht.hash"
typedef void (*lpht_closer)(void *p);

/* Push a new empty box of `size` bytes (>= sizeof(lpht_box)) with tname's metatable. */
lpht_box *lpht_newbox(lua_State *L, const char *tname, size_t size);

/* The box at idx, closed or not; raises on a wrong type. */
lpht_box *lpht_checkbox(lua_State *L, int idx, const char *tname);

/* The open object at idx; raises "attempt to use a closed <tname>" if closed. */
void *lpht_check(lua_State *L, int idx, const char *tname);

/*
 * Create metatable tname with __index = methods, __gc, __close (5.4) and a
 * :close() method, all running `closer` once (safe to call twice), and a
 * __tostring of "<tname>: 0x...". Leaves nothing on the stack.
 */
void lpht_newclass(lua_State *L, const char *tname, const luaL_Reg *methods, lpht_closer closer);

/* t[key] = value for the table at -1; nothing when value is NULL (the field stays nil). */
void lpht_setfield_str(lua_State *L, const char *key, const char *value);

/* Push nil, err->message, code name; returns 3 for `return lpht_fail(L, &err)`. */
int lpht_fail(lua_State *L, const pht_error *err);

/* Same with a message of the binding's own. */
int lpht_failf(lua_State *L, int code, const char *fmt, ...);

/* ---- progress (lpht.c) ---- */

/* A Lua function a core call reports its progress to (pht_progress_fn). */
typedef struct lpht_progress {
    lua_State *L;
    int fn;     /* its stack index */
    int broken; /* it raised: its later calls are skipped */
} lpht_progress;

/*
 * Ready p for a core call that reports to the Lua function at idx (nil or
 * none: no function); returns the pht_progress_fn to hand to the core with
 * p as its ud, or NULL. Raises an argument error for another type. The
 * function stays at idx during the call and gets each byte count; an error
 * it raises is dropped (Lua errors never cross the core) and it is not
 * called again.
 */
pht_progress_fn lpht_progress_arg(lua_State *L, int idx, lpht_progress *p);

/* The handle at idx keeps the function at fn_idx (nil: none) for its later calls. */
void lpht_progress_keep(lua_State *L, int idx, int fn_idx);

/* Push the function the handle at idx keeps, or nil; returns its stack index. */
int lpht_progress_kept(lua_State *L, int idx);

struct cJSON;

/* ---- JSON (ljson.c) ---- */

/*
 * Push a cJSON value as a Lua value: objects and arrays as tables, whole
 * numbers below 2^53 as integers, null as nil (no entry in an object). A null
 * inside an array becomes pht.null when array_nulls is set, a hole otherwise.
 * Raises only when out of memory or Lua stack.
 */
void lpht_push_json(lua_State *L, const struct cJSON *node, int array_nulls);

/*
 * The Lua value at idx as a new cJSON tree (free with cJSON_Delete): tables
 * with keys 1..n as arrays, other tables as objects with string keys, nil and
 * pht.null as null. NULL with *why set (a static text) for a value JSON
 * cannot hold, a table nested too deeply, or no memory; never raises.
 */
struct cJSON *lpht_to_json(lua_State *L, int idx, const char **why);

/*
 * Per-area registration, each adds its functions to the module table at -1:
 * one binding file per core header (lhash.c: pht/hash.h, lfs.c: pht/fs.h,
 * lutil.c: pht/util.h, limage_ref.c: pht/image_ref.h, ...), ljson.c for JSON.
 */
void lpht_open_hash(lua_State *L);
void lpht_open_key(lua_State *L);
void lpht_open_crypt(lua_State *L);
void lpht_open_config(lua_State *L);
void lpht_open_image(lua_State *L);
void lpht_open_image_ref(lua_State *L);
void lpht_open_util(lua_State *L);
void lpht_open_interrupt(lua_State *L);
void lpht_open_fs(lua_State *L);
void lpht_open_json(lua_State *L);
void lpht_open_registry(lua_State *L);
void lpht_open_docker(lua_State *L);

#endif
