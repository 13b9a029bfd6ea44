/*
 * libpht hashing (doc/protocol.md §4, §5 "Chain digest"): streaming SHA-512, the
 * immutable hash e_h, the results hash e_d, the chain digest, and the Docker
 * archive walk order in which results files are hashed.
 */
#ifndef PHT_HASH_H
#define PHT_HASH_H

#include <stddef.h>

#include "pht/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Length of a SHA-512 digest in bytes. */
#define PHT_SHA512_LEN 64
/* Chunk size of every libpht file read/write. */
#ifndef PHT_CHUNK_SIZE
#define PHT_CHUNK_SIZE 65536
#endif

/*
 * A streaming SHA-512. The plain kind hashes what it is fed. The immutable
 * kind (pht_hash_new_immutable) and the results kind (pht_hash_new_results)
 * add the creator id and session id where doc/protocol.md §4 puts them.
 */
typedef struct pht_hash pht_hash;

/* A new plain SHA-512 context; free with pht_hash_free. NULL on failure. */
PHT_API pht_hash *pht_hash_new(pht_error *err);

/*
 * The e_h builder: starts with creator_id (the config's id as UTF-8 text, an
 * integer as its decimal text). Feed the file_list files' decrypted contents
 * in list order, call pht_hash_begin_query, feed query.json's content if the
 * train has one, then pht_hash_final. The session id (copied) is added by
 * pht_hash_begin_query, or by pht_hash_final when begin_query was not called.
 */
PHT_API pht_hash *pht_hash_new_immutable(const char *creator_id, size_t idlen,
                                         const unsigned char *session_id, size_t sidlen,
                                         pht_error *err);

/*
 * The e_d builder: feed every regular results file's decrypted content in
 * walk order (pht_path_walk_sort); pht_hash_final appends the session id.
 */
PHT_API pht_hash *pht_hash_new_results(const unsigned char *session_id, size_t sidlen,
                                       pht_error *err);

/* Feed len bytes. PHT_ESTATE after pht_hash_final. */
PHT_API int pht_hash_update(pht_hash *h, const void *data, size_t len, pht_error *err);

/* Feed what remains of fd, read in PHT_CHUNK_SIZE chunks (fd stays open). */
PHT_API int pht_hash_update_fd(pht_hash *h, int fd, pht_error *err);

/* Feed the whole file at path in PHT_CHUNK_SIZE chunks. PHT_EIO names the path. */
PHT_API int pht_hash_update_file(pht_hash *h, const char *path, pht_error *err);

/*
 * Immutable kind only: the file_list files are done; adds the session id so
 * that query.json's content follows it. PHT_ESTATE on another kind, when
 * called twice, or after pht_hash_final.
 */
PHT_API int pht_hash_begin_query(pht_hash *h, pht_error *err);

/*
 * Finish into out (PHT_SHA512_LEN bytes). The context cannot be fed or
 * finished again (PHT_ESTATE); it still has to be freed.
 */
PHT_API int pht_hash_final(pht_hash *h, unsigned char *out, pht_error *err);

/* Release a context, wiping its state. NULL is fine. */
PHT_API void pht_hash_free(pht_hash *h);

/* One-shot SHA-512 of len bytes into out (PHT_SHA512_LEN bytes). */
PHT_API int pht_sha512(const void *data, size_t len, unsigned char *out, pht_error *err);

/*
 * The chain digest of a stop: SHA-512(prev || result_hash) where prev is the
 * session id (stop index 0) or the concatenated raw digests of the earlier
 * stops, and result_hash is e_d (PHT_SHA512_LEN bytes). out gets 64 bytes.
 */
PHT_API int pht_chain_digest(const unsigned char *prev, size_t prevlen,
                             const unsigned char *result_hash, unsigned char *out, pht_error *err);

/*
 * Order of two relative paths in Docker's archive walk: depth first, the
 * entries of each directory sorted bytewise by name. So "a/b.txt" sorts
 * before "a-c.txt". Returns <0, 0 or >0 like strcmp.
 */
PHT_API int pht_path_walk_cmp(const char *a, const char *b);

/* Sort n NUL-terminated relative paths in place by pht_path_walk_cmp. */
PHT_API void pht_path_walk_sort(const char **paths, size_t n);

#ifdef __cplusplus
}
#endif
#endif
