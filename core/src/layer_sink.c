/*
 * Where the image writer's new layer goes (layer_private.h, layer_sink_*):
 * its bytes are hashed (SHA-256: the diff_id and digest) and written to the
 * layer's file as they come. The caller hashes them, while the bytes it
 * just encrypted or decrypted are still in its core's cache (the writing
 * thread, reading them after the other core made them, hashed them slower:
 * bench/README.md, bench_onepass 2026-12-06). Up to SINK_INLINE_MAX bytes the caller writes
 * them too; past it, a thread of its own writes them, fed through a ring of
 * SINK_SLOTS copies of SINK_SLOT bytes, so the caller never waits in
 * write(2), and no byte is read back.
 *
 * A layer bound for a destination (flush_behind: its commit fsyncs the
 * file, and nothing reads it back soon) is written past the page cache:
 * the thread gathers the bytes in an aligned buffer of SINK_DIRECT bytes
 * and writes them with O_DIRECT from the first SINK_ALIGN boundary on, so
 * the kernel neither copies them into new cache pages nor has them left to
 * write at the fsync; the bytes before that boundary and after the last
 * full block go through the cache. Where the file system refuses O_DIRECT
 * the thread writes through the cache and starts the writeback of every
 * SINK_FLUSH bytes instead (sync_file_range, SYNC_FILE_RANGE_WRITE: it does
 * not wait). Memory: the ring and the buffer, 5 MiB.
 */
#define _GNU_SOURCE /* sync_file_range */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs_private.h"
#include "layer_private.h"

#define SINK_INLINE_MAX (4u << 20) /* a layer up to this size never starts the thread */
#define SINK_SLOT (128u << 10)     /* bytes per slot: the writer's block */
#define SINK_SLOTS 32              /* 4 MiB: as deep as the hash's ring (hash.c, BEHIND_SLOTS) */
#define SINK_FLUSH (16u << 20)     /* writeback started every this many bytes */
#define SINK_ALIGN FS_DIRECT_ALIGN /* offsets, lengths and memory of O_DIRECT writes */
#define SINK_DIRECT (1u << 20)     /* bytes per O_DIRECT write */

struct layer_sink {
    int fd;
    pht_hash *sha;
    int flush_behind;
    uint64_t pos; /* where the next byte lands in fd (its file position) */
    /* the thread, once started */
    int running;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t more, room;
    unsigned char *ring;
    size_t len[SINK_SLOTS];
    unsigned head, count; /* next slot the thread takes; slots filled */
    int done, stop, failed;
    uint64_t flushed; /* writeback started up to here */
    /* O_DIRECT (the thread's): 0 not yet, 1 on, -1 refused; the aligned buffer, its bytes */
    int direct;
    unsigned char *dbuf;
    size_t dlen;
    pht_error why;
};

/* Write n bytes at the file position (either thread; one at a time). */
static int sink_out(layer_sink *s, const void *p, size_t n, pht_error *err)
{
    int rc = fs_write_all(s->fd, p, n, "new layer", err);
    if (rc == 0) s->pos += n;
    return rc;
}

/*
 * Write the first n bytes of the aligned buffer (n a multiple of SINK_ALIGN) with O_DIRECT;
 * where the file system will not, turn it off and write them through the cache.
 */
static int direct_out(layer_sink *s, size_t n, pht_error *err)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(s->fd, s->dbuf + done, n - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EINVAL && s->direct == 1 && fs_set_direct(s->fd, 0) == 0) {
            s->direct = -1;
            return fs_write_all(s->fd, s->dbuf + done, n - done, "new layer", err);
        }
        return pht_error_set(err, PHT_EIO, "new layer: write: %s",
                             w < 0 ? strerror(errno) : "no progress");
    }
    return 0;
}

/* Write out the buffer: what is aligned directly, the rest through the cache (finish). */
static int direct_drain(layer_sink *s, pht_error *err)
{
    size_t whole = s->dlen / SINK_ALIGN * SINK_ALIGN;
    int rc = whole ? direct_out(s, whole, err) : 0;
    if (rc == 0 && s->direct == 1 && fs_set_direct(s->fd, 0) != 0)
        rc = pht_error_set(err, PHT_EIO, "new layer: cannot leave O_DIRECT: %s", strerror(errno));
    s->direct = -1;
    if (rc == 0 && s->dlen > whole)
        rc = fs_write_all(s->fd, s->dbuf + whole, s->dlen - whole, "new layer", err);
    s->dlen = 0;
    return rc;
}

/* One slot's bytes, on the thread: written directly, gathered, or through the cache. */
static int thread_out(layer_sink *s, const unsigned char *p, size_t n, pht_error *err)
{
    if (s->dbuf == NULL) {
        int rc = sink_out(s, p, n, err);
        if (rc == 0 && s->flush_behind && s->pos - s->flushed >= SINK_FLUSH) {
            /* a hint: a file system without it loses nothing */
            (void)sync_file_range(s->fd, (off64_t)s->flushed, (off64_t)(s->pos - s->flushed),
                                  SYNC_FILE_RANGE_WRITE);
            s->flushed = s->pos;
        }
        return rc;
    }
    int rc = 0;
    if (s->direct == 0) {
        /* up to the first aligned offset through the cache, then O_DIRECT */
        size_t pre = (size_t)((SINK_ALIGN - s->pos % SINK_ALIGN) % SINK_ALIGN);
        if (pre > n) pre = n;
        if (pre && (rc = fs_write_all(s->fd, p, pre, "new layer", err)) == 0) {
            s->pos += pre;
            p += pre;
            n -= pre;
        }
        if (rc == 0 && n > 0) {
            if (fs_set_direct(s->fd, 1) == 0) {
                s->direct = 1;
            } else { /* not here: through the cache from now on */
                free(s->dbuf);
                s->dbuf = NULL;
                if ((rc = fs_write_all(s->fd, p, n, "new layer", err)) == 0) s->pos += n;
                return rc;
            }
        }
    }
    while (rc == 0 && n > 0) {
        size_t k = SINK_DIRECT - s->dlen < n ? SINK_DIRECT - s->dlen : n;
        memcpy(s->dbuf + s->dlen, p, k);
        s->dlen += k;
        s->pos += k;
        p += k;
        n -= k;
        if (s->dlen == SINK_DIRECT) {
            rc = s->direct == 1 ? direct_out(s, SINK_DIRECT, err)
                                : fs_write_all(s->fd, s->dbuf, SINK_DIRECT, "new layer", err);
            s->dlen = 0;
        }
    }
    return rc;
}

