/*
 * Layer blobs as libarchive streams. A blob is a byte range of an open file
 * (a member of a docker-archive, or a whole OCI blob), read with pread in
 * 64 KiB chunks, so one file descriptor serves any number of readers.
 *
 * The indexing pass reads a plain tar layer header by header, skipping file
 * data by offset, and hashes it only when asked to (layer_verify, or
 * verify_layers). A compressed layer chains two readers: a "raw" reader that
 * only removes the compression (gzip, zstd, xz, bzip2), and a tar reader fed
 * from it. Every decompressed byte flows through chain_read, which hashes it
 * (diff_id), counts it against the per-layer cap and so stops a
 * decompression bomb as it inflates; blob_read hashes the stored bytes (the
 * blob digest). A verified compressed layer outside /opt leaves its headers
 * in the index cache (layer_cache.c), from which a later scan of the same
 * blob reads them instead.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "hash_private.h"
#include "layer_private.h"
#include "pht/interrupt.h"

typedef struct blob_src {
    int fd;
    uint64_t off, len, pos;
    pht_hash *sha;           /* when hashing, libarchive must not skip */
    const pht_image_opts *o; /* an open's scan: its progress; else NULL */
    int skipped;             /* the last call skipped: the next read is for a header */
    unsigned char buf[PHT_CHUNK_SIZE];
} blob_src;

/* After a skip, a header scan reads to the next page boundary only (at least a header's
   512 bytes): a layer of many small files is not read whole to find its headers. */
#define SCAN_PAGE 4096u

static la_ssize_t blob_read(struct archive *a, void *ud, const void **out)
{
    blob_src *b = ud;
    uint64_t left = b->len - b->pos;
    *out = b->buf;
    if (left == 0) return 0;
    size_t want = left < PHT_CHUNK_SIZE ? (size_t)left : PHT_CHUNK_SIZE;
    if (b->skipped) {
        size_t page = SCAN_PAGE - (size_t)((b->off + b->pos) % SCAN_PAGE);
        if (page < 512) page += SCAN_PAGE;
        if (page < want) want = page;
        b->skipped = 0;
    }
    if (pht_interrupted()) {
        archive_set_error(a, EINTR, "interrupted (%s)", pht_signal_name(pht_interrupted()));
        return -1;
    }
    ssize_t r;
    do {
        r = pread(b->fd, b->buf, want, (off_t)(b->off + b->pos));
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
        archive_set_error(a, r < 0 ? errno : EIO, "blob read failed: %s",
                          r < 0 ? strerror(errno) : "unexpected end of file");
        return -1;
    }
    b->pos += (uint64_t)r;
    img_progress(b->o, (uint64_t)r);
    if (b->sha && pht_hash_update(b->sha, b->buf, (size_t)r, NULL) != 0) {
        archive_set_error(a, EINVAL, "sha256 of the blob failed");
        return -1;
    }
    return r;
}

static la_int64_t blob_skip(struct archive *a, void *ud, la_int64_t req)
{
    (void)a;
    blob_src *b = ud;
    uint64_t left = b->len - b->pos;
    if (req < 0) return 0;
    if ((uint64_t)req > left) req = (la_int64_t)left;
    b->pos += (uint64_t)req;
    b->skipped = req > 0;
    return req;
}

static void support_filters(struct archive *a)
{
    /* Only in-process decompressors: never spawn external programs. */
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_bzip2(a);
}

static int comp_of(struct archive *a)
{
    switch (archive_filter_code(a, 0)) {
    case ARCHIVE_FILTER_NONE:
        return IMG_COMP_NONE;
    case ARCHIVE_FILTER_GZIP:
        return IMG_COMP_GZIP;
    case ARCHIVE_FILTER_ZSTD:
        return IMG_COMP_ZSTD;
    default:
        return IMG_COMP_OTHER;
    }
}

