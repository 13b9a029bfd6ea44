/* RSA keys: loading (PEM, hex of PEM), generation, export, fingerprints. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "key_private.h"
#include "pht/util.h"

/* A private key file larger than this is not a PEM key. */
#define KEY_FILE_MAX (1024 * 1024)

/* Wrap a decoded EVP_PKEY after checking it is RSA of an acceptable size. */
static pht_key *wrap_pkey(EVP_PKEY *pkey, int is_private, const char *what, pht_error *err)
{
    if (!EVP_PKEY_is_a(pkey, "RSA")) {
        EVP_PKEY_free(pkey);
        pht_error_set(err, PHT_EKEY, "%s: not an RSA key", what);
        return NULL;
    }
    int bits = EVP_PKEY_get_bits(pkey);
    if (bits < PHT_KEY_MIN_BITS || bits > PHT_KEY_MAX_BITS) {
        EVP_PKEY_free(pkey);
        pht_error_set(err, PHT_EKEY, "%s: RSA key of %d bits (libpht needs %d to %d bits)", what,
                      bits, PHT_KEY_MIN_BITS, PHT_KEY_MAX_BITS);
        return NULL;
    }
    pht_key *key = malloc(sizeof *key);
    if (key == NULL) {
        EVP_PKEY_free(pkey);
        pht_error_set(err, PHT_ENOMEM, "%s: out of memory", what);
        return NULL;
    }
    key->pkey = pkey;
    key->is_private = is_private;
    return key;
}

/* True when the PEM text contains the marker (the text need not be NUL-terminated). */
static int pem_has(const char *pem, size_t len, const char *marker)
{
    size_t m = strlen(marker);
    for (size_t i = 0; i + m <= len; i++)
        if (memcmp(pem + i, marker, m) == 0) return 1;
    return 0;
}

/*
 * Decode PEM text into an RSA EVP_PKEY of the given selection. The passphrase
 * is handed to the decoder only when given; without one an encrypted key fails
 * instead of prompting on a terminal.
 */
static EVP_PKEY *decode(const char *pem, size_t len, int selection, const char *password)
{
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dctx =
        OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, "RSA", selection, NULL, NULL);
    if (dctx == NULL) return NULL;
    int ok = 1;
    if (password != NULL)
        ok = OSSL_DECODER_CTX_set_passphrase(dctx, (const unsigned char *)password,
                                             strlen(password));
    const unsigned char *data = (const unsigned char *)pem;
    size_t left = len;
    if (ok) ok = OSSL_DECODER_from_data(dctx, &data, &left);
    OSSL_DECODER_CTX_free(dctx);
    if (!ok) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    return pkey;
}

pht_key *pht_key_load_public_pem(const char *pem, size_t len, pht_error *err)
{
    if (pem == NULL) {
        pht_error_set(err, PHT_EINVAL, "public key: no PEM text given");
        return NULL;
    }
    if (!pem_has(pem, len, "-----BEGIN PUBLIC KEY-----") &&
        !pem_has(pem, len, "-----BEGIN RSA PUBLIC KEY-----")) {
        pht_error_set(err, PHT_EFORMAT,
                      "public key: not a PEM public key (expected BEGIN PUBLIC KEY or BEGIN RSA "
                      "PUBLIC KEY)");
        return NULL;
    }
    EVP_PKEY *pkey = decode(pem, len, EVP_PKEY_PUBLIC_KEY, NULL);
    if (pkey == NULL) {
        pht_error_set_ssl(err, PHT_EFORMAT,
                          "public key: cannot decode the PEM as an RSA public key");
        return NULL;
    }
    return wrap_pkey(pkey, 0, "public key", err);
}

pht_key *pht_key_load_public_hex(const char *hex, size_t len, pht_error *err)
{
    if (hex == NULL) {
        pht_error_set(err, PHT_EINVAL, "public key: no hex text given");
        return NULL;
    }
    unsigned char *pem = NULL;
    size_t pemlen = 0;
    if (pht_hex_decode_alloc(hex, len, &pem, &pemlen, "public key (hex of PEM)", err) != 0)
        return NULL;
    pht_key *key = pht_key_load_public_pem((const char *)pem, pemlen, err);
    free(pem);
    return key;
}

pht_key *pht_key_load_private_pem(const char *pem, size_t len, const char *password, pht_error *err)
{
    if (pem == NULL) {
        pht_error_set(err, PHT_EINVAL, "private key: no PEM text given");
        return NULL;
    }
    int encrypted = pem_has(pem, len, "-----BEGIN ENCRYPTED PRIVATE KEY-----") ||
                    pem_has(pem, len, "Proc-Type: 4,ENCRYPTED");
    if (!encrypted && !pem_has(pem, len, "-----BEGIN PRIVATE KEY-----") &&
        !pem_has(pem, len, "-----BEGIN RSA PRIVATE KEY-----")) {
        pht_error_set(err, PHT_EFORMAT,
                      "private key: not a PEM private key (expected BEGIN RSA PRIVATE KEY, BEGIN "
                      "PRIVATE KEY or BEGIN ENCRYPTED PRIVATE KEY)");
        return NULL;
    }
    if (encrypted && password == NULL) {
        pht_error_set(err, PHT_EKEY, "private key: the key is encrypted and no password was given");
        return NULL;
    }
    EVP_PKEY *pkey = decode(pem, len, EVP_PKEY_KEYPAIR, encrypted ? password : NULL);
    if (pkey == NULL) {
        if (encrypted)
            pht_error_set_ssl(
                err, PHT_EKEY,
                "private key: cannot decrypt the key (wrong password or corrupt key)");
        else
            pht_error_set_ssl(err, PHT_EFORMAT,
                              "private key: cannot decode the PEM as an RSA private key");
        return NULL;
    }
    return wrap_pkey(pkey, 1, "private key", err);
}

