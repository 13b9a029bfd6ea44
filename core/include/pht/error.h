/*
 * libpht error convention.
 *
 * Every fallible function returns int (0 on success, a negative PHT_E* code on
 * failure) or a pointer (NULL on failure) and fills a caller-owned pht_error
 * with the same code and a message naming what failed and why. The error
 * argument may be NULL when the caller does not want the message.
 */
#ifndef PHT_ERROR_H
#define PHT_ERROR_H

#include <stddef.h>

#include "pht/export.h"

#ifdef __cplusplus
extern "C" {
#endif

enum pht_code {
    PHT_OK = 0,
    PHT_EINVAL = -1,   /* invalid argument (programming error) */
    PHT_ENOMEM = -2,   /* out of memory */
    PHT_EIO = -3,      /* file or stream I/O failed */
    PHT_ECRYPTO = -4,  /* an OpenSSL operation failed */
    PHT_EKEY = -5,     /* a key could not be read or is unsuitable */
    PHT_EVERIFY = -6,  /* a hash or signature does not match */
    PHT_EFORMAT = -7,  /* malformed input: hex, PEM, JSON, tar, manifest */
    PHT_ECONFIG = -8,  /* train_config.json is invalid */
    PHT_EUNSAFE = -9,  /* hostile input: path traversal, escaping link */
    PHT_ELIMIT = -10,  /* a size, count or length cap was exceeded */
    PHT_ENOTFOUND = -11, /* a named file, image, station or tag does not exist */
    PHT_EHTTP = -12,   /* an HTTP peer failed or answered an error */
    PHT_ESTATE = -13,  /* an operation was called in the wrong state */
    PHT_EINTR = -14    /* stopped by a signal (pht/interrupt.h) */
};

#define PHT_ERROR_MSG_MAX 1024

typedef struct pht_error {
    int code;
    char message[PHT_ERROR_MSG_MAX];
} pht_error;

/* Reset err to PHT_OK with an empty message. err may be NULL. */
PHT_API void pht_error_clear(pht_error *err);

/*
 * Record a failure: sets err->code and formats the message. Returns code so
 * callers can write `return pht_error_set(err, PHT_EIO, "...")`. err may be NULL.
 */
PHT_API int pht_error_set(pht_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/*
 * Like pht_error_set, then appends ": " and the drained OpenSSL error queue
 * ("lib:reason; lib:reason"). The queue is always left empty.
 */
PHT_API int pht_error_set_ssl(pht_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/*
 * Prefix an existing message with "context: " (used when an error travels up
 * through a higher-level operation). Returns err->code.
 */
PHT_API int pht_error_prefix(pht_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Short stable name of a code, e.g. "EVERIFY"; "EUNKNOWN" for others. */
PHT_API const char *pht_code_name(int code);

#ifdef __cplusplus
}
#endif
#endif