/* A raw (decompress-only) reader over b; *empty when the blob has no bytes at all. */
static struct archive *raw_open(blob_src *b, const img_layer *l, int *empty, pht_error *err)
{
    struct archive *raw = archive_read_new();
    if (raw == NULL) {
        pht_error_set(err, PHT_ENOMEM, "libarchive: out of memory");
        return NULL;
    }
    support_filters(raw);
    archive_read_support_format_raw(raw);
    archive_read_support_format_empty(raw);
    struct archive_entry *e;
    int r = archive_read_open2(raw, b, NULL, blob_read, NULL, NULL);
    if (r == ARCHIVE_OK) r = archive_read_next_header(raw, &e);
    *empty = r == ARCHIVE_EOF;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN && r != ARCHIVE_EOF) {
        tarsafe_fail(err, PHT_EFORMAT, l, NULL, "cannot read the blob: %s",
                     archive_error_string(raw) ? archive_error_string(raw) : "unknown error");
        archive_read_free(raw);
        return NULL;
    }
    return raw;
}

typedef struct chain {
    struct archive *raw;
    pht_hash *diff_sha;
    uint64_t bytes, cap;
    int over, eof;
    unsigned char buf[PHT_CHUNK_SIZE];
} chain;

static la_ssize_t chain_read(struct archive *a, void *ud, const void **out)
{
    chain *c = ud;
    *out = c->buf;
    if (c->eof) return 0;
    la_ssize_t n = archive_read_data(c->raw, c->buf, PHT_CHUNK_SIZE);
    if (n < 0) {
        const char *m = archive_error_string(c->raw);
        archive_set_error(a, EINVAL, "%s", m ? m : "decompression failed");
        return -1;
    }
    if (n == 0) {
        c->eof = 1;
        return 0;
    }
    c->bytes += (uint64_t)n;
    if (c->bytes > c->cap) {
        c->over = 1;
        archive_set_error(a, EINVAL, "decompressed size over the cap");
        return -1;
    }
    if (c->diff_sha && pht_hash_update(c->diff_sha, c->buf, (size_t)n, NULL) != 0) {
        archive_set_error(a, EINVAL, "sha256 of the layer content failed");
        return -1;
    }
    return n;
}

static int scan_fail(struct archive *tar, const chain *c, const img_layer *l,
                     const pht_image_opts *o, pht_error *err)
{
    if (c && c->over)
        return tarsafe_fail(err, PHT_ELIMIT, l, NULL,
                            "decompressed size exceeds the cap of %llu bytes",
                            (unsigned long long)o->max_layer_bytes);
    const char *m = archive_error_string(tar);
    return tarsafe_fail(err, PHT_EFORMAT, l, NULL, "malformed layer tar: %s",
                        m ? m : "unknown error");
}

/* One header: the caps, cb (may be NULL), and whether it touches /opt. */
static int scan_entry(struct archive_entry *e, uint64_t ordinal, img_layer *l,
                      const pht_image_opts *o, layer_entry_cb cb, void *ud, pht_error *err)
{
    int rc;
    if (ordinal > o->max_entries)
        return tarsafe_fail(err, PHT_ELIMIT, l, NULL, "more than the cap of %llu entries",
                            (unsigned long long)o->max_entries);
    if (archive_entry_size_is_set(e) && archive_entry_size(e) >= 0 &&
        (uint64_t)archive_entry_size(e) > o->max_entry_bytes)
        return tarsafe_fail(err, PHT_ELIMIT, l, archive_entry_pathname(e),
                            "size %lld exceeds the cap of %llu bytes",
                            (long long)archive_entry_size(e),
                            (unsigned long long)o->max_entry_bytes);
    if (cb && (rc = cb(ud, e, ordinal, err))) return rc;
    /* after cb: the name passed tarsafe (a NULL cb re-reads a layer that did) */
    const char *name = archive_entry_pathname(e);
    if (tarsafe_touches(name, IMG_PROTOCOL_DIR)) {
        l->holds_opt = 1;
        if (tarsafe_names_config(name)) l->holds_config = 1;
    }
    return layer_note_outside(l, e, err);
}

int layer_note_outside(img_layer *l, struct archive_entry *e, pht_error *err)
{
    if (l->outside != NULL && !l->outside_dir) return 0;
    char *p;
    const char *why;
    int r = tarsafe_master(e, &p, &why);
    if (r == PHT_ENOMEM) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (r > 0 && (l->outside == NULL || r == 1)) {
        free(l->outside);
        l->outside = p;
        l->outside_why = why;
        l->outside_dir = r == 2;
    } else {
        free(p);
    }
    return 0;
}

void layer_forget_outside(img_layer *l)
{
    free(l->outside);
    l->outside = NULL;
    l->outside_why = NULL;
    l->outside_dir = 0;
}