static void *sink_main(void *arg)
{
    layer_sink *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->count == 0 && !s->done && !s->stop)
            pthread_cond_wait(&s->more, &s->mu);
        if (s->stop) break;
        if (s->count == 0) { /* done: what the buffer still holds */
            pthread_mutex_unlock(&s->mu);
            pht_error e;
            int rc = s->dbuf ? direct_drain(s, &e) : 0;
            pthread_mutex_lock(&s->mu);
            if (rc) {
                s->failed = 1;
                s->why = e;
            }
            break;
        }
        unsigned i = s->head;
        pthread_mutex_unlock(&s->mu);
        pht_error e;
        int rc = thread_out(s, s->ring + (size_t)i * SINK_SLOT, s->len[i], &e);
        pthread_mutex_lock(&s->mu);
        if (rc) {
            s->failed = 1;
            s->why = e;
            pthread_cond_signal(&s->room);
            break;
        }
        s->head = (s->head + 1) % SINK_SLOTS;
        s->count--;
        pthread_cond_signal(&s->room);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int layer_sink_new(layer_sink **out, int fd, pht_hash *sha, int flush_behind, pht_error *err)
{
    *out = NULL;
    layer_sink *s = calloc(1, sizeof *s);
    if (s == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    off_t at = lseek(fd, 0, SEEK_CUR);
    *s = (layer_sink){.fd = fd, .sha = sha, .flush_behind = flush_behind};
    s->pos = s->flushed = at > 0 ? (uint64_t)at : 0;
    *out = s;
    return 0;
}

/* Start the thread; -1 if it cannot be (the caller goes on inline). */
static int sink_start(layer_sink *s)
{
    if ((s->ring = malloc((size_t)SINK_SLOTS * SINK_SLOT)) == NULL) return -1;
    void *d = NULL;
    if (s->flush_behind && posix_memalign(&d, SINK_ALIGN, SINK_DIRECT) == 0) s->dbuf = d;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->more, NULL);
    pthread_cond_init(&s->room, NULL);
    if (pthread_create(&s->th, NULL, sink_main, s) != 0) {
        pthread_cond_destroy(&s->room);
        pthread_cond_destroy(&s->more);
        pthread_mutex_destroy(&s->mu);
        free(s->ring);
        s->ring = NULL;
        free(s->dbuf);
        s->dbuf = NULL;
        return -1;
    }
    s->running = 1;
    return 0;
}

/* The thread's failure, if any (mu held). */
static int sink_failed(layer_sink *s, pht_error *err)
{
    if (!s->failed) return 0;
    if (err) *err = s->why;
    return s->why.code ? s->why.code : PHT_EIO;
}

int layer_sink_put(layer_sink *s, const void *p, size_t n, pht_error *err)
{
    const unsigned char *c = p;
    int rc = pht_hash_update(s->sha, p, n, err); /* here, while the bytes are in this cache */
    if (rc) return rc;
    if (!s->running && s->pos + n > SINK_INLINE_MAX && sink_start(s) != 0) {
        /* no thread: everything inline */
    }
    if (!s->running) return sink_out(s, c, n, err);
    pthread_mutex_lock(&s->mu);
    while (n > 0 && rc == 0) {
        while (s->count == SINK_SLOTS && !s->failed)
            pthread_cond_wait(&s->room, &s->mu);
        if ((rc = sink_failed(s, err))) break;
        size_t k = n < SINK_SLOT ? n : SINK_SLOT;
        unsigned i = (s->head + s->count) % SINK_SLOTS;
        /* the slot is the caller's until count covers it: copy without the lock */
        pthread_mutex_unlock(&s->mu);
        memcpy(s->ring + (size_t)i * SINK_SLOT, c, k);
        pthread_mutex_lock(&s->mu);
        s->len[i] = k;
        s->count++;
        pthread_cond_signal(&s->more);
        c += k;
        n -= k;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Stop the thread: after the ring is written (finish) or at once. */
static int sink_join(layer_sink *s, int finish, pht_error *err)
{
    if (!s->running) return 0;
    pthread_mutex_lock(&s->mu);
    s->done = 1;
    s->stop = !finish;
    pthread_cond_signal(&s->more);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    pthread_cond_destroy(&s->room);
    pthread_cond_destroy(&s->more);
    pthread_mutex_destroy(&s->mu);
    free(s->ring);
    s->ring = NULL;
    if (s->direct == 1)
        fs_set_direct(s->fd, 0); /* stopped: the file is dropped, but leave it usable */
    s->direct = 0;
    free(s->dbuf);
    s->dbuf = NULL;
    s->running = 0;
    return finish ? sink_failed(s, err) : 0;
}

int layer_sink_finish(layer_sink *s, pht_error *err)
{
    return sink_join(s, 1, err);
}

void layer_sink_free(layer_sink *s)
{
    if (s == NULL) return;
    sink_join(s, 0, NULL);
    free(s);
}
