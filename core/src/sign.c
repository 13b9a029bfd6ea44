/*
 * RSA signatures of doc/protocol.md §5: PKCS#1 v1.5 with SHA-512 over a message,
 * and RSA-PSS (MGF1-SHA-512, maximum salt) over a prehashed SHA-512 digest.
 */
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "key_private.h"

static int need_private(const pht_key *key, const char *what, pht_error *err)
{
    if (!key->is_private)
        return pht_error_set(err, PHT_ESTATE, "%s: needs a private key, got a public key", what);
    return 0;
}

static int check_siglen(const pht_key *key, size_t siglen, const char *what, pht_error *err)
{
    size_t want = (size_t)EVP_PKEY_get_size(key->pkey);
    if (siglen != want)
        return pht_error_set(err, PHT_EFORMAT,
                             "%s: signature is %zu bytes, a %d-bit key makes %zu-byte signatures",
                             what, siglen, EVP_PKEY_get_bits(key->pkey), want);
    return 0;
}

/* The result of an OpenSSL verify call: 1 verifies, 0 does not, < 0 failed to run. */
static int verify_result(int r, const char *what, pht_error *err)
{
    if (r == 1) {
        ERR_clear_error();
        return 0;
    }
    if (r == 0) {
        ERR_clear_error();
        return pht_error_set(err, PHT_EVERIFY, "%s: signature does not verify", what);
    }
    return pht_error_set_ssl(err, PHT_ECRYPTO, "%s: verification could not run", what);
}

int pht_key_sign(const pht_key *key, const void *msg, size_t msglen, unsigned char **sig,
                 size_t *siglen, pht_error *err)
{
    static const char what[] = "sign (RSA PKCS#1 v1.5 SHA-512)";
    *sig = NULL;
    int rc = need_private(key, what, err);
    if (rc != 0) return rc;
    size_t n = (size_t)EVP_PKEY_get_size(key->pkey);
    unsigned char *out = malloc(n);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (out == NULL || md == NULL) {
        rc = pht_error_set_ssl(err, PHT_ENOMEM, "%s: out of memory", what);
    } else if (EVP_DigestSignInit_ex(md, &pctx, "SHA512", NULL, NULL, key->pkey, NULL) != 1 ||
               EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1 ||
               EVP_DigestSign(md, out, &n, msg, msglen) != 1) {
        rc = pht_error_set_ssl(err, PHT_ECRYPTO, "%s failed", what);
    }
    EVP_MD_CTX_free(md);
    if (rc != 0) {
        free(out);
        return rc;
    }
    *sig = out;
    *siglen = n;
    return 0;
}

int pht_key_verify(const pht_key *key, const void *msg, size_t msglen, const unsigned char *sig,
                   size_t siglen, pht_error *err)
{
    static const char what[] = "verify (RSA PKCS#1 v1.5 SHA-512)";
    int rc = check_siglen(key, siglen, what, err);
    if (rc != 0) return rc;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (md == NULL) return pht_error_set_ssl(err, PHT_ENOMEM, "%s: out of memory", what);
    if (EVP_DigestVerifyInit_ex(md, &pctx, "SHA512", NULL, NULL, key->pkey, NULL) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)
        rc = pht_error_set_ssl(err, PHT_ECRYPTO, "%s: setup failed", what);
    else
        rc = verify_result(EVP_DigestVerify(md, sig, siglen, msg, msglen), what, err);
    EVP_MD_CTX_free(md);
    return rc;
}

/* A PKEY context set up for PSS over a prehashed SHA-512 digest. */
static EVP_PKEY_CTX *pss_ctx(const pht_key *key, int sign, const char *what, pht_error *err)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
    if (ctx == NULL) {
        pht_error_set_ssl(err, PHT_ENOMEM, "%s: no context", what);
        return NULL;
    }
    /*
     * doc/protocol.md §5: the salt is as long as the key allows. Verification
     * insists on that length too, as the reference's verifier does, so a
     * signature made with any other salt is refused.
     */
    int saltlen = RSA_PSS_SALTLEN_MAX;
    if ((sign ? EVP_PKEY_sign_init(ctx) : EVP_PKEY_verify_init(ctx)) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha512()) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha512()) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, saltlen) != 1) {
        pht_error_set_ssl(err, PHT_ECRYPTO, "%s: setup failed", what);
        EVP_PKEY_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int pht_key_sign_digest(const pht_key *key, const unsigned char *digest, size_t digestlen,
                        unsigned char **sig, size_t *siglen, pht_error *err)
{
    static const char what[] = "sign digest (RSA-PSS SHA-512)";
    *sig = NULL;
    int rc = need_private(key, what, err);
    if (rc != 0) return rc;
    if (digestlen != PHT_KEY_DIGEST_LEN)
        return pht_error_set(err, PHT_EINVAL, "%s: digest is %zu bytes, expected %d", what,
                             digestlen, PHT_KEY_DIGEST_LEN);
    EVP_PKEY_CTX *ctx = pss_ctx(key, 1, what, err);
    if (ctx == NULL) return err ? err->code : PHT_ECRYPTO;
    size_t n = (size_t)EVP_PKEY_get_size(key->pkey);
    unsigned char *out = malloc(n);
    if (out == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "%s: out of memory", what);
    else if (EVP_PKEY_sign(ctx, out, &n, digest, digestlen) != 1)
        rc = pht_error_set_ssl(err, PHT_ECRYPTO, "%s failed", what);
    EVP_PKEY_CTX_free(ctx);
    if (rc != 0) {
        free(out);
        return rc;
    }
    *sig = out;
    *siglen = n;
    return 0;
}

int pht_key_verify_digest(const pht_key *key, const unsigned char *digest, size_t digestlen,
                          const unsigned char *sig, size_t siglen, pht_error *err)
{
    static const char what[] = "verify digest (RSA-PSS SHA-512)";
    if (digestlen != PHT_KEY_DIGEST_LEN)
        return pht_error_set(err, PHT_EFORMAT, "%s: digest is %zu bytes, expected %d", what,
                             digestlen, PHT_KEY_DIGEST_LEN);
    int rc = check_siglen(key, siglen, what, err);
    if (rc != 0) return rc;
    EVP_PKEY_CTX *ctx = pss_ctx(key, 0, what, err);
    if (ctx == NULL) return err ? err->code : PHT_ECRYPTO;
    rc = verify_result(EVP_PKEY_verify(ctx, sig, siglen, digest, digestlen), what, err);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}