/* A scan starts afresh: what an earlier one learned goes. */
static void scan_begin(img_layer *l)
{
    l->scan_pos = l->scan_end = IMG_NO_OFFSET;
    l->holds_opt = l->holds_config = l->scanned = 0;
    layer_forget_outside(l);
}

/* Every header of tar (c: the chain, or NULL), each recorded for the cache when rec is set. */
static int scan_entries(struct archive *tar, const chain *c, img_layer *l, const pht_image_opts *o,
                        layer_cache_rec *rec, layer_entry_cb cb, void *ud, pht_error *err)
{
    uint64_t ordinal = 0;
    int rc;
    scan_begin(l);
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(tar, &e);
        /* a plain tar's offsets are the blob's: where this header (or the end) starts */
        uint64_t at = c == NULL ? (uint64_t)archive_read_header_position(tar) : IMG_NO_OFFSET;
        if (r == ARCHIVE_EOF) {
            l->scan_end = at;
            l->scanned = 1;
            return 0;
        }
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return scan_fail(tar, c, l, o, err);
        l->scan_pos = at;
        if ((rc = pht_interrupt_check(err))) return rc;
        if ((rc = scan_entry(e, ++ordinal, l, o, cb, ud, err))) return rc;
        layer_cache_add(rec, e);
        if (archive_read_data_skip(tar) != ARCHIVE_OK) return scan_fail(tar, c, l, o, err);
    }
}

/*
 * A compressed layer whose headers the cache holds: cb sees each of them
 * as a scan would. A first pass reads the whole entry, so one that is
 * malformed, over a cap or names /opt is a miss (PHT_ENOTFOUND) before cb
 * has seen anything. The layer stays unhashed.
 */
static int scan_cached(img_layer *l, const pht_image_opts *o, layer_entry_cb cb, void *ud,
                       pht_error *err)
{
    struct archive_entry *e = archive_entry_new();
    int rc = PHT_ENOTFOUND;
    for (int pass = 0; e && pass < 2; pass++) {
        layer_cache_rd *r = layer_cache_open(l, o);
        if (r == NULL) break;
        uint64_t ordinal = 0;
        int got;
        scan_begin(l);
        rc = 0;
        while (rc == 0 && (got = layer_cache_next(r, e)) == 1)
            rc = scan_entry(e, ++ordinal, l, o, pass ? cb : NULL, ud, err);
        if (rc == 0 && got == 0) {
            l->diff_size = layer_cache_diff_size(r);
            l->scanned = 1;
        }
        layer_cache_close(r);
        if (pass == 0 && (rc || got != 0 || l->holds_opt || l->diff_size > o->max_layer_bytes)) {
            rc = PHT_ENOTFOUND;
            break;
        }
        if (pass == 1 && rc == 0 && got != 0)
            rc = tarsafe_fail(err, PHT_EFORMAT, l, NULL, "the index cache changed while read");
    }
    if (e) archive_entry_free(e);
    return rc;
}

int layer_check_blob(img_layer *l, const char *dg, pht_error *err)
{
    if (l->digest_known && strcmp(dg, l->digest) != 0)
        return tarsafe_fail(err, PHT_EVERIFY, l, NULL,
                            "blob does not match its digest (computed %s)", dg);
    memcpy(l->digest, dg, IMG_DIGEST_MAX);
    l->verified = 1;
    return 0;
}

/* Compare what was computed with what the manifest and config declare; then it is the layer's. */
static int check_digests(img_layer *l, const char *diff, const char *dg, pht_error *err)
{
    if (l->diff_id[0] && strcmp(diff, l->diff_id) != 0)
        return tarsafe_fail(err, PHT_EVERIFY, l, NULL,
                            "content does not match its diff_id (computed %s)", diff);
    int rc = layer_check_blob(l, dg, err);
    if (rc == 0) {
        memcpy(l->diff_id, diff, IMG_DIGEST_MAX);
        l->diff_pending = 0;
    }
    return rc;
}

/*
 * A compressed layer: a tar reader fed by a decompress-only reader. Every
 * byte is read to reach the headers, so both streams are hashed on the way,
 * each on a thread of its own (hash_behind); a layer whose hashing is
 * deferred (defer_hash) is only decompressed and parsed, and left
 * diff_pending.
 */