pht_key *pht_key_load_private_file(const char *path, const char *password, pht_error *err)
{
    if (path == NULL) {
        pht_error_set(err, PHT_EINVAL, "private key: no path given");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        pht_error_set(err, PHT_EIO, "private key %s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(KEY_FILE_MAX);
    if (buf == NULL) {
        fclose(f);
        pht_error_set(err, PHT_ENOMEM, "private key %s: out of memory", path);
        return NULL;
    }
    size_t n = fread(buf, 1, KEY_FILE_MAX, f);
    int rerr = ferror(f), more = (n == KEY_FILE_MAX && fgetc(f) != EOF);
    fclose(f);
    pht_key *key = NULL;
    if (rerr)
        pht_error_set(err, PHT_EIO, "private key %s: read failed", path);
    else if (more)
        pht_error_set(err, PHT_ELIMIT, "private key %s: larger than %d bytes, not a PEM key", path,
                      KEY_FILE_MAX);
    else if ((key = pht_key_load_private_pem(buf, n, password, err)) == NULL)
        pht_error_prefix(err, "%s", path);
    pht_secret_free(buf, KEY_FILE_MAX);
    return key;
}

pht_key *pht_key_generate(int bits, pht_error *err)
{
    if (bits < PHT_KEY_MIN_BITS || bits > PHT_KEY_MAX_BITS) {
        pht_error_set(err, PHT_EINVAL, "generate key: %d bits requested (libpht needs %d to %d)",
                      bits, PHT_KEY_MIN_BITS, PHT_KEY_MAX_BITS);
        return NULL;
    }
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    if (pkey == NULL) {
        pht_error_set_ssl(err, PHT_ECRYPTO, "generate key: RSA key generation failed");
        return NULL;
    }
    return wrap_pkey(pkey, 1, "generate key", err);
}

void pht_key_free(pht_key *key)
{
    if (key == NULL) return;
    EVP_PKEY_free(key->pkey); /* clears the private numbers */
    free(key);
}

int pht_key_bits(const pht_key *key)
{
    return EVP_PKEY_get_bits(key->pkey);
}

int pht_key_is_private(const pht_key *key)
{
    return key->is_private;
}

size_t pht_key_size(const pht_key *key)
{
    return (size_t)EVP_PKEY_get_size(key->pkey);
}

/* Copy a memory BIO's content into a NUL-terminated buffer of our own. */
static int bio_take(BIO *bio, char **out, size_t *len, const char *what, pht_error *err)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n <= 0) return pht_error_set(err, PHT_ECRYPTO, "%s: encoder wrote nothing", what);
    char *copy = malloc((size_t)n + 1);
    if (copy == NULL) return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", what);
    memcpy(copy, data, (size_t)n);
    copy[n] = '\0';
    *out = copy;
    if (len) *len = (size_t)n;
    return 0;
}

int pht_key_public_pem(const pht_key *key, char **pem, size_t *len, pht_error *err)
{
    *pem = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) return pht_error_set_ssl(err, PHT_ENOMEM, "public key PEM: no memory BIO");
    int rc;
    if (!PEM_write_bio_PUBKEY(bio, key->pkey))
        rc = pht_error_set_ssl(err, PHT_ECRYPTO, "public key PEM: encoding failed");
    else
        rc = bio_take(bio, pem, len, "public key PEM", err);
    BIO_free(bio);
    return rc;
}

int pht_key_public_hex(const pht_key *key, char **hex, size_t *len, pht_error *err)
{
    *hex = NULL;
    char *pem = NULL;
    size_t pemlen = 0;
    int rc = pht_key_public_pem(key, &pem, &pemlen, err);
    if (rc != 0) return rc;
    char *out = malloc(2 * pemlen + 1);
    if (out == NULL) {
        free(pem);
        return pht_error_set(err, PHT_ENOMEM, "public key hex: out of memory");
    }
    pht_hex_encode((const unsigned char *)pem, pemlen, out);
    free(pem);
    *hex = out;
    if (len) *len = 2 * pemlen;
    return 0;
}

int pht_key_private_pem(const pht_key *key, const char *password, char **pem, size_t *len,
                        pht_error *err)
{
    *pem = NULL;
    if (!key->is_private)
        return pht_error_set(err, PHT_ESTATE, "private key PEM: the key is a public key");
    /* The secure-memory BIO wipes its buffer when freed. */
    BIO *bio = BIO_new(BIO_s_secmem());
    if (bio == NULL) return pht_error_set_ssl(err, PHT_ENOMEM, "private key PEM: no memory BIO");
    const EVP_CIPHER *cipher = password ? EVP_aes_256_cbc() : NULL;
    int rc;
    if (!PEM_write_bio_PKCS8PrivateKey(bio, key->pkey, cipher, password,
                                       password ? (int)strlen(password) : 0, NULL, NULL))
        rc = pht_error_set_ssl(err, PHT_ECRYPTO, "private key PEM: encoding failed");
    else
        rc = bio_take(bio, pem, len, "private key PEM", err);
    BIO_free(bio);
    return rc;
}

int pht_key_fingerprint(const pht_key *key, char *out, pht_error *err)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(key->pkey, &der);
    if (n <= 0) return pht_error_set_ssl(err, PHT_ECRYPTO, "fingerprint: SPKI encoding failed");
    unsigned char md[32];
    unsigned int mdlen = 0;
    int ok = EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL);
    OPENSSL_free(der);
    if (!ok || mdlen != sizeof md)
        return pht_error_set_ssl(err, PHT_ECRYPTO, "fingerprint: SHA-256 failed");
    pht_hex_encode(md, sizeof md, out);
    return 0;
}
