/*
 * AES-256-CBC decryption (doc/protocol.md §6) of bytes the fuzzer writes:
 * the first byte picks the chunk size of the stream API, the next 32 are
 * the key, the rest is IV || ciphertext. The stream API, fed in those
 * chunks, and the file API must agree: both fail, or both give the same
 * plaintext, and a failed file decrypt leaves no output file.
 */
#include <fcntl.h>

#include "fuzz_common.h"

static int write_file(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return -1;
    int rc = (n == 0 || write(fd, p, n) == (ssize_t)n) ? 0 : -1;
    close(fd);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 + PHT_SYMKEY_LEN) return 0;
    size_t chunk = (size_t)data[0] % 40 + 1;
    pht_error err;
    pht_symkey *key = pht_symkey_from_bytes(data + 1, PHT_SYMKEY_LEN, &err);
    if (key == NULL) abort();
    const uint8_t *ct = data + 1 + PHT_SYMKEY_LEN;
    size_t n = size - 1 - PHT_SYMKEY_LEN;

    unsigned char *plain = malloc(n + PHT_CIPHER_OVERHEAD + 1), out[64 + PHT_CIPHER_OVERHEAD];
    size_t plen = 0, got;
    pht_cipher *c = pht_cipher_new_decrypt(key, &err);
    int stream_rc = c ? 0 : -1;
    for (size_t i = 0; stream_rc == 0 && i < n; i += chunk) {
        size_t k = n - i < chunk ? n - i : chunk;
        stream_rc = pht_cipher_update(c, ct + i, k, out, &got, &err);
        if (stream_rc == 0) {
            if (got > k + PHT_CIPHER_OVERHEAD || plen + got > n) abort();
            memcpy(plain + plen, out, got);
            plen += got;
        }
    }
    if (stream_rc == 0) {
        stream_rc = pht_cipher_final(c, out, &got, &err);
        if (stream_rc == 0) {
            if (plen + got > n) abort();
            memcpy(plain + plen, out, got);
            plen += got;
        }
    }
    pht_cipher_free(c);

    char src[320], dst[320];
    snprintf(src, sizeof src, "%s/ct", fz_tmp());
    snprintf(dst, sizeof dst, "%s/pt", fz_tmp());
    if (write_file(src, ct, n) != 0) abort();
    int file_rc = pht_decrypt_file(key, src, dst, &err);
    if ((stream_rc == 0) != (file_rc == 0)) {
        fprintf(stderr, "stream %d, file %d (%s)\n", stream_rc, file_rc, err.message);
        abort();
    }
    if (file_rc == 0) {
        FILE *f = fopen(dst, "rb");
        if (f == NULL) abort();
        unsigned char *back = malloc(plen + 1);
        size_t r = fread(back, 1, plen + 1, f);
        fclose(f);
        if (r != plen || memcmp(back, plain, plen) != 0) {
            fprintf(stderr, "the file API decrypted other bytes\n");
            abort();
        }
        free(back);
    } else if (access(dst, F_OK) == 0) {
        fprintf(stderr, "a failed decrypt left %s\n", dst);
        abort();
    }
    unlink(src);
    unlink(dst);
    free(plain);
    pht_symkey_free(key);
    return 0;
}