static int scan_chained(img_layer *l, const pht_image_opts *o, layer_entry_cb cb, void *ud,
                        pht_error *err)
{
    blob_src *b = calloc(1, sizeof *b);
    chain *c = calloc(1, sizeof *c);
    struct archive *tar = NULL;
    layer_cache_rec *rec = NULL;
    int rc = 0;
    if (b == NULL || c == NULL) {
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        goto done;
    }
    *b = (blob_src){.fd = l->fd, .off = l->offset, .len = l->length, .o = o};
    c->cap = o->max_layer_bytes;
    int hash = !l->defer_hash || o->verify_layers;
    if (hash) {
        b->sha = hash_new_sha256(err);
        c->diff_sha = hash_new_sha256(err);
        if (b->sha == NULL || c->diff_sha == NULL) {
            rc = err ? err->code : PHT_ECRYPTO;
            goto done;
        }
        /* each digest on a thread of its own while this one decompresses and parses */
        if ((rc = hash_behind(b->sha, err)) || (rc = hash_behind(c->diff_sha, err))) goto done;
    }
    c->raw = raw_open(b, l, &c->eof, err);
    if (c->raw == NULL) {
        rc = err ? err->code : PHT_EFORMAT;
        goto done;
    }
    l->compression = comp_of(c->raw);
    tar = archive_read_new();
    if (tar == NULL) {
        rc = pht_error_set(err, PHT_ENOMEM, "libarchive: out of memory");
        goto done;
    }
    archive_read_support_format_tar(tar);
    archive_read_support_format_empty(tar);
    if (archive_read_open2(tar, c, NULL, chain_read, NULL, NULL) != ARCHIVE_OK) {
        rc = scan_fail(tar, c, l, o, err);
        goto done;
    }
    rec = hash ? layer_cache_begin(l, o) : NULL;
    if ((rc = scan_entries(tar, c, l, o, rec, cb, ud, err))) goto done;
    /* The tar ends at its end-of-archive blocks; read (and hash) the rest of both streams. */
    const void *dummy;
    while (!c->eof) {
        la_ssize_t n = chain_read(tar, c, &dummy);
        if (n < 0) {
            rc = scan_fail(tar, c, l, o, err);
            goto done;
        }
    }
    if (!hash) {
        l->diff_size = c->bytes;
        l->verified = 0;
        l->diff_pending = 1;
        goto done;
    }
    while (b->pos < b->len) {
        if (blob_read(tar, b, &dummy) < 0) {
            rc = tarsafe_fail(err, PHT_EIO, l, NULL, "%s", archive_error_string(tar));
            goto done;
        }
    }
    char diff[IMG_DIGEST_MAX], dg[IMG_DIGEST_MAX];
    if ((rc = hash_final_sha256(c->diff_sha, diff, err)) ||
        (rc = hash_final_sha256(b->sha, dg, err)))
        goto done;
    if ((rc = check_digests(l, diff, dg, err)) == 0) l->diff_size = c->bytes;
done:
    /* only a verified layer that names nothing under /opt is worth keeping */
    layer_cache_end(rec, l, rc == 0 && !l->holds_opt);
    if (tar) archive_read_free(tar);
    if (c && c->raw) archive_read_free(c->raw);
    if (c) pht_hash_free(c->diff_sha);
    if (b) pht_hash_free(b->sha);
    free(c);
    free(b);
    return rc;
}

/*
 * A plain tar layer: the blob is the tar. Without hashing, file data is
 * skipped by offset, so the pass costs a read per header; with it, every
 * byte goes through one sha256, the blob digest and the diff_id at once.
 */
