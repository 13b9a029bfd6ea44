/*
 * Throughput of libpht's streaming crypto on a large generated stream
 * (default 2048 MiB), in constant memory:
 *   1. stream API: SHA-512 + AES-256-CBC encrypt of generated chunks (no disk);
 *   2. file API: pht_encrypt_file, pht_hash_update_file, pht_decrypt_file on a
 *      temporary file, checking the decrypted file hashes like the original.
 * Usage: bench_stream [MiB] [tmpdir]. Rates are in MB/s (10^6 bytes), the unit
 * of `openssl speed`. Run it under /usr/bin/time -v for the peak RSS.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "pht/pht.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *what, unsigned long long bytes, double secs)
{
    printf("%-44s %8.1f MB/s  (%llu bytes in %.2f s)\n", what, (double)bytes / 1e6 / secs, bytes,
           secs);
    fflush(stdout);
}

static int fail(const char *what, const pht_error *err)
{
    fprintf(stderr, "bench_stream: %s: %s\n", what, err->message);
    return 1;
}

/* The next generated chunk: fixed random bytes stamped with the chunk number. */
static void next_chunk(unsigned char *buf, unsigned long long n)
{
    memcpy(buf, &n, sizeof n);
}

int main(int argc, char **argv)
{
    unsigned long long mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 2048;
    const char *tmp = argc > 2 ? argv[2] : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mib == 0) {
        fprintf(stderr, "usage: bench_stream [MiB] [tmpdir]\n");
        return 2;
    }
    const unsigned long long total = mib * 1024 * 1024;
    const unsigned long long chunks = total / PHT_CHUNK_SIZE;
    pht_error err;
    unsigned char *in = malloc(PHT_CHUNK_SIZE), *out = malloc(PHT_CHUNK_SIZE + PHT_CIPHER_OVERHEAD);
    if (in == NULL || out == NULL) return 1;
    if (pht_random_bytes(in, PHT_CHUNK_SIZE, &err) != 0) return fail("random", &err);
    pht_symkey *key = pht_symkey_new(&err);
    if (key == NULL) return fail("key", &err);
    printf("libpht %s, %llu MiB stream, %d-byte chunks\n", pht_version_string(), mib,
           PHT_CHUNK_SIZE);

    /* 1. Stream API: hash and encrypt every chunk, discard the ciphertext. */
    pht_hash *h = pht_hash_new(&err);
    pht_cipher *c = pht_cipher_new_encrypt(key, &err);
    if (h == NULL || c == NULL) return fail("stream setup", &err);
    size_t n = 0;
    unsigned long long ctbytes = 0;
    double t0 = now();
    for (unsigned long long i = 0; i < chunks; i++) {
        next_chunk(in, i);
        if (pht_hash_update(h, in, PHT_CHUNK_SIZE, &err) != 0) return fail("hash", &err);
        if (pht_cipher_update(c, in, PHT_CHUNK_SIZE, out, &n, &err) != 0)
            return fail("encrypt", &err);
        ctbytes += n;
    }
    if (pht_cipher_final(c, out, &n, &err) != 0) return fail("encrypt final", &err);
    ctbytes += n;
    unsigned char plain_md[PHT_SHA512_LEN], md[PHT_SHA512_LEN];
    if (pht_hash_final(h, plain_md, &err) != 0) return fail("hash final", &err);
    report("stream: SHA-512 + AES-256-CBC encrypt", total, now() - t0);
    pht_hash_free(h);
    pht_cipher_free(c);
    if (ctbytes != total + PHT_IV_LEN + PHT_BLOCK_LEN) {
        fprintf(stderr, "bench_stream: unexpected ciphertext size %llu\n", ctbytes);
        return 1;
    }

    /* 2. File API on a temporary file of the same stream. */
    char plain[4096], enc[4096], dec[4096];
    snprintf(plain, sizeof plain, "%s/bench_stream.%ld.plain", tmp, (long)getpid());
    snprintf(enc, sizeof enc, "%s/bench_stream.%ld.enc", tmp, (long)getpid());
    snprintf(dec, sizeof dec, "%s/bench_stream.%ld.dec", tmp, (long)getpid());
    int fd = open(plain, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        fprintf(stderr, "bench_stream: %s: %s\n", plain, strerror(errno));
        return 1;
    }
    for (unsigned long long i = 0; i < chunks; i++) {
        next_chunk(in, i);
        if (write(fd, in, PHT_CHUNK_SIZE) != PHT_CHUNK_SIZE) {
            fprintf(stderr, "bench_stream: write %s: %s\n", plain, strerror(errno));
            return 1;
        }
    }
    close(fd);

    int rc = 0;
    t0 = now();
    if (pht_encrypt_file(key, plain, enc, &err) != 0) rc = fail("encrypt_file", &err);
    if (rc == 0) report("file: pht_encrypt_file", total, now() - t0);
    unlink(plain);

    h = pht_hash_new(&err);
    t0 = now();
    if (rc == 0 && pht_hash_update_file(h, enc, &err) != 0) rc = fail("hash_update_file", &err);
    if (rc == 0 && pht_hash_final(h, md, &err) != 0) rc = fail("hash final", &err);
    if (rc == 0) report("file: pht_hash_update_file (ciphertext)", total, now() - t0);
    pht_hash_free(h);

    t0 = now();
    if (rc == 0 && pht_decrypt_file(key, enc, dec, &err) != 0) rc = fail("decrypt_file", &err);
    if (rc == 0) report("file: pht_decrypt_file", total, now() - t0);
    unlink(enc);

    h = pht_hash_new(&err);
    if (rc == 0 && (pht_hash_update_file(h, dec, &err) != 0 || pht_hash_final(h, md, &err) != 0))
        rc = fail("hash of decrypted file", &err);
    pht_hash_free(h);
    unlink(dec);
    if (rc == 0 && memcmp(md, plain_md, sizeof md) != 0) {
        fprintf(stderr, "bench_stream: decrypted file differs from the stream\n");
        rc = 1;
    }
    if (rc == 0) printf("round trip: decrypted file has the stream's SHA-512\n");

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS (getrusage): %ld KiB\n", ru.ru_maxrss);
    pht_symkey_free(key);
    free(in);
    free(out);
    return rc;
}
