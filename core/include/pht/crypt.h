/*
 * libpht symmetric encryption and key wrapping (doc/protocol.md §6).
 *
 * Each file is stored as IV (16 random bytes) || AES-256-CBC(key, IV,
 * PKCS#7-padded content). A pht_symkey holds the 32-byte key, wiped when
 * freed; it travels to each stop wrapped with RSA-OAEP (SHA-512, MGF1-SHA-512,
 * no label).
 */
#ifndef PHT_CRYPT_H
#define PHT_CRYPT_H

#include <stddef.h>

#include <stdint.h>

#include "pht/error.h"
#include "pht/hash.h"
#include "pht/image.h"
#include "pht/key.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PHT_SYMKEY_LEN 32
#define PHT_IV_LEN 16
#define PHT_BLOCK_LEN 16
/* A cipher's output never exceeds its input by more than this (IV + padding). */
#define PHT_CIPHER_OVERHEAD (PHT_IV_LEN + PHT_BLOCK_LEN)

typedef struct pht_symkey pht_symkey;
typedef struct pht_cipher pht_cipher;

/* A fresh random key from OpenSSL's CSPRNG; free with pht_symkey_free. */
PHT_API pht_symkey *pht_symkey_new(pht_error *err);

/* A key from exactly PHT_SYMKEY_LEN raw bytes (copied); PHT_EFORMAT otherwise. */
PHT_API pht_symkey *pht_symkey_from_bytes(const unsigned char *raw, size_t len, pht_error *err);

/* Copy the raw key into out (PHT_SYMKEY_LEN bytes). The caller wipes out. */
PHT_API void pht_symkey_export(const pht_symkey *key, unsigned char *out);

/* Wipe and release a key. NULL is fine. */
PHT_API void pht_symkey_free(pht_symkey *key);

/*
 * Wrap the key for pub (any pht_key) with RSA-OAEP SHA-512/MGF1-SHA-512.
 * *out (free with free()) gets pht_key_size(pub) bytes.
 */
PHT_API int pht_symkey_wrap(const pht_symkey *key, const pht_key *pub, unsigned char **out,
                            size_t *outlen, pht_error *err);

/*
 * Unwrap a key wrapped for priv (a private key, else PHT_ESTATE). Returns a
 * new key, or NULL with PHT_ECRYPTO when the wrapped bytes do not decrypt
 * under this key, PHT_EFORMAT when their length is not the key size or the
 * plaintext is not exactly PHT_SYMKEY_LEN bytes.
 */
PHT_API pht_symkey *pht_symkey_unwrap(const pht_key *priv, const unsigned char *in, size_t len,
                                      pht_error *err);

/*
 * A streaming encryptor with a fresh random IV: the output of its first
 * pht_cipher_update starts with the IV. Free with pht_cipher_free. The key
 * is copied; it may be freed while the cipher lives.
 */
PHT_API pht_cipher *pht_cipher_new_encrypt(const pht_symkey *key, pht_error *err);

/*
 * A streaming decryptor: takes the IV from the first 16 input bytes, which may
 * arrive over several updates.
 */
PHT_API pht_cipher *pht_cipher_new_decrypt(const pht_symkey *key, pht_error *err);

/*
 * Process inlen bytes. out must hold inlen + PHT_CIPHER_OVERHEAD bytes; *outlen
 * gets the count written. PHT_ESTATE after pht_cipher_final.
 */
PHT_API int pht_cipher_update(pht_cipher *c, const unsigned char *in, size_t inlen,
                              unsigned char *out, size_t *outlen, pht_error *err);

/*
 * Finish: out must hold PHT_CIPHER_OVERHEAD bytes. The encryptor writes the
 * last padded block (and the IV when nothing was fed). The decryptor checks
 * the padding: a wrong key, a tampered or truncated ciphertext fails with
 * PHT_ECRYPTO ("bad decrypt ..."). Its plaintext already handed out must then
 * be discarded by the caller.
 */