static int scan_plain(img_layer *l, const pht_image_opts *o, int hash, layer_entry_cb cb, void *ud,
                      pht_error *err)
{
    if (l->length > o->max_layer_bytes)
        return tarsafe_fail(err, PHT_ELIMIT, l, NULL,
                            "decompressed size exceeds the cap of %llu bytes",
                            (unsigned long long)o->max_layer_bytes);
    blob_src *b = calloc(1, sizeof *b);
    struct archive *tar = archive_read_new();
    int rc = 0;
    if (b == NULL || tar == NULL) {
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        goto done;
    }
    *b = (blob_src){.fd = l->fd, .off = l->offset, .len = l->length, .o = o};
    if (hash && (b->sha = hash_new_sha256(err)) == NULL) {
        rc = err ? err->code : PHT_ECRYPTO;
        goto done;
    }
    l->compression = IMG_COMP_NONE;
    archive_read_support_format_tar(tar);
    archive_read_support_format_empty(tar);
    /* a hashing reader must see every byte: no skip callback then */
    if (archive_read_open2(tar, b, NULL, blob_read, hash ? NULL : blob_skip, NULL) != ARCHIVE_OK) {
        rc = scan_fail(tar, NULL, l, o, err);
        goto done;
    }
    if ((rc = scan_entries(tar, NULL, l, o, NULL, cb, ud, err))) goto done;
    l->diff_size = l->length;
    if (!hash) {
        /* unhashed: the blob of a plain tar is its diff, so its digest is the declared diff_id */
        if (!l->digest_known) memcpy(l->digest, l->diff_id, IMG_DIGEST_MAX);
        goto done;
    }
    const void *dummy;
    while (b->pos < b->len) {
        if (blob_read(tar, b, &dummy) < 0) {
            rc = tarsafe_fail(err, PHT_EIO, l, NULL, "%s", archive_error_string(tar));
            goto done;
        }
    }
    char dg[IMG_DIGEST_MAX];
    if ((rc = hash_final_sha256(b->sha, dg, err)) == 0) rc = check_digests(l, dg, dg, err);
done:
    if (tar) archive_read_free(tar);
    if (b) pht_hash_free(b->sha);
    free(b);
    return rc;
}

/* A sink that hashes what a copy of a blob gives it, until *stop is set. */
typedef struct hash_sink {
    pht_hash *sha;
    const int *stop;
} hash_sink;

static int hash_sink_put(void *ud, const void *p, size_t n, pht_error *err)
{
    hash_sink *h = ud;
    if (h->stop && __atomic_load_n(h->stop, __ATOMIC_RELAXED))
        return pht_error_set(err, PHT_EINTR, "stopped");
    return pht_hash_update(h->sha, p, n, err);
}

int layer_hash_blob(const img_layer *l, const int *stop, char *dg, pht_error *err)
{
    hash_sink h = {hash_new_sha256(err), stop};
    if (h.sha == NULL) return err ? err->code : PHT_ECRYPTO;
    int rc = layer_copy_raw(l, hash_sink_put, &h, err);
    if (rc == 0) rc = hash_final_sha256(h.sha, dg, err);
    pht_hash_free(h.sha);
    return rc;
}

int layer_check_plain(img_layer *l, const char *dg, pht_error *err)
{
    return check_digests(l, dg, dg, err);
}

