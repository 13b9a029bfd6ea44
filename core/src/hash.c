/*
 * Streaming digests over OpenSSL EVP: SHA-512 and the protocol's hashes e_h,
 * e_d and the chain digest (pht/hash.h), the sha256 of image blobs
 * (hash_private.h), and the Docker archive walk order.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "hash_private.h"
#include "pht/interrupt.h"
#include "pht/util.h"

enum hash_kind { KIND_PLAIN, KIND_IMMUTABLE, KIND_RESULTS, KIND_SHA256 };

typedef struct behind behind;

struct pht_hash {
    EVP_MD_CTX *md;
    enum hash_kind kind;
    int finished;
    int query_begun;
    unsigned char *session_id; /* immutable and results kinds */
    size_t sidlen;
    behind *bh; /* hashing on a thread of its own (hash_behind), or NULL */
};

/* The algorithm's name in messages. */
static const char *hash_name(const pht_hash *h)
{
    return h->kind == KIND_SHA256 ? "sha256" : "SHA-512";
}

/*
 * Hashing behind (hash_behind): a thread of the hash's own takes the bytes
 * from a ring of BEHIND_SLOTS slots of HASH_SLOT bytes, in order. A caller
 * fills a slot in place (hash_slot, hash_publish: no copy) or
 * pht_hash_update copies its bytes into the slots; the caller may read a
 * published slot until it asks for the next one (the thread only reads it).
 * Every step that touches the digest itself (begin_query, final, free)
 * first waits for the thread and stops it. The slots may hold decrypted
 * plaintext: they are wiped when the thread stops.
 */
/* 8 MiB: deep enough that on two cores the caller and the thread seldom wait for each other
   (8 slots kept the encrypt pass of a 1 GiB post-run at 1.6 of 2 CPUs, 32 at 1.7) */
#define BEHIND_SLOTS 32

struct behind {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned char *buf[BEHIND_SLOTS];
    size_t len[BEHIND_SLOTS];
    uint64_t produced, hashed; /* slots published, slots hashed */
    size_t fill;               /* bytes pht_hash_update put in the current slot, unpublished */
    int stop, failed;
    pht_error why;
};

