/*
 * Where the image writer's new layer goes (layer_private.h, layer_sink_*):
 * its bytes are written to the layer's file and hashed (SHA-256: the
 * diff_id and digest) as they come. Up to SINK_INLINE_MAX bytes that
 * happens in the caller; past it, a thread of its own takes over both, fed
 * through a ring of SINK_SLOTS copies of SINK_SLOT bytes, so the caller's
 * thread (which also encrypts or decrypts) neither waits in write(2) nor
 * hashes, and no byte is read back. With flush_behind, the thread also
 * starts the writeback of every SINK_FLUSH bytes it has written
 * (sync_file_range, SYNC_FILE_RANGE_WRITE: it does not wait), so the
 * commit's fsync finds little left to write. Memory: the ring, 1 MiB.
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
#define SINK_SLOTS 8
#define SINK_FLUSH (16u << 20) /* writeback started every this many bytes */

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
    pht_error why;
};

/* Write and hash n bytes at the file position (either thread; one at a time). */
static int sink_out(layer_sink *s, const void *p, size_t n, pht_error *err)
{
    int rc = fs_write_all(s->fd, p, n, "new layer", err);
    if (rc == 0) rc = pht_hash_update(s->sha, p, n, err);
    if (rc == 0) s->pos += n;
    return rc;
}

static void *sink_main(void *arg)
{
    layer_sink *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->count == 0 && !s->done && !s->stop)
            pthread_cond_wait(&s->more, &s->mu);
        if (s->stop || s->count == 0) break;
        unsigned i = s->head;
        pthread_mutex_unlock(&s->mu);
        pht_error e;
        int rc = sink_out(s, s->ring + (size_t)i * SINK_SLOT, s->len[i], &e);
        if (rc == 0 && s->flush_behind && s->pos - s->flushed >= SINK_FLUSH) {
            /* a hint: a file system without it loses nothing */
            (void)sync_file_range(s->fd, (off64_t)s->flushed, (off64_t)(s->pos - s->flushed),
                                  SYNC_FILE_RANGE_WRITE);
            s->flushed = s->pos;
        }
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
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->more, NULL);
    pthread_cond_init(&s->room, NULL);
    if (pthread_create(&s->th, NULL, sink_main, s) != 0) {
        pthread_cond_destroy(&s->room);
        pthread_cond_destroy(&s->more);
        pthread_mutex_destroy(&s->mu);
        free(s->ring);
        s->ring = NULL;
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
    if (!s->running && s->pos + n > SINK_INLINE_MAX && sink_start(s) != 0) {
        /* no thread: everything inline */
    }
    if (!s->running) return sink_out(s, c, n, err);
    int rc = 0;
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
