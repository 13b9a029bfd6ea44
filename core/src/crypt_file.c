/* Encrypting and decrypting whole streams and files in 64 KiB chunks. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "fs_private.h"
#include "pht/crypt.h"
#include "pht/hash.h"
#include "pht/interrupt.h"

static int crypt_fd(pht_cipher *c, int in_fd, int out_fd, pht_error *err)
{
    /* One buffer: PHT_CHUNK_SIZE in, PHT_CHUNK_SIZE + overhead out. Both may hold plaintext. */
    size_t cap = 2 * PHT_CHUNK_SIZE + PHT_CIPHER_OVERHEAD;
    unsigned char *buf = malloc(cap);
    if (buf == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    unsigned char *in = buf, *out = buf + PHT_CHUNK_SIZE;
    size_t outlen = 0;
    int rc = 0;
    for (;;) {
        if ((rc = pht_interrupt_check(err))) break;
        ssize_t n = read(in_fd, in, PHT_CHUNK_SIZE);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = pht_error_set(err, PHT_EIO, "read failed: %s", strerror(errno));
            break;
        }
        if (n == 0) {
            rc = pht_cipher_final(c, out, &outlen, err);
            if (rc == 0) rc = fs_write_all(out_fd, out, outlen, "output", err);
            break;
        }
        rc = pht_cipher_update(c, in, (size_t)n, out, &outlen, err);
        if (rc == 0) rc = fs_write_all(out_fd, out, outlen, "output", err);
        if (rc != 0) break;
    }
    OPENSSL_cleanse(buf, cap);
    free(buf);
    return rc;
}

/* Run a fresh encryptor or decryptor for key over in_fd into out_fd. */
static int crypt_key_fd(const pht_symkey *key, int encrypt, int in_fd, int out_fd, pht_error *err)
{
    pht_cipher *c = encrypt ? pht_cipher_new_encrypt(key, err) : pht_cipher_new_decrypt(key, err);
    if (c == NULL) return err ? err->code : PHT_ECRYPTO;
    int rc = crypt_fd(c, in_fd, out_fd, err);
    pht_cipher_free(c);
    return rc;
}

int pht_encrypt_fd(const pht_symkey *key, int in_fd, int out_fd, pht_error *err)
{
    return crypt_key_fd(key, 1, in_fd, out_fd, err);
}

int pht_decrypt_fd(const pht_symkey *key, int in_fd, int out_fd, pht_error *err)
{
    return crypt_key_fd(key, 0, in_fd, out_fd, err);
}

static int crypt_file(const pht_symkey *key, const char *src, const char *dst, int encrypt,
                      pht_error *err)
{
    const char *what = encrypt ? "encrypt" : "decrypt";
    if (src == NULL || dst == NULL)
        return pht_error_set(err, PHT_EINVAL, "%s: source or destination path missing", what);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return pht_error_set(err, PHT_EIO, "%s %s: cannot open: %s", what, src, strerror(errno));
    struct stat sst, dstst;
    if (fstat(in, &sst) == 0 && stat(dst, &dstst) == 0 && sst.st_dev == dstst.st_dev &&
        sst.st_ino == dstst.st_ino) {
        close(in);
        return pht_error_set(err, PHT_EINVAL, "%s %s: source and destination are the same file",
                             what, src);
    }
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        int e = errno;
        close(in);
        return pht_error_set(err, PHT_EIO, "%s %s: cannot create: %s", what, dst, strerror(e));
    }
    int rc = crypt_key_fd(key, encrypt, in, out, err);
    close(in);
    if (close(out) != 0 && rc == 0)
        rc = pht_error_set(err, PHT_EIO, "%s %s: close failed: %s", what, dst, strerror(errno));
    if (rc != 0) {
        unlink(dst);
        pht_error_prefix(err, "%s", src);
    }
    return rc;
}

int pht_encrypt_file(const pht_symkey *key, const char *src, const char *dst, pht_error *err)
{
    return crypt_file(key, src, dst, 1, err);
}

int pht_decrypt_file(const pht_symkey *key, const char *src, const char *dst, pht_error *err)
{
    return crypt_file(key, src, dst, 0, err);
}
