/*
 * The open's digest checks (doc/images.md, "What an open verifies"): the
 * layers whose bytes the protocol reads are hashed whole and compared with
 * the diff_ids (and digests) the config and manifest declare. A compressed
 * layer was hashed as it was scanned; a plain one was scanned for its
 * headers only and is hashed here, its blob read straight (layer_hash_blob).
 *
 * With opts.verify_behind, the plain layers are hashed on a thread of their
 * own while the caller goes on (reading, hashing and encrypting the same
 * bytes on the other core): pht_image_verified waits for the thread and
 * returns the verdict, and so do every commit of a writer on the image
 * (before anything is written where the reference points) and the
 * master-image check. Until then the bytes read from those layers are not
 * known to be the image's. The thread only reads the layers' files; what
 * it computed is compared and recorded in the waiting thread.
 *
 * A run's compressed layer whose scan defers its hashing (layer_private.h,
 * defer_hash) gets a thread of its own as its scan starts
 * (img_verify_early), so its blob is hashed while the open decompresses
 * and parses it; its verdict compares the digest only. An image has a list
 * of such threads; the verdict is the first failing one's.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "image_private.h"

typedef struct img_behind {
    struct img_behind *next; /* the image's threads, in the order they started */
    pthread_t th;
    int stop;        /* set (atomically) to end the thread early */
    size_t n, *idx;  /* the layers to hash, by index */
    img_layer *copy; /* where their bytes are (fd, offset, length), the thread's own */
    char (*dg)[IMG_DIGEST_MAX];
    int rc; /* the thread's: a read or hash failure */
    pht_error why;
    int waited, verdict; /* after img_verify_wait: its result, returned again */
    pht_error vwhy;
} img_behind;

static void *behind_main(void *arg)
{
    img_behind *b = arg;
    /* the caller reads the same bytes at once, often file by file from their ends: have the
       kernel read every layer ahead, in order, rather than as each read misses */
    for (size_t k = 0; k < b->n; k++)
        posix_fadvise(b->copy[k].fd, (off_t)b->copy[k].offset, (off_t)b->copy[k].length,
                      POSIX_FADV_WILLNEED);
    for (size_t k = 0; k < b->n && b->rc == 0; k++)
        b->rc = layer_hash_blob(&b->copy[k], &b->stop, b->dg[k], &b->why);
    return NULL;
}

/* Compare what the thread (or verify_plain) computed of layer l's blob with what it declares. */
static int check_hashed(img_layer *l, const char *dg, pht_error *err)
{
    l->hashing_behind = 0;
    /* a plain tar's blob is its diff; a compressed one's hash speaks for its digest only */
    return l->compression == IMG_COMP_NONE ? layer_check_plain(l, dg, err)
                                           : layer_check_blob(l, dg, err);
}

/* Start a thread hashing the blobs of layers idx[0..n): 0 and idx is its, or -1 (no thread). */
static int start_behind(pht_image *img, size_t *idx, size_t n)
{
    img_behind *b = calloc(1, sizeof *b);
    char(*dg)[IMG_DIGEST_MAX] = b ? calloc(n, sizeof *dg) : NULL;
    img_layer *copy = dg ? calloc(n, sizeof *copy) : NULL;
    if (copy) {
        for (size_t k = 0; k < n; k++) {
            const img_layer *l = &img->layers[idx[k]];
            copy[k] = (img_layer){.fd = l->fd, .offset = l->offset, .length = l->length};
            memcpy(copy[k].digest, l->digest, IMG_DIGEST_MAX);
        }
        *b = (img_behind){.n = n, .idx = idx, .copy = copy, .dg = dg};
        if (pthread_create(&b->th, NULL, behind_main, b) == 0) {
            img_behind **tail = &img->behind;
            while (*tail)
                tail = &(*tail)->next;
            *tail = b;
            for (size_t k = 0; k < n; k++)
                img->layers[idx[k]].hashing_behind = 1;
            return 0;
        }
    }
    free(copy);
    free(dg);
    free(b);
    return -1;
}

/* Hash the blobs of layers idx[0..n) now, or (behind) start the thread; idx becomes the thread's.
 */
static int verify_plain(pht_image *img, size_t *idx, size_t n, int behind, pht_error *err)
{
    if (behind && start_behind(img, idx, n) == 0) return 0;
    int rc = 0; /* no thread: hash them now */
    for (size_t k = 0; k < n && rc == 0; k++) {
        char dg[IMG_DIGEST_MAX];
        img_layer *l = &img->layers[idx[k]];
        if ((rc = layer_hash_blob(l, NULL, dg, err)) == 0) rc = check_hashed(l, dg, err);
    }
    free(idx);
    return rc;
}

void img_verify_early(pht_image *img, size_t i)
{
    size_t *idx = malloc(sizeof *idx);
    if (idx == NULL || img->layers[i].fd < 0 || img->layers[i].hashing_behind) {
        free(idx);
        return;
    }
    idx[0] = i;
    if (start_behind(img, idx, 1) != 0) free(idx); /* the open's own check will do */
}

int img_verify_used(pht_image *img, const unsigned char *need, pht_error *err)
{
    size_t *idx = calloc(img->nlayers + 1, sizeof *idx), n = 0;
    if (idx == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < img->nlayers && rc == 0; i++) {
        img_layer *l = &img->layers[i];
        if (!need[i] || l->verified || l->hashing_behind) continue;
        /* a plain tar, or a run's layer whose scan deferred its hashing: a read of its blob */
        if ((l->compression == IMG_COMP_NONE || l->diff_pending) && l->fd >= 0)
            idx[n++] = i;
        else
            rc = layer_verify(l, &img->opts, err);
    }
    if (rc || n == 0) {
        free(idx);
        return rc;
    }
    return verify_plain(img, idx, n, img->opts.verify_behind, err);
}

int img_verify_wait(pht_image *img, pht_error *err)
{
    for (img_behind *b = img->behind; b; b = b->next) {
        if (!b->waited) {
            pthread_join(b->th, NULL);
            b->waited = 1;
            b->verdict = b->rc;
            b->vwhy = b->why;
            for (size_t k = 0; k < b->n && b->verdict == 0; k++)
                b->verdict = check_hashed(&img->layers[b->idx[k]], b->dg[k], &b->vwhy);
            if (b->verdict) pht_error_prefix(&b->vwhy, "%.200s", pht_image_ref_string(img->ref));
        }
        if (b->verdict) {
            if (err) *err = b->vwhy;
            return b->verdict;
        }
    }
    return 0;
}

void img_verify_end(pht_image *img)
{
    while (img->behind) {
        img_behind *b = img->behind;
        img->behind = b->next;
        if (!b->waited) {
            __atomic_store_n(&b->stop, 1, __ATOMIC_RELAXED);
            pthread_join(b->th, NULL);
        }
        for (size_t k = 0; k < b->n; k++)
            img->layers[b->idx[k]].hashing_behind = 0;
        free(b->idx);
        free(b->copy);
        free(b->dg);
        free(b);
    }
}

int pht_image_verified(pht_image *img, pht_error *err)
{
    return img_verify_wait(img, err);
}
