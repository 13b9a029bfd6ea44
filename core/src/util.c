/* Hex and secret-buffer helpers shared by the core; a clock and a terminal test. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "pht/util.h"

void pht_hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int pht_hex_decode(const char *hex, size_t len, unsigned char *out, const char *what,
                   pht_error *err)
{
    if (len % 2 != 0)
        return pht_error_set(err, PHT_EFORMAT, "%s: not hex (odd length %zu)", what, len);
    for (size_t i = 0; i < len; i += 2) {
        int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
        if (hi < 0 || lo < 0)
            return pht_error_set(err, PHT_EFORMAT, "%s: not hex (bad character at offset %zu)",
                                 what, hi < 0 ? i : i + 1);
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int pht_hex_decode_alloc(const char *hex, size_t len, unsigned char **out, size_t *outlen,
                         const char *what, pht_error *err)
{
    *out = NULL;
    unsigned char *buf = malloc(len / 2 + 1);
    if (buf == NULL) return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", what);
    int rc = pht_hex_decode(hex, len, buf, what, err);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    if (outlen) *outlen = len / 2;
    return 0;
}

void pht_secret_free(void *p, size_t n)
{
    if (p == NULL) return;
    OPENSSL_cleanse(p, n);
    free(p);
}

double pht_monotonic_seconds(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int pht_is_terminal(int fd)
{
    return isatty(fd) == 1;
}