static void *behind_thread(void *arg)
{
    pht_hash *h = arg;
    behind *b = h->bh;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (b->hashed == b->produced && !b->stop)
            pthread_cond_wait(&b->cv, &b->mu);
        if (b->hashed == b->produced) break;
        size_t k = (size_t)(b->hashed % BEHIND_SLOTS);
        int failed = b->failed;
        pthread_mutex_unlock(&b->mu);
        int ok = failed || EVP_DigestUpdate(h->md, b->buf[k], b->len[k]) == 1;
        pthread_mutex_lock(&b->mu);
        if (!ok) {
            b->failed = 1;
            pht_error_set_ssl(&b->why, PHT_ECRYPTO, "%s: update failed", hash_name(h));
        }
        b->hashed++;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* Wipe the slots ever handed out (those up to the one at b->produced) and free them all. */
static void behind_free(behind *b)
{
    for (uint64_t i = 0; i < BEHIND_SLOTS; i++) {
        if (b->buf[i] && i <= b->produced) OPENSSL_cleanse(b->buf[i], HASH_SLOT);
        free(b->buf[i]);
    }
    free(b);
}

int hash_behind(pht_hash *h, pht_error *err)
{
    if (h->bh || h->finished) return 0;
    behind *b = calloc(1, sizeof *b);
    for (int i = 0; b && i < BEHIND_SLOTS; i++)
        if ((b->buf[i] = malloc(HASH_SLOT)) == NULL) {
            behind_free(b);
            b = NULL;
        }
    if (b == NULL) return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", hash_name(h));
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    h->bh = b;
    if (pthread_create(&b->th, NULL, behind_thread, h) != 0) {
        /* no thread: the hash stays inline */
        h->bh = NULL;
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        behind_free(b);
    }
    return 0;
}

int hash_is_behind(const pht_hash *h)
{
    return h->bh != NULL;
}

/* The failure the thread hit, as the caller's error; 0 if none. Call with b->mu held. */
static int behind_failed(const behind *b, pht_error *err)
{
    if (!b->failed) return 0;
    if (err) *err = b->why;
    return b->why.code ? b->why.code : PHT_ECRYPTO;
}

int hash_publish(pht_hash *h, size_t len, pht_error *err)
{
    behind *b = h->bh;
    if (b == NULL) return pht_error_set(err, PHT_ESTATE, "%s: not hashing behind", hash_name(h));
    pthread_mutex_lock(&b->mu);
    b->len[b->produced % BEHIND_SLOTS] = len;
    b->produced++;
    b->fill = 0;
    int rc = behind_failed(b, err);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return rc;
}

/* The slot at b->produced, once the thread has hashed what it held. */
static unsigned char *slot_wait(behind *b)
{
    pthread_mutex_lock(&b->mu);
    while (b->produced - b->hashed >= BEHIND_SLOTS)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    return b->buf[b->produced % BEHIND_SLOTS];
}

unsigned char *hash_slot(pht_hash *h)
{
    behind *b = h->bh;
    if (b == NULL) return NULL;
    if (b->fill) hash_publish(h, b->fill, NULL); /* what pht_hash_update left goes first */
    return slot_wait(b);
}

/* pht_hash_update behind: the bytes copied into the slots, a slot published once full. */
static int behind_update(pht_hash *h, const unsigned char *p, size_t len, pht_error *err)
{
    behind *b = h->bh;
    while (len > 0) {
        unsigned char *slot = slot_wait(b); /* at once when the slot is partly filled */
        size_t n = HASH_SLOT - b->fill < len ? HASH_SLOT - b->fill : len;
        memcpy(slot + b->fill, p, n);
        b->fill += n;
        p += n;
        len -= n;
        if (b->fill == HASH_SLOT) {
            int rc = hash_publish(h, HASH_SLOT, err);
            if (rc) return rc;
        }
    }
    return 0;
}

/* Wait until the thread hashed everything, stop it and wipe its slots: the digest is the caller's.
 */
static int behind_stop(pht_hash *h, pht_error *err)
{
    behind *b = h->bh;
    if (b == NULL) return 0;
    if (b->fill) hash_publish(h, b->fill, NULL);
    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->th, NULL);
    int rc = behind_failed(b, err);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    behind_free(b);
    h->bh = NULL;
    return rc;
}

static pht_hash *hash_alloc(enum hash_kind kind, const unsigned char *sid, size_t sidlen,
                            pht_error *err)
{
    const char *name = kind == KIND_SHA256 ? "sha256" : "SHA-512";
    pht_hash *h = calloc(1, sizeof *h);
    if (h == NULL) {
        pht_error_set(err, PHT_ENOMEM, "%s: out of memory", name);
        return NULL;
    }
    h->kind = kind;
    if (kind == KIND_IMMUTABLE || kind == KIND_RESULTS) {
        h->session_id = malloc(sidlen ? sidlen : 1);
        if (h->session_id == NULL) {
            free(h);
            pht_error_set(err, PHT_ENOMEM, "%s: out of memory", name);
            return NULL;
        }
        if (sidlen) memcpy(h->session_id, sid, sidlen);
        h->sidlen = sidlen;
    }
    h->md = EVP_MD_CTX_new();
    if (h->md == NULL ||
        EVP_DigestInit_ex2(h->md, kind == KIND_SHA256 ? EVP_sha256() : EVP_sha512(), NULL) != 1) {
        pht_error_set_ssl(err, PHT_ECRYPTO, "%s: init failed", name);
        pht_hash_free(h);
        return NULL;
    }
    return h;
}

pht_hash *pht_hash_new(pht_error *err)
{
    return hash_alloc(KIND_PLAIN, NULL, 0, err);
}

pht_hash *pht_hash_new_immutable(const char *creator_id, size_t idlen,
                                 const unsigned char *session_id, size_t sidlen, pht_error *err)
{
    if ((creator_id == NULL && idlen) || (session_id == NULL && sidlen)) {
        pht_error_set(err, PHT_EINVAL, "immutable hash: creator id or session id missing");
        return NULL;
    }
    pht_hash *h = hash_alloc(KIND_IMMUTABLE, session_id, sidlen, err);
    if (h != NULL && idlen && EVP_DigestUpdate(h->md, creator_id, idlen) != 1) {
        pht_error_set_ssl(err, PHT_ECRYPTO, "immutable hash: hashing the creator id failed");
        pht_hash_free(h);
        return NULL;
    }
    return h;
}

