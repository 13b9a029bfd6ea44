/*
 * One pass per byte (doc/protocol.md §4, §6): a file is read once and, in the
 * same pass, hashed and encrypted into an image-writer entry (post-run), or
 * decrypted and hashed into one (pre-run). Both sizes are known before the
 * data: a ciphertext is 16 + (n/16 + 1) * 16 bytes, and a plaintext's size
 * comes from the ciphertext's last two blocks, read first (the padding), so
 * the tar header is written up front and nothing spools.
 *
 * The hash runs on a second thread while this one encrypts (or decrypts)
 * and writes (hash_behind, hash.c): the plaintext goes into the hash's own
 * ring of slots of CHUNK bytes and is read from there, so nothing is
 * copied and memory stays flat whatever the size. The thread is the
 * stream's, not the file's: a results tree of many small files keeps both
 * cores busy as one large file does. The ring is wiped when the hash ends.
 * The progress callback only ever runs on the calling thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "fs_private.h"
#include "hash_private.h"
#include "image_private.h"
#include "pht/crypt.h"

/* Bytes per ring slot: small enough that a slot is still in cache when it is written and hashed. */
#define CHUNK (256u << 10)
#define PROGRESS_BYTES (1u << 20) /* report each MiB (or PROGRESS_NS) */
#define PROGRESS_NS 100000000LL

/* ---- the hashing side ---------------------------------------------------------- */

/*
 * Where the plaintext of one file passes: a slot of the hash's own ring when
 * it hashes behind (hash_behind: its thread hashes the slot while this one
 * encrypts or writes it), else one buffer of this file's, hashed inline.
 */
typedef struct ring {
    pht_hash *h; /* NULL: nothing to hash */
    unsigned char *own;
    size_t cap;
    int behind;
} ring;

