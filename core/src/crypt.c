/*
 * Symmetric keys and the streaming AES-256-CBC cipher of doc/protocol.md §6:
 * output = IV || AES-256-CBC(PKCS#7(plaintext)), a fresh IV per stream.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "pht/crypt.h"

struct pht_symkey {
    unsigned char k[PHT_SYMKEY_LEN];
};

struct pht_cipher {
    EVP_CIPHER_CTX *ctx;
    int encrypt;
    int started; /* encryptor: IV written; decryptor: IV read and context keyed */
    int finished;
    size_t ivlen; /* decryptor: IV bytes gathered so far */
    unsigned char iv[PHT_IV_LEN];
    unsigned char key[PHT_SYMKEY_LEN]; /* decryptor: kept until the IV is complete */
};

/* Largest piece handed to one EVP call, whose lengths are int. */
#define EVP_PIECE (1 << 30)

int pht_random_bytes(unsigned char *out, size_t n, pht_error *err)
{
    while (n > 0) {
        int piece = n > (size_t)EVP_PIECE ? EVP_PIECE : (int)n;
        if (RAND_bytes(out, piece) != 1)
            return pht_error_set_ssl(err, PHT_ECRYPTO, "random: RAND_bytes failed");
        out += piece;
        n -= (size_t)piece;
    }
    return 0;
}

/* Secrets live in OpenSSL's secure heap when the application set one up. */
static pht_symkey *symkey_alloc(pht_error *err)
{
    pht_symkey *key = OPENSSL_secure_zalloc(sizeof *key);
    if (key == NULL) pht_error_set(err, PHT_ENOMEM, "symmetric key: out of memory");
    return key;
}

pht_symkey *pht_symkey_new(pht_error *err)
{
    pht_symkey *key = symkey_alloc(err);
    if (key == NULL) return NULL;
    if (pht_random_bytes(key->k, sizeof key->k, err) != 0) {
        pht_symkey_free(key);
        pht_error_prefix(err, "symmetric key");
        return NULL;
    }
    return key;
}

pht_symkey *pht_symkey_from_bytes(const unsigned char *raw, size_t len, pht_error *err)
{
    if (raw == NULL || len != PHT_SYMKEY_LEN) {
        pht_error_set(err, PHT_EFORMAT, "symmetric key: %zu bytes given, AES-256 needs %d", len,
                      PHT_SYMKEY_LEN);
        return NULL;
    }
    pht_symkey *key = symkey_alloc(err);
    if (key != NULL) memcpy(key->k, raw, PHT_SYMKEY_LEN);
    return key;
}

void pht_symkey_export(const pht_symkey *key, unsigned char *out)
{
    memcpy(out, key->k, PHT_SYMKEY_LEN);
}

void pht_symkey_free(pht_symkey *key)
{
    if (key == NULL) return;
    OPENSSL_secure_clear_free(key, sizeof *key);
}

static pht_cipher *cipher_alloc(const pht_symkey *key, int encrypt, pht_error *err)
{
    const char *what = encrypt ? "encrypt" : "decrypt";
    if (key == NULL) {
        pht_error_set(err, PHT_EINVAL, "%s: no key given", what);
        return NULL;
    }
    pht_cipher *c = OPENSSL_secure_zalloc(sizeof *c);
    if (c == NULL) {
        pht_error_set(err, PHT_ENOMEM, "%s: out of memory", what);
        return NULL;
    }
    c->encrypt = encrypt;
    c->ctx = EVP_CIPHER_CTX_new();
    if (c->ctx == NULL) {
        pht_error_set_ssl(err, PHT_ENOMEM, "%s: no cipher context", what);
        pht_cipher_free(c);
        return NULL;
    }
    return c;
}

pht_cipher *pht_cipher_new_encrypt(const pht_symkey *key, pht_error *err)
{
    pht_cipher *c = cipher_alloc(key, 1, err);
    if (c == NULL) return NULL;
    if (pht_random_bytes(c->iv, PHT_IV_LEN, err) != 0) {
        pht_error_prefix(err, "encrypt: IV");
        pht_cipher_free(c);
        return NULL;
    }
    if (EVP_EncryptInit_ex2(c->ctx, EVP_aes_256_cbc(), key->k, c->iv, NULL) != 1) {
        pht_error_set_ssl(err, PHT_ECRYPTO, "encrypt: AES-256-CBC init failed");
        pht_cipher_free(c);
        return NULL;
    }
    return c;
}