PHT_API int pht_cipher_final(pht_cipher *c, unsigned char *out, size_t *outlen, pht_error *err);

/* Wipe and release a cipher. NULL is fine. */
PHT_API void pht_cipher_free(pht_cipher *c);

/*
 * Encrypt (or decrypt) everything readable from in_fd to out_fd in
 * PHT_CHUNK_SIZE chunks, constant memory. Neither fd is closed.
 */
PHT_API int pht_encrypt_fd(const pht_symkey *key, int in_fd, int out_fd, pht_error *err);
PHT_API int pht_decrypt_fd(const pht_symkey *key, int in_fd, int out_fd, pht_error *err);

/*
 * File to file (src and dst must differ). dst is created or truncated with
 * mode 0600; on failure it is removed so no partial plaintext or
 * ciphertext stays behind. Errors name the path.
 */
PHT_API int pht_encrypt_file(const pht_symkey *key, const char *src, const char *dst,
                             pht_error *err);
PHT_API int pht_decrypt_file(const pht_symkey *key, const char *src, const char *dst,
                             pht_error *err);

/*
 * Progress of a long call: bytes of plaintext done since the last call, at
 * most about every MiB or 100 ms and once at the end. Runs on the calling
 * thread; a non-zero return stops the call with PHT_ESTATE.
 */
typedef int (*pht_crypt_progress_fn)(void *ud, uint64_t bytes);

/*
 * One pass per byte: read the plaintext file src once, feed it to h (NULL:
 * no hash) and encrypt it with a fresh IV into a new entry `path` of w, whose
 * tar header carries the ciphertext size 16 + (n/16 + 1) * 16 up front.
 * From the first such call on, h is hashed on a thread of its own for the
 * rest of its stream (pht_hash_update between calls takes its place in
 * order; pht_hash_final and pht_hash_free wait for the thread, and wipe its
 * buffers); memory stays a few MiB. On
 * failure the writer is left failed (nothing of the entry can be
 * committed). progress may be NULL. Errors name src.
 */
PHT_API int pht_encrypt_into(const pht_symkey *key, const char *src, pht_hash *h,
                             pht_image_writer *w, const char *path, const pht_image_attrs *attrs,
                             pht_crypt_progress_fn progress, void *ud, pht_error *err);
/*
 * The mirror: decrypt the ciphertext file src straight into entry `path` of
 * w, feeding the plaintext to h. The plaintext size is read from the last two
 * blocks first, so a wrong key or a bad end fails (PHT_ECRYPTO) before any
 * byte is written; no plaintext touches the disk outside the writer's layer.
 */
PHT_API int pht_decrypt_into(const pht_symkey *key, const char *src, pht_hash *h,
                             pht_image_writer *w, const char *path, const pht_image_attrs *attrs,
                             pht_crypt_progress_fn progress, void *ud, pht_error *err);

/*
 * The same from the regular file src of an image (pht_image_open_file): a
 * file of a plain tar layer is read in place with pread (see
 * pht_image_in_place), any other through the layer's stream; the decrypt of
 * one in a compressed layer reads it twice (its last blocks first), still
 * writing no plaintext outside w's layer. Errors name src.
 */
PHT_API int pht_encrypt_image_into(const pht_symkey *key, pht_image *img, const char *src,
                                   pht_hash *h, pht_image_writer *w, const char *path,
                                   const pht_image_attrs *attrs, pht_crypt_progress_fn progress,
                                   void *ud, pht_error *err);
PHT_API int pht_decrypt_image_into(const pht_symkey *key, pht_image *img, const char *src,
                                   pht_hash *h, pht_image_writer *w, const char *path,
                                   const pht_image_attrs *attrs, pht_crypt_progress_fn progress,
                                   void *ud, pht_error *err);

/* n random bytes from OpenSSL's CSPRNG into out. */
PHT_API int pht_random_bytes(unsigned char *out, size_t n, pht_error *err);

#ifdef __cplusplus
}
#endif
#endif
