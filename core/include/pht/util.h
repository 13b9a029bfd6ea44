/* Small shared helpers of libpht: hex, secret buffers, a clock and a terminal test for progress. */
#ifndef PHT_UTIL_H
#define PHT_UTIL_H

#include <stddef.h>

#include "pht/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Lowercase hex of n bytes into out, which must hold 2*n+1 chars (NUL added).
 */
PHT_API void pht_hex_encode(const unsigned char *in, size_t n, char *out);

/*
 * Decode hex text of length len (upper or lower case) into out (len/2 bytes).
 * Fails with PHT_EFORMAT on an odd length or a non-hex character, naming
 * `what` (e.g. "session_id") in the message. Returns 0 or the code.
 */
PHT_API int pht_hex_decode(const char *hex, size_t len, unsigned char *out, const char *what,
                           pht_error *err);

/* Allocate a decoded copy of hex; *out is freed by the caller with free(). */
PHT_API int pht_hex_decode_alloc(const char *hex, size_t len, unsigned char **out,
                                 size_t *outlen, const char *what, pht_error *err);

/* Wipe and free a secret buffer of n bytes; NULL is fine. */
PHT_API void pht_secret_free(void *p, size_t n);

/*
 * Seconds on the monotonic clock (CLOCK_MONOTONIC), with sub-second
 * resolution: for rates and intervals, never for dates. Cheap enough to call
 * per 64 KiB chunk.
 */
PHT_API double pht_monotonic_seconds(void);

/* 1 when the file descriptor fd is a terminal (isatty), else 0. */
PHT_API int pht_is_terminal(int fd);

#ifdef __cplusplus
}
#endif
#endif
