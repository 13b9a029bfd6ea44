/*
 * bench_image: memory and time of the daemonless image layer on a large
 * results layer. Writes a docker-archive with one results file of N GiB
 * (streamed), opens it (one indexing pass that hashes the layer), streams
 * the file back, and rewrites the image in place with one more small layer.
 * Run under `/usr/bin/time -v` to read the peak RSS.
 *
 * usage: bench_image [GiB=4] [workdir=$TMPDIR or /tmp] [base docker-archive]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pht/pht.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int die(const char *what, const pht_error *err)
{
    fprintf(stderr, "bench_image: %s: %s\n", what, err->message);
    return 1;
}

int main(int argc, char **argv)
{
    double gib = argc > 1 ? atof(argv[1]) : 4.0;
    const char *work = argc > 2 ? argv[2] : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    const char *base = argc > 3 ? argv[3] : "spec/fixtures/reference-v2/stage1-station_1-post.tar";
    uint64_t size = (uint64_t)(gib * 1024 * 1024 * 1024);
    char ref[4200], path[4096], baseref[4200];
    snprintf(path, sizeof path, "%s/bench_image.%d.tar", work, (int)getpid());
    snprintf(ref, sizeof ref, "docker-archive:%s:bench/train:latest", path);
    snprintf(baseref, sizeof baseref, "docker-archive:%s", base);
    pht_error err;
    pht_image *img;
    pht_image_writer *w;
    pht_image_stream *s;
    pht_image_opts o;
    pht_image_opts_init(&o);
    o.tmpdir = work;
    unsigned char *buf = malloc(65536);
    for (size_t i = 0; i < 65536; i++)
        buf[i] = (unsigned char)(i * 131u + 7u);

    double t0 = now();
    if (pht_image_open(&img, baseref, &o, &err)) return die("open base", &err);
    if (pht_image_writer_new(img, NULL, &w, &err)) return die("writer", &err);
    if (pht_image_writer_add_dir(w, "/opt/pht_results", NULL, &err)) return die("add_dir", &err);
    if (pht_image_writer_begin_file(w, "/opt/pht_results/big.enc", (int64_t)size, NULL, &s, &err))
        return die("begin_file", &err);
    for (uint64_t left = size; left;) {
        size_t n = left < 65536 ? (size_t)left : 65536;
        buf[0]++; /* vary the content a little */
        if (pht_image_stream_write(s, buf, n, &err)) return die("write", &err);
        left -= n;
    }
    if (pht_image_stream_close(s, &err)) return die("stream close", &err);
    pht_image_stream_free(s);
    if (pht_image_writer_commit(w, ref, NULL, &err)) return die("commit", &err);
    pht_image_writer_free(w);
    pht_image_free(img);
    double t1 = now();

    if (pht_image_open(&img, ref, &o, &err)) return die("open", &err);
    double t2 = now();
    pht_image_reader *r;
    if (pht_image_open_file(img, "/opt/pht_results/big.enc", &r, &err))
        return die("open_file", &err);
    uint64_t total = 0;
    size_t got;
    do {
        if (pht_image_reader_read(r, buf, 65536, &got, &err)) return die("read", &err);
        total += got;
    } while (got);
    pht_image_reader_free(r);
    if (total != size) {
        fprintf(stderr, "bench_image: read %llu of %llu bytes\n", (unsigned long long)total,
                (unsigned long long)size);
        return 1;
    }
    double t3 = now();

    if (pht_image_writer_new(img, NULL, &w, &err)) return die("writer 2", &err);
    if (pht_image_writer_add_bytes(w, "/opt/train_config.json", "{}", 2, NULL, &err))
        return die("add_bytes", &err);
    if (pht_image_writer_commit(w, ref, NULL, &err)) return die("rewrite", &err);
    pht_image_writer_free(w);
    pht_image_free(img);
    double t4 = now();

    struct stat st;
    stat(path, &st);
    printf("bench_image: %.2f GiB results file, archive %.2f GiB\n", gib,
           (double)st.st_size / (1024.0 * 1024 * 1024));
    printf("  write image          %7.2f s\n", t1 - t0);
    printf("  open (index, hash)   %7.2f s\n", t2 - t1);
    printf("  stream the file      %7.2f s\n", t3 - t2);
    printf("  rewrite in place     %7.2f s\n", t4 - t3);
    unlink(path);
    free(buf);
    return 0;
}