static int ring_init(ring *r, pht_hash *h, uint64_t size, pht_error *err)
{
    memset(r, 0, sizeof *r);
    r->h = h;
    int rc = h ? hash_behind(h, err) : 0;
    if (rc) return rc;
    r->behind = h != NULL && hash_is_behind(h);
    if (r->behind) {
        r->cap = HASH_SLOT;
        return 0;
    }
    r->cap = size < CHUNK ? (size_t)size + PHT_BLOCK_LEN : CHUNK;
    if ((r->own = malloc(r->cap)) == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    return 0;
}

/* The buffer the caller fills next; it stays readable until the next ring_slot. */
static unsigned char *ring_slot(ring *r)
{
    return r->behind ? hash_slot(r->h) : r->own;
}

/* Hand len bytes of the current buffer to the hash (to its thread, or inline). */
static int ring_publish(ring *r, size_t len, pht_error *err)
{
    if (r->h == NULL || len == 0) return 0;
    if (r->behind) return hash_publish(r->h, len, err);
    return pht_hash_update(r->h, r->own, len, err);
}

/* Wipe and free this file's buffer (the hash's slots are the hash's to wipe). */
static int ring_finish(ring *r, int rc)
{
    if (r->own) OPENSSL_cleanse(r->own, r->cap);
    free(r->own);
    r->own = NULL;
    return rc;
}

/* ---- progress ------------------------------------------------------------------- */

typedef struct progress {
    pht_crypt_progress_fn fn;
    void *ud;
    uint64_t acc;
    long long last_ns;
} progress;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Count n bytes done; report each MiB or 100 ms, and everything at the end. */
static int progress_add(progress *p, uint64_t n, int end, pht_error *err)
{
    if (p->fn == NULL) return 0;
    p->acc += n;
    if (p->acc == 0) return 0;
    if (!end && p->acc < PROGRESS_BYTES) {
        long long t = now_ns();
        if (t - p->last_ns < PROGRESS_NS) return 0;
    }
    uint64_t done = p->acc;
    p->acc = 0;
    p->last_ns = now_ns();
    if (p->fn(p->ud, done) != 0)
        return pht_error_set(err, PHT_ESTATE, "stopped by the progress callback");
    return 0;
}

/* ---- the source: a file on disk or a file of an image ------------------------------ */

typedef struct source {
    int fd;              /* a file on disk, or -1 */
    pht_image_reader *r; /* or a file of an image */
    pht_image *img;      /* that image (for a second pass) */
    const char *name;    /* for messages */
    uint64_t size;
} source;

static int src_open_file(source *s, const char *path, pht_error *err)
{
    *s = (source){.fd = -1, .name = path};
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) return pht_error_set(err, PHT_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(s->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(s->fd);
        s->fd = -1;
        return pht_error_set(err, PHT_EIO, "%s: not a regular file", path);
    }
    s->size = (uint64_t)st.st_size;
    return 0;
}

static int src_open_image(source *s, pht_image *img, const char *path, pht_error *err)
{
    *s = (source){.fd = -1, .img = img, .name = path};
    int rc = pht_image_open_file(img, path, &s->r, err);
    if (rc == 0) s->size = pht_image_reader_size(s->r);
    return rc;
}

static void src_close(source *s)
{
    if (s->fd >= 0) close(s->fd);
    pht_image_reader_free(s->r);
    s->fd = -1;
    s->r = NULL;
}

/* Read exactly len bytes (a short file is an error: it changed while read). */
static int src_read(source *s, unsigned char *p, size_t len, pht_error *err)
{
    while (len > 0) {
        if (s->r) {
            size_t got;
            int rc = pht_image_reader_read(s->r, p, len, &got, err);
            if (rc) return rc;
            if (got == 0) return pht_error_set(err, PHT_EIO, "%s: content ends early", s->name);
            p += got;
            len -= got;
            continue;
        }
        ssize_t n = read(s->fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            return pht_error_set(err, PHT_EIO, "%s: read failed: %s", s->name, strerror(errno));
        if (n == 0)
            return pht_error_set(err, PHT_EIO, "%s: file shrank while it was read", s->name);
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The source must end where its size said. */
static int src_at_end(source *s, pht_error *err)
{
    unsigned char b;
    if (s->r) {
        size_t got;
        int rc = pht_image_reader_read(s->r, &b, 1, &got, err);
        return rc ? rc : got ? pht_error_set(err, PHT_EIO, "%s: longer than its size", s->name) : 0;
    }
    ssize_t n;
    do
        n = read(s->fd, &b, 1);
    while (n < 0 && errno == EINTR);
    if (n < 0) return pht_error_set(err, PHT_EIO, "%s: read failed: %s", s->name, strerror(errno));
    if (n > 0) return pht_error_set(err, PHT_EIO, "%s: file grew while it was read", s->name);
    return 0;
}

/*
 * The last len bytes (len <= size), before the pass: read where they are from
 * a file or a plain layer; a compressed layer is read through once on a
 * second reader.
 */
static int src_tail(source *s, unsigned char *p, size_t len, pht_error *err)
{
    uint64_t from = s->size - len;
    if (s->fd >= 0) return fs_pread_exact(s->fd, p, len, from, s->name, err);
    if (img_reader_pread(s->r, p, len, from, NULL) == 0) return 0;
    pht_image_reader *r2;
    int rc = pht_image_open_file(s->img, s->name, &r2, err);
    unsigned char *buf = rc ? NULL : malloc(CHUNK);
    if (rc == 0 && buf == NULL) rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    uint64_t pos = 0;
    while (rc == 0 && pos < s->size) {
        size_t got;
        size_t want = s->size - pos < CHUNK ? (size_t)(s->size - pos) : CHUNK;
        if ((rc = pht_image_reader_read(r2, buf, want, &got, err)) != 0) break;
        if (got == 0) {
            rc = pht_error_set(err, PHT_EIO, "%s: content ends early", s->name);
            break;
        }
        /* the bytes of [pos, pos+got) that fall in [from, size) */
        if (pos + got > from) {
            uint64_t lo = pos > from ? pos : from;
            memcpy(p + (lo - from), buf + (lo - pos), (size_t)(pos + got - lo));
        }
        pos += got;
    }
    free(buf);
    pht_image_reader_free(r2);
    return rc;
}

/* Write the cipher's output and let a failed stream fail the writer. */
static int put(pht_image_stream *s, const unsigned char *p, size_t n, pht_error *err)
{
    return n ? pht_image_stream_write(s, p, n, err) : 0;
}

static int encrypt_body(source *src, pht_cipher *c, ring *r, pht_image_stream *s,
                        unsigned char *out, progress *pg, pht_error *err)
{
    size_t outlen;
    int rc = 0;
    uint64_t left = src->size;
    while (rc == 0 && left > 0) {
        size_t take = left < r->cap ? (size_t)left : r->cap;
        if (take > CHUNK) take = CHUNK;
        unsigned char *in = ring_slot(r);
        if ((rc = src_read(src, in, take, err)) != 0) break;
        if ((rc = ring_publish(r, take, err)) != 0) break;
        if ((rc = pht_cipher_update(c, in, take, out, &outlen, err)) != 0) break;
        if ((rc = put(s, out, outlen, err)) != 0) break;
        left -= take;
        rc = progress_add(pg, take, 0, err);
    }
    if (rc == 0) rc = src_at_end(src, err);
    if (rc == 0) rc = pht_cipher_final(c, out, &outlen, err);
    if (rc == 0) rc = put(s, out, outlen, err);
    return rc;
}

/* Encrypt src (open) into entry path of w; closes src. */
static int encrypt_source(const pht_symkey *key, source *src, pht_hash *h, pht_image_writer *w,
                          const char *path, const pht_image_attrs *attrs, pht_crypt_progress_fn fn,
                          void *ud, pht_error *err)
{
    uint64_t n = src->size;
    pht_cipher *c = NULL;
    pht_image_stream *s = NULL;
    unsigned char *out = NULL;
    ring r;
    progress pg = {.fn = fn, .ud = ud, .last_ns = now_ns()};
    int rc = ring_init(&r, h, n, err);
    if (rc == 0 && (out = malloc(r.cap + PHT_CIPHER_OVERHEAD)) == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc == 0 && (c = pht_cipher_new_encrypt(key, err)) == NULL)
        rc = err ? err->code : PHT_ECRYPTO;
    if (rc == 0) {
        int64_t csize = (int64_t)(PHT_IV_LEN + (n / PHT_BLOCK_LEN + 1) * PHT_BLOCK_LEN);
        rc = pht_image_writer_begin_file(w, path, csize, attrs, &s, err);
    }
    if (rc == 0) rc = encrypt_body(src, c, &r, s, out, &pg, err);
    rc = ring_finish(&r, rc);
    if (rc == 0) rc = pht_image_stream_close(s, err);
    if (rc == 0) rc = progress_add(&pg, 0, 1, err);
    pht_image_stream_free(s);
    pht_cipher_free(c);
    free(out);
    if (rc != 0) pht_error_prefix(err, "encrypt %s", src->name);
    src_close(src);
    return rc;
}

int pht_encrypt_into(const pht_symkey *key, const char *src, pht_hash *h, pht_image_writer *w,
                     const char *path, const pht_image_attrs *attrs, pht_crypt_progress_fn fn,
                     void *ud, pht_error *err)
{
    if (key == NULL || src == NULL || w == NULL || path == NULL)
        return pht_error_set(err, PHT_EINVAL, "encrypt: key, source, writer or path missing");
    source in;
    int rc = src_open_file(&in, src, err);
    return rc ? rc : encrypt_source(key, &in, h, w, path, attrs, fn, ud, err);
}

int pht_encrypt_image_into(const pht_symkey *key, pht_image *img, const char *src, pht_hash *h,
                           pht_image_writer *w, const char *path, const pht_image_attrs *attrs,
                           pht_crypt_progress_fn fn, void *ud, pht_error *err)
{
    if (key == NULL || img == NULL || src == NULL || w == NULL || path == NULL)
        return pht_error_set(err, PHT_EINVAL,
                             "encrypt: key, image, source, writer or path missing");
    source in;
    int rc = src_open_image(&in, img, src, err);
    if (rc) return pht_error_prefix(err, "encrypt %s", src);
    return encrypt_source(key, &in, h, w, path, attrs, fn, ud, err);
}

/*
 * The plaintext size of the ciphertext in fd (csize bytes): the last block
 * decrypted with the one before it as IV shows the padding. A wrong key or a
 * tampered end fails here, before anything is written.
 */
static int plain_size(const pht_symkey *key, source *src, uint64_t *out, pht_error *err)
{
    uint64_t csize = src->size;
    if (csize < PHT_IV_LEN + PHT_BLOCK_LEN || csize % PHT_BLOCK_LEN != 0)
        return pht_error_set(err, PHT_ECRYPTO,
                             "bad decrypt: %llu bytes is not an IV and whole AES blocks",
                             (unsigned long long)csize);
    unsigned char tail[2 * PHT_BLOCK_LEN], buf[2 * PHT_BLOCK_LEN + PHT_CIPHER_OVERHEAD];
    int rc = src_tail(src, tail, sizeof tail, err);
    if (rc) return rc;
    pht_cipher *c = pht_cipher_new_decrypt(key, err);
    if (c == NULL) return err ? err->code : PHT_ECRYPTO;
    size_t a = 0, b = 0;
    rc = pht_cipher_update(c, tail, sizeof tail, buf, &a, err);
    if (rc == 0) rc = pht_cipher_final(c, buf + a, &b, err);
    pht_cipher_free(c);
    OPENSSL_cleanse(buf, sizeof buf);
    if (rc == 0) *out = csize - PHT_IV_LEN - PHT_BLOCK_LEN + a + b;
    return rc;
}

static int decrypt_body(source *src, uint64_t psize, pht_cipher *c, ring *r, pht_image_stream *s,
                        unsigned char *in, progress *pg, pht_error *err)
{
    size_t outlen;
    int rc = 0;
    uint64_t left = src->size, written = 0;
    /* Read r->cap - PHT_BLOCK_LEN so the output (at most input + one block) fits a slot. */
    size_t step = r->cap > 2 * PHT_BLOCK_LEN ? r->cap - PHT_CIPHER_OVERHEAD : PHT_BLOCK_LEN;
    while (rc == 0 && left > 0) {
        size_t take = left < step ? (size_t)left : step;
        if ((rc = src_read(src, in, take, err)) != 0) break;
        left -= take;
        unsigned char *out = ring_slot(r);
        if ((rc = pht_cipher_update(c, in, take, out, &outlen, err)) != 0) break;
        if (left == 0) {
            size_t fin;
            if ((rc = pht_cipher_final(c, out + outlen, &fin, err)) != 0) break;
            outlen += fin;
        }
        if (written + outlen > psize) {
            rc = pht_error_set(err, PHT_EIO, "%s: file changed while it was read", src->name);
            break;
        }
        if ((rc = ring_publish(r, outlen, err)) != 0) break;
        if ((rc = put(s, out, outlen, err)) != 0) break;
        written += outlen;
        rc = progress_add(pg, outlen, 0, err);
    }
    if (rc == 0) rc = src_at_end(src, err);
    if (rc == 0 && written != psize)
        rc = pht_error_set(err, PHT_EIO, "%s: file changed while it was read", src->name);
    return rc;
}

/* Decrypt src (open) into entry path of w; closes src. */
static int decrypt_source(const pht_symkey *key, source *src, pht_hash *h, pht_image_writer *w,
                          const char *path, const pht_image_attrs *attrs, pht_crypt_progress_fn fn,
                          void *ud, pht_error *err)
{
    uint64_t csize = src->size, psize = 0;
    pht_cipher *c = NULL;
    pht_image_stream *s = NULL;
    unsigned char *in = NULL;
    ring r;
    progress pg = {.fn = fn, .ud = ud, .last_ns = now_ns()};
    int rc = plain_size(key, src, &psize, err);
    int ring_on = rc == 0; /* ring_finish frees what a failed ring_init got */
    /* Slots hold a chunk of plaintext plus the block the decryptor may hold back. */
    if (rc == 0) rc = ring_init(&r, h, csize + PHT_CIPHER_OVERHEAD, err);
    if (rc == 0 && (in = malloc(r.cap)) == NULL)
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc == 0 && (c = pht_cipher_new_decrypt(key, err)) == NULL)
        rc = err ? err->code : PHT_ECRYPTO;
    if (rc == 0) rc = pht_image_writer_begin_file(w, path, (int64_t)psize, attrs, &s, err);
    if (rc == 0) rc = decrypt_body(src, psize, c, &r, s, in, &pg, err);
    if (ring_on) rc = ring_finish(&r, rc);
    if (rc == 0) rc = pht_image_stream_close(s, err);
    if (rc == 0) rc = progress_add(&pg, 0, 1, err);
    pht_image_stream_free(s);
    pht_cipher_free(c);
    free(in);
    if (rc != 0) pht_error_prefix(err, "decrypt %s", src->name);
    src_close(src);
    return rc;
}

int pht_decrypt_into(const pht_symkey *key, const char *src, pht_hash *h, pht_image_writer *w,
                     const char *path, const pht_image_attrs *attrs, pht_crypt_progress_fn fn,
                     void *ud, pht_error *err)
{
    if (key == NULL || src == NULL || w == NULL || path == NULL)
        return pht_error_set(err, PHT_EINVAL, "decrypt: key, source, writer or path missing");
    source in;
    int rc = src_open_file(&in, src, err);
    return rc ? rc : decrypt_source(key, &in, h, w, path, attrs, fn, ud, err);
}

int pht_decrypt_image_into(const pht_symkey *key, pht_image *img, const char *src, pht_hash *h,
                           pht_image_writer *w, const char *path, const pht_image_attrs *attrs,
                           pht_crypt_progress_fn fn, void *ud, pht_error *err)
{
    if (key == NULL || img == NULL || src == NULL || w == NULL || path == NULL)
        return pht_error_set(err, PHT_EINVAL,
                             "decrypt: key, image, source, writer or path missing");
    source in;
    int rc = src_open_image(&in, img, src, err);
    if (rc) return pht_error_prefix(err, "decrypt %s", src);
    return decrypt_source(key, &in, h, w, path, attrs, fn, ud, err);
}