pht_hash *pht_hash_new_results(const unsigned char *session_id, size_t sidlen, pht_error *err)
{
    if (session_id == NULL && sidlen) {
        pht_error_set(err, PHT_EINVAL, "results hash: session id missing");
        return NULL;
    }
    return hash_alloc(KIND_RESULTS, session_id, sidlen, err);
}

int pht_hash_update(pht_hash *h, const void *data, size_t len, pht_error *err)
{
    if (h->finished) return pht_error_set(err, PHT_ESTATE, "%s: update after final", hash_name(h));
    if (len == 0) return 0;
    if (h->bh) return behind_update(h, data, len, err);
    if (EVP_DigestUpdate(h->md, data, len) != 1)
        return pht_error_set_ssl(err, PHT_ECRYPTO, "%s: update failed", hash_name(h));
    return 0;
}

int pht_hash_update_fd(pht_hash *h, int fd, pht_error *err)
{
    if (h->finished) return pht_error_set(err, PHT_ESTATE, "SHA-512: update after final");
    unsigned char *buf = malloc(PHT_CHUNK_SIZE);
    if (buf == NULL) return pht_error_set(err, PHT_ENOMEM, "SHA-512: out of memory");
    int rc = 0;
    for (;;) {
        if ((rc = pht_interrupt_check(err))) break;
        ssize_t n = read(fd, buf, PHT_CHUNK_SIZE);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = pht_error_set(err, PHT_EIO, "read failed: %s", strerror(errno));
            break;
        }
        if (n == 0) break;
        if ((rc = pht_hash_update(h, buf, (size_t)n, err)) != 0) break;
    }
    /* The data may be decrypted plaintext. */
    OPENSSL_cleanse(buf, PHT_CHUNK_SIZE);
    free(buf);
    return rc;
}

int pht_hash_update_file(pht_hash *h, const char *path, pht_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pht_error_set(err, PHT_EIO, "%s: cannot open: %s", path, strerror(errno));
    int rc = pht_hash_update_fd(h, fd, err);
    close(fd);
    if (rc != 0) pht_error_prefix(err, "%s", path);
    return rc;
}

int pht_hash_begin_query(pht_hash *h, pht_error *err)
{
    if (h->kind != KIND_IMMUTABLE)
        return pht_error_set(err, PHT_ESTATE,
                             "begin_query: only the immutable hash has a query part");
    if (h->finished) return pht_error_set(err, PHT_ESTATE, "begin_query: called after final");
    if (h->query_begun) return pht_error_set(err, PHT_ESTATE, "begin_query: called twice");
    int rc = behind_stop(h, err);
    if (rc) return rc;
    h->query_begun = 1;
    if (h->sidlen && EVP_DigestUpdate(h->md, h->session_id, h->sidlen) != 1)
        return pht_error_set_ssl(err, PHT_ECRYPTO, "immutable hash: hashing the session id failed");
    return 0;
}

int pht_hash_final(pht_hash *h, unsigned char *out, pht_error *err)
{
    if (h->kind == KIND_SHA256)
        return pht_error_set(err, PHT_ESTATE, "sha256: finish with hash_final_sha256");
    if (h->finished) return pht_error_set(err, PHT_ESTATE, "SHA-512: final called twice");
    int rc = behind_stop(h, err);
    if (rc != 0) {
        h->finished = 1;
        return rc;
    }
    if (h->kind == KIND_IMMUTABLE && !h->query_begun)
        rc = pht_hash_begin_query(h, err);
    else if (h->kind == KIND_RESULTS && h->sidlen &&
             EVP_DigestUpdate(h->md, h->session_id, h->sidlen) != 1)
        rc = pht_error_set_ssl(err, PHT_ECRYPTO, "results hash: hashing the session id failed");
    h->finished = 1;
    if (rc != 0) return rc;
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(h->md, out, &n) != 1 || n != PHT_SHA512_LEN)
        return pht_error_set_ssl(err, PHT_ECRYPTO, "SHA-512: final failed");
    return 0;
}

