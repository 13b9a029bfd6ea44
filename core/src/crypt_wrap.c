/* RSA-OAEP (SHA-512, MGF1-SHA-512, no label) wrapping of symmetric keys. */
#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "key_private.h"
#include "pht/crypt.h"

static EVP_PKEY_CTX *oaep_ctx(const pht_key *key, int encrypt, const char *what, pht_error *err)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
    if (ctx == NULL) {
        pht_error_set_ssl(err, PHT_ENOMEM, "%s: no context", what);
        return NULL;
    }
    if ((encrypt ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx)) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha512()) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha512()) != 1) {
        pht_error_set_ssl(err, PHT_ECRYPTO, "%s: setup failed", what);
        EVP_PKEY_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int pht_symkey_wrap(const pht_symkey *key, const pht_key *pub, unsigned char **out, size_t *outlen,
                    pht_error *err)
{
    static const char what[] = "wrap key (RSA-OAEP SHA-512)";
    *out = NULL;
    unsigned char raw[PHT_SYMKEY_LEN];
    EVP_PKEY_CTX *ctx = oaep_ctx(pub, 1, what, err);
    if (ctx == NULL) return err ? err->code : PHT_ECRYPTO;
    size_t n = (size_t)EVP_PKEY_get_size(pub->pkey);
    unsigned char *buf = malloc(n);
    int rc = 0;
    pht_symkey_export(key, raw);
    if (buf == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "%s: out of memory", what);
    else if (EVP_PKEY_encrypt(ctx, buf, &n, raw, sizeof raw) != 1)
        rc = pht_error_set_ssl(err, PHT_ECRYPTO, "%s failed", what);
    OPENSSL_cleanse(raw, sizeof raw);
    EVP_PKEY_CTX_free(ctx);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

pht_symkey *pht_symkey_unwrap(const pht_key *priv, const unsigned char *in, size_t len,
                              pht_error *err)
{
    static const char what[] = "unwrap key (RSA-OAEP SHA-512)";
    if (!priv->is_private) {
        pht_error_set(err, PHT_ESTATE, "%s: needs a private key, got a public key", what);
        return NULL;
    }
    size_t n = (size_t)EVP_PKEY_get_size(priv->pkey);
    if (len != n) {
        pht_error_set(err, PHT_EFORMAT, "%s: wrapped key is %zu bytes, a %d-bit key wraps to %zu",
                      what, len, EVP_PKEY_get_bits(priv->pkey), n);
        return NULL;
    }
    EVP_PKEY_CTX *ctx = oaep_ctx(priv, 0, what, err);
    if (ctx == NULL) return NULL;
    unsigned char *buf = OPENSSL_secure_malloc(n);
    pht_symkey *key = NULL;
    size_t got = n;
    if (buf == NULL)
        pht_error_set(err, PHT_ENOMEM, "%s: out of memory", what);
    else if (EVP_PKEY_decrypt(ctx, buf, &got, in, len) != 1)
        pht_error_set_ssl(err, PHT_ECRYPTO,
                          "%s: cannot decrypt (not wrapped for this key, or tampered)", what);
    else if (got != PHT_SYMKEY_LEN)
        pht_error_set(err, PHT_EFORMAT, "%s: unwrapped %zu bytes, a symmetric key has %d", what,
                      got, PHT_SYMKEY_LEN);
    else
        key = pht_symkey_from_bytes(buf, got, err);
    if (buf != NULL) OPENSSL_secure_clear_free(buf, n);
    EVP_PKEY_CTX_free(ctx);
    return key;
}
