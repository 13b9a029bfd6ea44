/*
 * Shared by libpht's libFuzzer targets (fuzz/README.md): a scratch directory
 * per process, removing trees, exercising an opened image the way the
 * stock workflows do (walk, stat, read, extract), and splitting an input
 * into parts ("\n@@\n" between them) for the targets that need several.
 */
#ifndef PHT_FUZZ_COMMON_H
#define PHT_FUZZ_COMMON_H


#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pht/pht.h"

static char fz_base[256];

static inline int fz_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(p) != 0) {
        chmod(p, 0700);
        remove(p);
    }
    return 0;
}

/* Remove the tree at path (directories first made writable when needed). */
static inline void fz_rm_rf(const char *path)
{
    nftw(path, fz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void fz_cleanup(void)
{
    if (fz_base[0]) fz_rm_rf(fz_base);
}

/* The process's scratch directory, made on first use and removed at exit. */
static const char *fz_tmp(void)
{
    if (fz_base[0] == '\0') {
        const char *t = getenv("TMPDIR");
        snprintf(fz_base, sizeof fz_base, "%s/pht-fuzz.XXXXXX", t && t[0] ? t : "/tmp");
        if (mkdtemp(fz_base) == NULL) abort();
        atexit(fz_cleanup);
    }
    return fz_base;
}

/* Image caps small enough that one input costs milliseconds. */
static inline void fz_image_opts(pht_image_opts *o)
{
    pht_image_opts_init(o);
    o->tmpdir = fz_tmp();
    o->max_entries = 20000;
    o->max_entry_bytes = 4u << 20;
    o->max_layer_bytes = 16u << 20;
    o->max_path_bytes = 4u << 20;
}

typedef struct fz_walk {
    pht_image *img;
    size_t files;
    size_t bytes;
} fz_walk;

/* Read each regular file (and hard link) the walk meets, a few at most. */
static inline int fz_on_entry(void *ud, const char *rel, const pht_image_stat *st)
{
    fz_walk *w = ud;
    pht_error err;
    pht_image_stat again;
    char path[8192];
    (void)rel;
    snprintf(path, sizeof path, "/%s", st->path);
    pht_image_stat_path(w->img, path, &again, &err);
    if ((st->type != PHT_IMAGE_FILE && st->type != PHT_IMAGE_HARDLINK) || w->files >= 64) return 0;
    w->files++;
    pht_image_reader *r = NULL;
    if (pht_image_open_file(w->img, path, &r, &err) != 0) return 0;
    char buf[16384];
    size_t got;
    while (w->bytes < (4u << 20) && pht_image_reader_read(r, buf, sizeof buf, &got, &err) == 0 &&
           got > 0)
        w->bytes += got;
    pht_image_reader_free(r);
    return 0;
}

/* Open ref; walk it, stat and read its files; with extract, extract / and remove it. */
static inline void fz_exercise_image(const char *ref, int extract)
{
    pht_image_opts o;
    fz_image_opts(&o);
    pht_image *img = NULL;
    pht_error err;
    if (pht_image_open(&img, ref, &o, &err) != 0) return;
    size_t n = pht_image_layer_count(img);
    for (size_t i = 0; i < n; i++) {
        pht_image_layer l;
        pht_image_layer_info(img, i, &l, &err);
    }
    fz_walk w = {.img = img};
    pht_image_walk(img, "/", 1, fz_on_entry, &w, &err);
    pht_image_stat st;
    pht_image_stat_path(img, "/opt", &st, &err);
    if (extract) {
        char dest[320];
        snprintf(dest, sizeof dest, "%s/x", fz_tmp());
        pht_image_extract(img, "/", dest, &err);
        fz_rm_rf(dest);
    }
    pht_image_free(img);
}

/* Split data at "\n@@\n" into at most max parts (NUL-terminated copies). Returns the count. */
static inline size_t fz_split(const uint8_t *data, size_t size, char **parts, size_t *lens, size_t max)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; n + 1 < max && i + 4 <= size; i++) {
        if (memcmp(data + i, "\n@@\n", 4) == 0) {
            lens[n] = i - start;
            parts[n] = malloc(lens[n] + 1);
            memcpy(parts[n], data + start, lens[n]);
            parts[n][lens[n]] = '\0';
            n++;
            start = i + 4;
            i += 3;
        }
    }
    lens[n] = size - start;
    parts[n] = malloc(lens[n] + 1);
    memcpy(parts[n], data + start, lens[n]);
    parts[n][lens[n]] = '\0';
    return n + 1;
}

static inline void fz_free_parts(char **parts, size_t n)
{
    for (size_t i = 0; i < n; i++) free(parts[i]);
}

#endif
