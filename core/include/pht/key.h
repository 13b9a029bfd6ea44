/*
 * libpht RSA keys and signatures (doc/protocol.md §5, §6 "Private keys").
 *
 * A pht_key holds one RSA key of at least 2048 bits, public only or private
 * (which includes the public half). Keys come from PEM text (PKCS#1, PKCS#8,
 * encrypted PKCS#8, SPKI), from the hex-of-PEM form train_config.json stores,
 * or from generation. Private key material stays inside OpenSSL and is wiped
 * when the key is freed.
 */
#ifndef PHT_KEY_H
#define PHT_KEY_H

#include <stddef.h>

#include "pht/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pht_key pht_key;

/* Smallest RSA modulus libpht accepts, in bits. */
#define PHT_KEY_MIN_BITS 2048
/* Largest RSA modulus libpht generates or accepts, in bits. */
#define PHT_KEY_MAX_BITS 16384
/* Length of a fingerprint in hex, without the NUL. */
#define PHT_KEY_FINGERPRINT_HEX_LEN 64

/*
 * Load an RSA public key from PEM text of len bytes: SubjectPublicKeyInfo
 * ("BEGIN PUBLIC KEY") or PKCS#1 ("BEGIN RSA PUBLIC KEY"). Returns a new key
 * (free with pht_key_free) or NULL with PHT_EFORMAT (not such a PEM) or
 * PHT_EKEY (not RSA, or under 2048 bits).
 */
PHT_API pht_key *pht_key_load_public_pem(const char *pem, size_t len, pht_error *err);

/*
 * Load a public key in the train_config.json form: hex of the PEM text (not of
 * DER). Upper- or lowercase hex. Errors as pht_key_load_public_pem, plus
 * PHT_EFORMAT when the text is not hex.
 */
PHT_API pht_key *pht_key_load_public_hex(const char *hex, size_t len, pht_error *err);

/*
 * Load an RSA private key from PEM text: PKCS#1 ("BEGIN RSA PRIVATE KEY",
 * also legacy-encrypted), PKCS#8 ("BEGIN PRIVATE KEY") or encrypted PKCS#8
 * ("BEGIN ENCRYPTED PRIVATE KEY"). password (NUL-terminated) may be NULL for
 * an unencrypted key. Fails with PHT_EKEY on a missing or wrong password or
 * an unsuitable key, PHT_EFORMAT when the text is no private key PEM.
 */
PHT_API pht_key *pht_key_load_private_pem(const char *pem, size_t len, const char *password,
                                          pht_error *err);

/*
 * pht_key_load_private_pem on the content of the file at path (at most
 * 1 MiB; the read buffer is wiped). PHT_EIO when the file cannot be read.
 */
PHT_API pht_key *pht_key_load_private_file(const char *path, const char *password, pht_error *err);

/*
 * Generate a new RSA private key of bits bits (PHT_KEY_MIN_BITS ..
 * PHT_KEY_MAX_BITS, public exponent 65537). PHT_EINVAL for other sizes.
 */
PHT_API pht_key *pht_key_generate(int bits, pht_error *err);

/* Release a key, wiping private material. NULL is fine. */
PHT_API void pht_key_free(pht_key *key);

/* Modulus size in bits. */
PHT_API int pht_key_bits(const pht_key *key);

/* 1 when the key holds the private half, else 0. */
PHT_API int pht_key_is_private(const pht_key *key);

/* Signature and RSA-OAEP output size in bytes (the modulus size). */
PHT_API size_t pht_key_size(const pht_key *key);

/*
 * The public key as SPKI PEM text ("BEGIN PUBLIC KEY"), NUL-terminated, in
 * *pem (free with free()); *len (may be NULL) gets the length without NUL.
 */
PHT_API int pht_key_public_pem(const pht_key *key, char **pem, size_t *len, pht_error *err);

/*
 * The train_config.json form: lowercase hex of the SPKI PEM text, as
 * pht_key_public_pem. *hex is freed with free().
 */
PHT_API int pht_key_public_hex(const pht_key *key, char **hex, size_t *len, pht_error *err);

/*
 * The private key as PKCS#8 PEM, encrypted with AES-256-CBC (PBES2) under
 * password when password is not NULL. PHT_ESTATE on a public key. *pem is a
 * secret: release it with pht_secret_free(*pem, *len + 1).
 */
PHT_API int pht_key_private_pem(const pht_key *key, const char *password, char **pem, size_t *len,
                                pht_error *err);

/*
 * SHA-256 of the DER SubjectPublicKeyInfo as lowercase hex into out
 * (PHT_KEY_FINGERPRINT_HEX_LEN + 1 bytes, NUL-terminated).
 */
PHT_API int pht_key_fingerprint(const pht_key *key, char *out, pht_error *err);

/*
 * RSA PKCS#1 v1.5 signature with SHA-512 over msg (e_h_sig, the build
 * signature). Needs a private key (PHT_ESTATE otherwise). *sig (free with
 * free()) gets pht_key_size(key) bytes, *siglen their count.
 */
PHT_API int pht_key_sign(const pht_key *key, const void *msg, size_t msglen, unsigned char **sig,
                         size_t *siglen, pht_error *err);

/*
 * Verify a PKCS#1 v1.5 SHA-512 signature over msg. Returns 0 when it
 * verifies, PHT_EVERIFY when a well-formed signature does not, PHT_EFORMAT when
 * sig is not pht_key_size(key) bytes long.
 */
PHT_API int pht_key_verify(const pht_key *key, const void *msg, size_t msglen,
                           const unsigned char *sig, size_t siglen, pht_error *err);

/* Length of the prehashed digest pht_key_sign_digest signs: SHA-512. */
#define PHT_KEY_DIGEST_LEN 64

/*
 * RSA-PSS signature (MGF1-SHA-512, maximum salt length) of a 64-byte SHA-512
 * digest signed as is (prehashed): e_d_sig and the chain signatures.
 * PHT_EINVAL when digestlen is not 64; otherwise as pht_key_sign.
 */
PHT_API int pht_key_sign_digest(const pht_key *key, const unsigned char *digest, size_t digestlen,
                                unsigned char **sig, size_t *siglen, pht_error *err);

/*
 * Verify a PSS signature made by pht_key_sign_digest (MGF1-SHA-512, prehashed).
 * Only the maximum salt length is accepted, as doc/protocol.md §5 and the
 * reference require: a signature with a shorter salt does not verify. Returns
 * as pht_key_verify; PHT_EFORMAT also when digestlen is not 64.
 */
PHT_API int pht_key_verify_digest(const pht_key *key, const unsigned char *digest, size_t digestlen,
                                  const unsigned char *sig, size_t siglen, pht_error *err);

#ifdef __cplusplus
}
#endif
#endif
