/*
 * The sha256 of image blobs, over the same EVP stream as pht_hash (hash.c).
 * Digests travel as text, "sha256:" + 64 lowercase hex digits. Not installed.
 */
#ifndef PHT_HASH_PRIVATE_H
#define PHT_HASH_PRIVATE_H

#include <stddef.h>

#include "pht/hash.h"

/* Bytes of a "sha256:<hex>" digest with its NUL. */
#define HASH_SHA256_TEXT 72

/* A sha256 stream: feed it with pht_hash_update, finish it with hash_final_sha256. */
pht_hash *hash_new_sha256(pht_error *err);
/* Finish into out (HASH_SHA256_TEXT bytes) as "sha256:<hex>"; the stream cannot be fed again. */
int hash_final_sha256(pht_hash *h, char *out, pht_error *err);
/* One-shot "sha256:<hex>" of a buffer. */
int hash_sha256_buf(const void *p, size_t n, char *out, pht_error *err);
/* 1 if d is "sha256:" + 64 lowercase hex digits. */
int hash_sha256_valid(const char *d);

/*
 * Hashing behind: from here on the stream is hashed on a thread of its own,
 * in the order the bytes come, so the caller's thread is free (it encrypts
 * or decrypts) while SHA-512 runs on the other core. pht_hash_update copies
 * into the thread's slots; hash_slot and hash_publish fill one in place.
 * Later calls that finish the stream wait for the thread. Once per stream;
 * where no thread can start the stream stays inline (0 all the same).
 */
#define HASH_SLOT ((256u << 10) + 32u) /* a slot: 256 KiB and a cipher's overhead */
int hash_behind(pht_hash *h, pht_error *err);
/* 1 while the stream is hashed on its thread (hash_behind, until the final), else 0. */
int hash_is_behind(const pht_hash *h);
/* The slot to fill next (HASH_SLOT bytes), once the thread is done with it; NULL if not behind. */
unsigned char *hash_slot(pht_hash *h);
/* Hand the first len bytes of the slot hash_slot gave to the thread; the caller may still read
 * them until its next hash_slot. A failure of the thread shows here or at the final. */
int hash_publish(pht_hash *h, size_t len, pht_error *err);

/* Length of the common prefix of a[0, n) and b[0, n), eight bytes at a time. */
size_t hash_path_common(const char *a, const char *b, size_t n);
/* pht_path_walk_cmp over a[0, an) and b[0, bn): the walk order's one home. */
int hash_path_walk_cmpn(const char *a, size_t an, const char *b, size_t bn);

#endif