int layer_scan(img_layer *l, const pht_image_opts *o, layer_entry_cb cb, void *ud, pht_error *err)
{
    /* Probe the compression from the first bytes; the scan proper reads from the start. */
    blob_src *b = calloc(1, sizeof *b);
    if (b == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    *b = (blob_src){.fd = l->fd, .off = l->offset, .len = l->length};
    int empty = 0;
    struct archive *raw = raw_open(b, l, &empty, err);
    int comp = raw ? comp_of(raw) : IMG_COMP_NONE;
    if (raw) archive_read_free(raw);
    free(b);
    if (raw == NULL) return err ? err->code : PHT_EFORMAT;
    if (comp != IMG_COMP_NONE) {
        l->compression = comp;
        int rc = o->verify_layers ? PHT_ENOTFOUND : scan_cached(l, o, cb, ud, err);
        return rc == PHT_ENOTFOUND ? scan_chained(l, o, cb, ud, err) : rc;
    }
    return scan_plain(l, o, o->verify_layers || !l->diff_id[0], cb, ud, err);
}

int layer_verify(img_layer *l, const pht_image_opts *o, pht_error *err)
{
    if (l->verified && !l->diff_pending) return 0;
    pht_image_opts all = *o;
    all.verify_layers = 1;
    return layer_scan(l, &all, NULL, NULL, err);
}

struct archive *layer_tar_open(const img_layer *l, void **state, pht_error *err)
{
    blob_src *b = calloc(1, sizeof *b);
    struct archive *a = archive_read_new();
    if (b == NULL || a == NULL) {
        free(b);
        if (a) archive_read_free(a);
        pht_error_set(err, PHT_ENOMEM, "out of memory");
        return NULL;
    }
    *b = (blob_src){.fd = l->fd, .off = l->offset, .len = l->length};
    support_filters(a);
    archive_read_support_format_tar(a);
    archive_read_support_format_empty(a);
    if (archive_read_open2(a, b, NULL, blob_read, blob_skip, NULL) != ARCHIVE_OK) {
        tarsafe_fail(err, PHT_EFORMAT, l, NULL, "cannot open the layer: %s",
                     archive_error_string(a));
        archive_read_free(a);
        free(b);
        return NULL;
    }
    *state = b;
    return a;
}

void layer_tar_close(struct archive *a, void *state)
{
    if (a) archive_read_free(a);
    free(state);
}

int layer_copy_raw(const img_layer *l, img_sink sink, void *ud, pht_error *err)
{
    unsigned char *buf = malloc(PHT_CHUNK_SIZE);
    if (buf == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    uint64_t pos = 0;
    int rc = 0;
    while (pos < l->length && rc == 0) {
        uint64_t left = l->length - pos;
        size_t want = left < PHT_CHUNK_SIZE ? (size_t)left : PHT_CHUNK_SIZE;
        if ((rc = pht_interrupt_check(err))) break;
        ssize_t r = pread(l->fd, buf, want, (off_t)(l->offset + pos));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            rc = tarsafe_fail(err, PHT_EIO, l, NULL, "read failed: %s",
                              r < 0 ? strerror(errno) : "unexpected end of file");
            break;
        }
        rc = sink(ud, buf, (size_t)r, err);
        pos += (uint64_t)r;
    }
    free(buf);
    return rc;
}

int layer_copy_diff(const img_layer *l, const pht_image_opts *o, img_sink sink, void *ud,
                    pht_error *err)
{
    if (l->compression == IMG_COMP_NONE) return layer_copy_raw(l, sink, ud, err);
    blob_src *b = calloc(1, sizeof *b);
    unsigned char *buf = malloc(PHT_CHUNK_SIZE);
    struct archive *raw = NULL;
    int rc = 0;
    if (b == NULL || buf == NULL) {
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
        goto done;
    }
    *b = (blob_src){.fd = l->fd, .off = l->offset, .len = l->length};
    int empty = 0;
    raw = raw_open(b, l, &empty, err);
    if (raw == NULL) {
        rc = err ? err->code : PHT_EFORMAT;
        goto done;
    }
    uint64_t total = 0;
    while (!empty) {
        if ((rc = pht_interrupt_check(err))) goto done;
        la_ssize_t n = archive_read_data(raw, buf, PHT_CHUNK_SIZE);
        if (n == 0) break;
        if (n < 0) {
            rc = tarsafe_fail(err, PHT_EFORMAT, l, NULL, "decompression failed: %s",
                              archive_error_string(raw));
            goto done;
        }
        total += (uint64_t)n;
        if (total > l->diff_size || total > o->max_layer_bytes) {
            rc = tarsafe_fail(err, PHT_EFORMAT, l, NULL, "layer changed since it was indexed");
            goto done;
        }
        if ((rc = sink(ud, buf, (size_t)n, err))) goto done;
    }
    if (total != l->diff_size)
        rc = tarsafe_fail(err, PHT_EFORMAT, l, NULL, "layer changed since it was indexed");
done:
    if (raw) archive_read_free(raw);
    free(buf);
    free(b);
    return rc;
}

void layer_clear(img_layer *l)
{
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    free(l->created_by);
    free(l->comment);
    free(l->outside);
    l->created_by = l->comment = l->outside = NULL;
}

const char *layer_media_type(int c)
{
    switch (c) {
    case IMG_COMP_GZIP:
        return "application/vnd.oci.image.layer.v1.tar+gzip";
    case IMG_COMP_ZSTD:
        return "application/vnd.oci.image.layer.v1.tar+zstd";
    default:
        return "application/vnd.oci.image.layer.v1.tar";
    }
}

int layer_tar_file_header(struct archive *a, const char *name, uint64_t size)
{
    struct archive_entry *e = archive_entry_new();
    if (e == NULL) return PHT_ENOMEM;
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)size);
    int r = archive_write_header(a, e);
    archive_entry_free(e);
    return r == ARCHIVE_OK ? 0 : PHT_EIO;
}
