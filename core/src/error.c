/* The one error convention of libpht: a code plus a message, per call. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "pht/error.h"

void pht_error_clear(pht_error *err)
{
    if (err == NULL) return;
    err->code = PHT_OK;
    err->message[0] = '\0';
}

static void vset(pht_error *err, int code, const char *fmt, va_list ap)
{
    err->code = code;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
}

int pht_error_set(pht_error *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vset(err, code, fmt, ap);
        va_end(ap);
    }
    return code;
}

int pht_error_set_ssl(pht_error *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vset(err, code, fmt, ap);
        va_end(ap);
    }
    /* Always drain, so a stale reason never shows up in a later call. */
    const char *sep = ": ";
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        if (err == NULL) continue;
        size_t used = strlen(err->message);
        if (used + 8 >= sizeof err->message) continue;
        const char *lib = ERR_lib_error_string(e);
        const char *reason = ERR_reason_error_string(e);
        snprintf(err->message + used, sizeof err->message - used, "%s%s:%s", sep,
                 lib ? lib : "openssl", reason ? reason : "unknown reason");
        sep = "; ";
    }
    return code;
}

int pht_error_prefix(pht_error *err, const char *fmt, ...)
{
    if (err == NULL) return PHT_EINVAL;
    char prefix[PHT_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Shift the old message right and put the prefix in front, truncating. */
    size_t plen = strlen(prefix);
    if (plen + 2 >= sizeof err->message) plen = sizeof err->message - 3;
    size_t mlen = strnlen(err->message, sizeof err->message - 1);
    if (plen + 2 + mlen >= sizeof err->message) mlen = sizeof err->message - plen - 3;
    memmove(err->message + plen + 2, err->message, mlen);
    err->message[plen + 2 + mlen] = '\0';
    memcpy(err->message, prefix, plen);
    err->message[plen] = ':';
    err->message[plen + 1] = ' ';
    return err->code;
}

const char *pht_code_name(int code)
{
    switch (code) {
    case PHT_OK: return "OK";
    case PHT_EINVAL: return "EINVAL";
    case PHT_ENOMEM: return "ENOMEM";
    case PHT_EIO: return "EIO";
    case PHT_ECRYPTO: return "ECRYPTO";
    case PHT_EKEY: return "EKEY";
    case PHT_EVERIFY: return "EVERIFY";
    case PHT_EFORMAT: return "EFORMAT";
    case PHT_ECONFIG: return "ECONFIG";
    case PHT_EUNSAFE: return "EUNSAFE";
    case PHT_ELIMIT: return "ELIMIT";
    case PHT_ENOTFOUND: return "ENOTFOUND";
    case PHT_EHTTP: return "EHTTP";
    case PHT_ESTATE: return "ESTATE";
    case PHT_EINTR: return "EINTR";
    default: return "EUNKNOWN";
    }
}