pht_cipher *pht_cipher_new_decrypt(const pht_symkey *key, pht_error *err)
{
    pht_cipher *c = cipher_alloc(key, 0, err);
    if (c == NULL) return NULL;
    memcpy(c->key, key->k, PHT_SYMKEY_LEN);
    return c;
}

/* EVP update over any length, in int-sized pieces. */
static int evp_update(pht_cipher *c, const unsigned char *in, size_t inlen, unsigned char *out,
                      size_t *outlen, pht_error *err)
{
    size_t total = 0;
    while (inlen > 0) {
        int piece = inlen > (size_t)EVP_PIECE ? EVP_PIECE : (int)inlen, n = 0;
        int ok = c->encrypt ? EVP_EncryptUpdate(c->ctx, out + total, &n, in, piece)
                            : EVP_DecryptUpdate(c->ctx, out + total, &n, in, piece);
        if (ok != 1)
            return pht_error_set_ssl(err, PHT_ECRYPTO, "%s: AES-256-CBC update failed",
                                     c->encrypt ? "encrypt" : "decrypt");
        total += (size_t)n;
        in += piece;
        inlen -= (size_t)piece;
    }
    *outlen += total;
    return 0;
}

int pht_cipher_update(pht_cipher *c, const unsigned char *in, size_t inlen, unsigned char *out,
                      size_t *outlen, pht_error *err)
{
    *outlen = 0;
    if (c->finished)
        return pht_error_set(err, PHT_ESTATE, "%s: update after final",
                             c->encrypt ? "encrypt" : "decrypt");
    if (c->encrypt) {
        if (!c->started) {
            memcpy(out, c->iv, PHT_IV_LEN);
            *outlen = PHT_IV_LEN;
            c->started = 1;
        }
        return evp_update(c, in, inlen, out + *outlen, outlen, err);
    }
    if (!c->started) {
        size_t take = PHT_IV_LEN - c->ivlen;
        if (take > inlen) take = inlen;
        memcpy(c->iv + c->ivlen, in, take);
        c->ivlen += take;
        in += take;
        inlen -= take;
        if (c->ivlen < PHT_IV_LEN) return 0;
        int ok = EVP_DecryptInit_ex2(c->ctx, EVP_aes_256_cbc(), c->key, c->iv, NULL);
        OPENSSL_cleanse(c->key, sizeof c->key);
        if (ok != 1) return pht_error_set_ssl(err, PHT_ECRYPTO, "decrypt: AES-256-CBC init failed");
        c->started = 1;
    }
    return evp_update(c, in, inlen, out, outlen, err);
}

int pht_cipher_final(pht_cipher *c, unsigned char *out, size_t *outlen, pht_error *err)
{
    *outlen = 0;
    if (c->finished)
        return pht_error_set(err, PHT_ESTATE, "%s: final called twice",
                             c->encrypt ? "encrypt" : "decrypt");
    c->finished = 1;
    int n = 0;
    if (c->encrypt) {
        if (!c->started) {
            memcpy(out, c->iv, PHT_IV_LEN);
            *outlen = PHT_IV_LEN;
            c->started = 1;
        }
        if (EVP_EncryptFinal_ex(c->ctx, out + *outlen, &n) != 1)
            return pht_error_set_ssl(err, PHT_ECRYPTO, "encrypt: AES-256-CBC final failed");
        *outlen += (size_t)n;
        return 0;
    }
    if (!c->started)
        return pht_error_set(err, PHT_ECRYPTO,
                             "decrypt: bad decrypt: ciphertext of %zu bytes is shorter than its "
                             "16-byte IV (truncated)",
                             c->ivlen);
    if (EVP_DecryptFinal_ex(c->ctx, out, &n) != 1)
        return pht_error_set_ssl(err, PHT_ECRYPTO,
                                 "decrypt: bad decrypt (wrong key, or a tampered or truncated "
                                 "ciphertext)");
    *outlen = (size_t)n;
    return 0;
}

void pht_cipher_free(pht_cipher *c)
{
    if (c == NULL) return;
    EVP_CIPHER_CTX_free(c->ctx); /* wipes the key schedule */
    OPENSSL_secure_clear_free(c, sizeof *c);
}