void pht_hash_free(pht_hash *h)
{
    if (h == NULL) return;
    behind_stop(h, NULL);
    EVP_MD_CTX_free(h->md);
    free(h->session_id);
    free(h);
}

int pht_sha512(const void *data, size_t len, unsigned char *out, pht_error *err)
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha512(), NULL) != 1 || n != PHT_SHA512_LEN)
        return pht_error_set_ssl(err, PHT_ECRYPTO, "SHA-512 failed");
    return 0;
}

int pht_chain_digest(const unsigned char *prev, size_t prevlen, const unsigned char *result_hash,
                     unsigned char *out, pht_error *err)
{
    pht_hash *h = pht_hash_new(err);
    if (h == NULL) return err ? err->code : PHT_ENOMEM;
    int rc = pht_hash_update(h, prev, prevlen, err);
    if (rc == 0) rc = pht_hash_update(h, result_hash, PHT_SHA512_LEN, err);
    if (rc == 0) rc = pht_hash_final(h, out, err);
    pht_hash_free(h);
    if (rc != 0) pht_error_prefix(err, "chain digest");
    return rc;
}

/* ---- sha256 of image blobs (hash_private.h) ---------------------------------- */

pht_hash *hash_new_sha256(pht_error *err)
{
    return hash_alloc(KIND_SHA256, NULL, 0, err);
}

int hash_final_sha256(pht_hash *h, char *out, pht_error *err)
{
    unsigned char md[32];
    unsigned int len = 0;
    if (h->finished) return pht_error_set(err, PHT_ESTATE, "sha256: final called twice");
    int rc = behind_stop(h, err);
    h->finished = 1;
    if (rc) return rc;
    if (EVP_DigestFinal_ex(h->md, md, &len) != 1 || len != sizeof md)
        return pht_error_set_ssl(err, PHT_ECRYPTO, "sha256: final failed");
    memcpy(out, "sha256:", 7);
    pht_hex_encode(md, sizeof md, out + 7);
    return 0;
}

int hash_sha256_buf(const void *p, size_t n, char *out, pht_error *err)
{
    pht_hash *h = hash_new_sha256(err);
    if (h == NULL) return err ? err->code : PHT_ECRYPTO;
    int rc = pht_hash_update(h, p, n, err);
    if (rc == 0) rc = hash_final_sha256(h, out, err);
    pht_hash_free(h);
    return rc;
}

int hash_sha256_valid(const char *d)
{
    if (d == NULL || strncmp(d, "sha256:", 7) != 0 || strlen(d) != 71) return 0;
    return strspn(d + 7, "0123456789abcdef") == 64;
}

/* ---- the walk order ---------------------------------------------------------- */

size_t hash_path_common(const char *a, const char *b, size_t n)
{
    /* Deep hostile paths share thousands of leading bytes: compare words. */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y) break;
    }
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

int hash_path_walk_cmpn(const char *a, size_t an, const char *b, size_t bn)
{
    /*
     * Comparing component by component equals a bytewise compare in which
     * '/' (the end of a component) sorts before every other byte: at the
     * first difference, the path whose component ended is the smaller.
     */
    size_t i = hash_path_common(a, b, an < bn ? an : bn);
    unsigned cx = i == an ? 0u : a[i] == '/' ? 1u : (unsigned)(unsigned char)a[i] + 1u;
    unsigned cy = i == bn ? 0u : b[i] == '/' ? 1u : (unsigned)(unsigned char)b[i] + 1u;
    return cx < cy ? -1 : cx > cy ? 1 : 0;
}

int pht_path_walk_cmp(const char *a, const char *b)
{
    return hash_path_walk_cmpn(a, strlen(a), b, strlen(b));
}

static int walk_qsort_cmp(const void *x, const void *y)
{
    return pht_path_walk_cmp(*(const char *const *)x, *(const char *const *)y);
}

void pht_path_walk_sort(const char **paths, size_t n)
{
    if (n > 1) qsort(paths, n, sizeof *paths, walk_qsort_cmp);
}
