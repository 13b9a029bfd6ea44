/*
 * Writing images: a new layer (opaque directory, whiteout, streamed files of
 * known and unknown size), rebase onto the first N layers, several tags in
 * one docker-archive, OCI layout output, kept layers copied by range on one
 * file system and across two, writer misuse, the results hash of
 * encrypt_into on its own thread, and the progress functions of opens,
 * extracts, writers and commits.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static char work[1024];

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[65536];
    size_t n;
    CHECK(a && b);
    if (!a || !b) return;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

/* A writable copy of the reference stage stage (a file of reference-v2/) in work as name; ref
 * gets its docker-archive reference. */
static void stage_copy(const char *stage, const char *name, char *ref, size_t cap)
{
    char src[1200], path[1200];
    snprintf(src, sizeof src, "%s/reference-v2/%s", test_fixtures(), stage);
    snprintf(path, sizeof path, "%s/%s", work, name);
    copy_file(src, path);
    snprintf(ref, cap, "docker-archive:%s", path);
}

static char *slurp(pht_image *img, const char *path, size_t *len)
{
    pht_image_reader *r;
    pht_error err;
    static char buf[65536];
    *len = 0;
    CHECK_OK(pht_image_open_file(img, path, &r, &err), &err);
    if (r == NULL) return buf;
    size_t got;
    while (pht_image_reader_read(r, buf + *len, sizeof buf - 1 - *len, &got, &err) == 0 && got)
        *len += got;
    buf[*len] = '\0';
    pht_image_reader_free(r);
    return buf;
}

static int count_cb(void *ud, const char *rel, const pht_image_stat *st)
{
    (void)rel;
    (void)st;
    (*(int *)ud)++;
    return 0;
}

static void test_new_layer(void)
{
    char path[1200], ref[1300];
    stage_copy("stage1-station_1-post.tar", "train.tar", ref, sizeof ref);
    snprintf(path, sizeof path, "%s/train.tar", work);
    pht_error err;
    pht_image *img;
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    pht_image_writer *w;
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    pht_image_attrs at;
    pht_image_attrs_init(&at);
    at.opaque = 1;
    at.mtime = 1700000000;
    CHECK_OK(pht_image_writer_add_dir(w, "/opt/pht_results", &at, &err), &err);
    at.opaque = 0;
    at.mode = 0600;
    at.uid = 1000;
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/pht_results/new.txt", "hello\n", 6, &at, &err),
             &err);
    CHECK_OK(pht_image_writer_whiteout(w, "/opt/user_sym_key.key", &err), &err);
    pht_image_stream *s;
    CHECK_OK(pht_image_writer_begin_file(w, "/opt/pht_results/known.bin", 10, NULL, &s, &err),
             &err);
    CHECK_CODE(pht_image_writer_add_bytes(w, "/x", "x", 1, NULL, &err), PHT_ESTATE, &err);
    CHECK_OK(pht_image_stream_write(s, "01234", 5, &err), &err);
    CHECK_OK(pht_image_stream_write(s, "56789", 5, &err), &err);
    CHECK_OK(pht_image_stream_close(s, &err), &err);
    pht_image_stream_free(s);
    CHECK_OK(pht_image_writer_begin_file(w, "opt/pht_results/spooled.txt", -1, NULL, &s, &err),
             &err);
    CHECK_OK(pht_image_stream_write(s, "abc", 3, &err), &err);
    CHECK_OK(pht_image_stream_close(s, &err), &err);
    pht_image_stream_free(s);
    CHECK_CODE(pht_image_writer_add_dir(w, "/opt/../etc", NULL, &err), PHT_EUNSAFE, &err);
    const char *tags[] = {"pht-bench/ref-0:copy"};
    pht_image_commit_opts co = {
        .tags = tags, .ntags = 1, .created_by = "pht post-run", .comment = "c1"};
    CHECK_OK(pht_image_writer_commit(w, ref, &co, &err), &err);
    CHECK_CODE(pht_image_writer_add_bytes(w, "/y", "y", 1, NULL, &err), PHT_ESTATE, &err);
    pht_image_writer_free(w);
    pht_image_free(img);

    snprintf(ref, sizeof ref, "docker-archive:%s:pht-bench/ref-0:copy", path);
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    if (img == NULL) return;
    CHECK(pht_image_layer_count(img) == 4);
    pht_image_layer li;
    CHECK_OK(pht_image_layer_info(img, 3, &li, &err), &err);
    CHECK(li.created_by && strcmp(li.created_by, "pht post-run") == 0);
    CHECK(li.comment && strcmp(li.comment, "c1") == 0);
    int n = 0;
    CHECK_OK(pht_image_walk(img, "/opt/pht_results", 1, count_cb, &n, &err), &err);
    CHECK(n == 3); /* opaque: only the new layer's files */
    pht_image_stat st;
    CHECK_CODE(pht_image_stat_path(img, "/opt/user_sym_key.key", &st, &err), PHT_ENOTFOUND, &err);
    CHECK_OK(pht_image_stat_path(img, "/opt/pht_results/new.txt", &st, &err), &err);
    CHECK(st.mode == 0600 && st.uid == 1000 && st.mtime == 1700000000 && st.size == 6);
    CHECK_OK(pht_image_stat_path(img, "/opt/pht_train/query.json", &st, &err), &err);
    size_t len;
    CHECK(strcmp(slurp(img, "/opt/pht_results/known.bin", &len), "0123456789") == 0);
    CHECK(strcmp(slurp(img, "/opt/pht_results/spooled.txt", &len), "abc") == 0);
    pht_image_free(img);
    /* an untagged commit in place took the source's place: latest moved along
       with copy, so the archive still holds one image */
    snprintf(ref, sizeof ref, "docker-archive:%s", path);
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    if (img) CHECK_STR_CONTAINS(pht_image_manifest(img), "\"pht-bench/ref-0:latest\"");
    if (img) CHECK_STR_CONTAINS(pht_image_manifest(img), "\"pht-bench/ref-0:copy\"");
    pht_image_free(img);
}

static void test_rebase_and_tags(void)
{
    char path[1200], src[1200], ref[1300], base[1300];
    snprintf(src, sizeof src, "%s/reference-v2/stage2-station_2-post.tar", test_fixtures());
    snprintf(path, sizeof path, "%s/two.tar", work);
    copy_file(src, path);
    snprintf(ref, sizeof ref, "docker-archive:%s:pht-bench/ref-0:latest", path);
    snprintf(base, sizeof base, "docker-archive:%s:pht-bench/ref-0:base", path);
    pht_error err;
    pht_image *img;
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    /* REPO:base = the first layer only, a rebase without a new layer */
    pht_image_writer *w;
    pht_image_writer_opts wo = {.keep_layers = 1};
    CHECK_OK(pht_image_writer_new(img, &wo, &w, &err), &err);
    CHECK_OK(pht_image_writer_commit(w, base, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image *b;
    CHECK_OK(pht_image_open(&b, base, NULL, &err), &err);
    CHECK(b && pht_image_layer_count(b) == 1);
    /* REPO:latest rebuilt in place on REPO:base: 2 layers, base tag kept */
    wo = (pht_image_writer_opts){.base = b, .keep_layers = -1};
    CHECK_OK(pht_image_writer_new(img, &wo, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/train_config.json", "{}", 2, NULL, &err), &err);
    CHECK_OK(pht_image_writer_commit(w, ref, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(img);
    pht_image_free(b);
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    CHECK(img && pht_image_layer_count(img) == 2);
    size_t len;
    CHECK(strcmp(slurp(img, "/opt/train_config.json", &len), "{}") == 0);
    pht_image_stat st;
    CHECK_CODE(pht_image_stat_path(img, "/opt/pht_train/query.json", &st, &err), PHT_ENOTFOUND,
               &err);
    CHECK_OK(pht_image_open(&b, base, NULL, &err), &err);
    CHECK(b && pht_image_layer_count(b) == 1);

    /* the same image into an OCI layout, twice (blobs shared), read back */
    char oci[1300];
    snprintf(oci, sizeof oci, "oci:%s/layout:v1", work);
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    CHECK_OK(pht_image_writer_commit(w, oci, NULL, &err), &err);
    pht_image_writer_free(w);
    CHECK_OK(pht_image_writer_new(b, NULL, &w, &err), &err);
    snprintf(oci, sizeof oci, "oci:%s/layout:base", work);
    CHECK_OK(pht_image_writer_commit(w, oci, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image *o;
    snprintf(oci, sizeof oci, "oci:%s/layout:v1", work);
    CHECK_OK(pht_image_open(&o, oci, NULL, &err), &err);
    CHECK(o && pht_image_layer_count(o) == 2);
    CHECK(o && strcmp(pht_image_config(o), pht_image_config(img)) == 0);
    if (o) CHECK(strcmp(slurp(o, "/opt/train_config.json", &len), "{}") == 0);
    pht_image_free(o);
    pht_image_free(img);
    pht_image_free(b);
}

/* Bytes of a whole file, compared with another's. */
static int same_file_bytes(const char *a, const char *b)
{
    FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
    int same = x && y;
    while (same) {
        int c = fgetc(x);
        same = c == fgetc(y);
        if (c == EOF) break;
    }
    if (x) fclose(x);
    if (y) fclose(y);
    return same;
}

/* A retag of the source into dest (a docker-archive or an OCI layout); reopened hashing every
 * layer. */
static void retag_and_verify(pht_image *img, const char *dest)
{
    pht_error err;
    pht_image_writer *w;
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    CHECK_OK(pht_image_writer_commit(w, dest, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image_opts o;
    pht_image_opts_init(&o);
    o.verify_layers = 1;
    pht_image *back;
    CHECK_OK(pht_image_open(&back, dest, &o, &err), &err);
    pht_image_layer li;
    for (size_t i = 0; back && i < pht_image_layer_count(back); i++) {
        CHECK_OK(pht_image_layer_info(back, i, &li, &err), &err);
        CHECK(li.verified == 1);
    }
    pht_image_free(back);
}

/*
 * Kept layers are copied in the kernel (copy_file_range) within one file
 * system and through read/write across two (/dev/shm, when it is another
 * one): both give the same archive, whose layers all match their digests.
 */
/*
 * A layer past 4 MiB (hashed on the writer's own thread, read back from the
 * page cache) into a docker-archive the writer is bound for (the archive is
 * built around the layer's file): a reopen that hashes every layer agrees
 * with its diff_id, and the bytes read back are those written.
 */
static void test_large_layer_in_place(void)
{
    char src[1200], path[1300], ref[1400];
    snprintf(src, sizeof src, "%s/reference-v2/stage1-station_1-post.tar", test_fixtures());
    snprintf(path, sizeof path, "%s/large.tar", work);
    copy_file(src, path);
    snprintf(ref, sizeof ref, "docker-archive:%s", path);
    pht_error err;
    pht_image *img;
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    if (img == NULL) return;
    pht_image_writer_opts wo = {.keep_layers = -1, .dest = ref};
    pht_image_writer *w;
    CHECK_OK(pht_image_writer_new(img, &wo, &w, &err), &err);
    enum { N = 9 << 20 };
    unsigned char *data = malloc(N);
    CHECK(data != NULL);
    if (data == NULL) return;
    for (size_t i = 0; i < N; i++)
        data[i] = (unsigned char)(i * 2654435761u >> 13);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/pht_results/big.bin", data, N, NULL, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/pht_results/tail.txt", "tail\n", 5, NULL, &err),
             &err);
    CHECK_OK(pht_image_writer_commit(w, ref, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(img);

    pht_image_opts o;
    pht_image_opts_init(&o);
    o.verify_layers = 1;
    CHECK_OK(pht_image_open(&img, ref, &o, &err), &err);
    if (img == NULL) {
        free(data);
        return;
    }
    pht_image_layer li;
    CHECK_OK(pht_image_layer_info(img, pht_image_layer_count(img) - 1, &li, &err), &err);
    CHECK(li.verified == 1);
    pht_image_reader *r;
    CHECK_OK(pht_image_open_file(img, "/opt/pht_results/big.bin", &r, &err), &err);
    size_t at = 0, got;
    unsigned char buf[65536];
    int same = 1;
    while (r && pht_image_reader_read(r, buf, sizeof buf, &got, &err) == 0 && got) {
        if (at + got > N || memcmp(buf, data + at, got) != 0) same = 0;
        at += got;
    }
    CHECK(same && at == N);
    pht_image_reader_free(r);
    size_t len;
    CHECK(strcmp(slurp(img, "/opt/pht_results/tail.txt", &len), "tail\n") == 0);
    pht_image_free(img);
    free(data);
}

static void test_range_copies(void)
{
    char src[1200], ref[1300], here[1300], there[1300], shm[] = "/dev/shm/pht-copy.XXXXXX";
    snprintf(src, sizeof src, "%s/reference-v2/stage2-station_2-post.tar", test_fixtures());
    snprintf(ref, sizeof ref, "docker-archive:%s", src);
    pht_error err;
    pht_image *img;
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    if (img == NULL) return;
    snprintf(here, sizeof here, "docker-archive:%s/copied.tar:re/tag:v1", work);
    retag_and_verify(img, here);
    snprintf(here, sizeof here, "oci:%s/copied-oci:v1", work);
    retag_and_verify(img, here);
    struct stat a, b;
    if (stat("/dev/shm", &a) == 0 && stat(work, &b) == 0 && a.st_dev != b.st_dev &&
        mkdtemp(shm) != NULL) {
        snprintf(there, sizeof there, "docker-archive:%s/copied.tar:re/tag:v1", shm);
        retag_and_verify(img, there);
        snprintf(here, sizeof here, "%s/copied.tar", work);
        snprintf(there, sizeof there, "%s/copied.tar", shm);
        CHECK(same_file_bytes(here, there));
        snprintf(there, sizeof there, "oci:%s/copied-oci:v1", shm);
        retag_and_verify(img, there);
        CHECK_OK(pht_remove_tree(shm, &err), &err);
    }
    pht_image_free(img);
}

static void test_misuse(void)
{
    char ref[1300];
    snprintf(ref, sizeof ref, "docker-archive:%s/reference-v2/stage0-built.tar", test_fixtures());
    pht_error err;
    pht_image *img;
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    pht_image_writer *w;
    pht_image_writer_opts wo = {.keep_layers = 5};
    CHECK_CODE(pht_image_writer_new(img, &wo, &w, &err), PHT_EINVAL, &err);
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    pht_image_stream *s;
    CHECK_OK(pht_image_writer_begin_file(w, "/a", 4, NULL, &s, &err), &err);
    CHECK_OK(pht_image_stream_write(s, "ab", 2, &err), &err);
    CHECK_CODE(pht_image_stream_close(s, &err), PHT_ESTATE, &err);
    CHECK_STR_CONTAINS(err.message, "fewer bytes");
    pht_image_stream_free(s);
    snprintf(ref, sizeof ref, "docker-archive:%s/never.tar", work);
    CHECK_CODE(pht_image_writer_commit(w, ref, NULL, &err), PHT_ESTATE, &err);
    CHECK(access(ref + 15, F_OK) != 0);
    pht_image_writer_free(w);
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    CHECK_OK(pht_image_writer_begin_file(w, "/a", 1, NULL, &s, &err), &err);
    CHECK_CODE(pht_image_stream_write(s, "ab", 2, &err), PHT_ELIMIT, &err);
    pht_image_stream_free(s);
    pht_image_writer_free(w);
    pht_image_free(img);
}

static void count_bytes(void *ud, uint64_t n)
{
    *(uint64_t *)ud += n;
}

/* The size of a file, or 0. */
static uint64_t size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Write n pattern bytes (seeded) to path and feed them to h. */
static void pattern_file(const char *path, size_t n, unsigned seed, pht_hash *h)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f == NULL) return;
    unsigned char buf[4096];
    pht_error err;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < sizeof buf ? n - done : sizeof buf;
        for (size_t i = 0; i < k; i++)
            buf[i] = (unsigned char)((done + i) * 2654435761u >> 13 ^ seed);
        fwrite(buf, 1, k, f);
        CHECK_OK(pht_hash_update(h, buf, k, &err), &err);
        done += k;
    }
    fclose(f);
}

/*
 * The results hash of files encrypted into a writer (the hash runs on its
 * own thread from the first file on) equals the same bytes hashed inline,
 * with bytes fed between the files (small, and larger than a slot) in their
 * place; a hash freed before its final, behind, stops and frees cleanly.
 */
static void test_encrypt_hash_behind(void)
{
    char ref[1300], file[1200], name[64];
    stage_copy("stage1-station_1-post.tar", "behind.tar", ref, sizeof ref);
    pht_error err;
    pht_image *img;
    pht_image_writer *w = NULL;
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    if (img) CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    pht_symkey *key = pht_symkey_new(&err);
    const unsigned char sid[] = "session-behind";
    pht_hash *h = pht_hash_new_results(sid, sizeof sid - 1, &err);
    pht_hash *want = pht_hash_new_results(sid, sizeof sid - 1, &err);
    CHECK(w && key && h && want);
    if (!w || !key || !h || !want) return;
    static unsigned char between[600000];
    for (size_t i = 0; i < sizeof between; i++)
        between[i] = (unsigned char)(i * 7 + 1);
    const size_t sizes[] = {0, 1, 70000, 300000, (5u << 20) + 3, 17};
    for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        snprintf(file, sizeof file, "%s/plain%u", work, i);
        pattern_file(file, sizes[i], i, want);
        snprintf(name, sizeof name, "/opt/pht_results/f%u", i);
        CHECK_OK(pht_encrypt_into(key, file, h, w, name, NULL, NULL, NULL, &err), &err);
        size_t nb = i == 2 ? sizeof between : 5 + i;
        CHECK_OK(pht_hash_update(h, between, nb, &err), &err);
        CHECK_OK(pht_hash_update(want, between, nb, &err), &err);
        unlink(file);
    }
    unsigned char got[PHT_SHA512_LEN], exp[PHT_SHA512_LEN];
    CHECK_OK(pht_hash_final(h, got, &err), &err);
    CHECK_OK(pht_hash_final(want, exp, &err), &err);
    CHECK(memcmp(got, exp, sizeof got) == 0);
    CHECK_CODE(pht_hash_update(h, "x", 1, &err), PHT_ESTATE, &err);
    pht_hash_free(h);
    pht_hash_free(want);
    /* behind, then freed with bytes still queued */
    h = pht_hash_new_results(sid, sizeof sid - 1, &err);
    snprintf(file, sizeof file, "%s/plain-last", work);
    want = pht_hash_new(&err);
    pattern_file(file, 1u << 20, 9, want);
    CHECK_OK(pht_encrypt_into(key, file, h, w, "/opt/pht_results/last", NULL, NULL, NULL, &err),
             &err);
    CHECK_OK(pht_hash_update(h, between, sizeof between, &err), &err);
    pht_hash_free(h);
    pht_hash_free(want);
    unlink(file);
    pht_symkey_free(key);
    pht_image_writer_free(w);
    pht_image_free(img);
}

static void test_progress(void)
{
    char src[1200], ref[1300], out[1300], dir[1300];
    snprintf(src, sizeof src, "%s/reference-v2/stage2-station_2-post.tar", test_fixtures());
    snprintf(ref, sizeof ref, "docker-archive:%s", src);
    pht_error err;
    pht_image_opts o;
    pht_image_opts_init(&o);
    CHECK(o.progress == NULL && o.progress_ud == NULL);
    uint64_t opened = 0;
    o.progress = count_bytes;
    o.progress_ud = &opened;
    o.verify_layers = 1;
    pht_image *img;
    CHECK_OK(pht_image_open(&img, ref, &o, &err), &err);
    if (img == NULL) return;
    uint64_t blobs = 0;
    for (size_t i = 0; i < pht_image_layer_count(img); i++) {
        pht_image_layer li;
        CHECK_OK(pht_image_layer_info(img, i, &li, &err), &err);
        blobs += li.size;
    }
    /* every layer hashed: each blob read at least once */
    CHECK(opened >= blobs && blobs > 0);

    /* the open's function is not kept: an extract reports only to its own */
    uint64_t before = opened, extracted = 0;
    snprintf(dir, sizeof dir, "%s/progress-x", work);
    pht_image_set_progress(img, count_bytes, &extracted);
    CHECK_OK(pht_image_extract(img, "/opt/pht_results", dir, &err), &err);
    CHECK(opened == before);
    uint64_t want = 0;
    pht_image_stat st;
    CHECK_OK(pht_image_stat_path(img, "/opt/pht_results/count.txt", &st, &err), &err);
    want = st.size;
    CHECK(extracted >= want && extracted > 0);
    pht_image_set_progress(img, NULL, NULL);
    uint64_t again = extracted;
    snprintf(dir, sizeof dir, "%s/progress-y", work);
    CHECK_OK(pht_image_extract(img, "/opt/pht_results", dir, &err), &err);
    CHECK(extracted == again);

    /* a writer: the new layer, then every byte of the archive the commit writes */
    pht_image_writer *w;
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    uint64_t written = 0;
    pht_image_writer_set_progress(w, count_bytes, &written);
    static char data[300000];
    memset(data, 'p', sizeof data);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/p", data, sizeof data, NULL, &err), &err);
    uint64_t layer = written;
    CHECK(layer > 0 && layer <= sizeof data + 1024);
    snprintf(out, sizeof out, "docker-archive:%s/progress.tar", work);
    CHECK_OK(pht_image_writer_commit(w, out, NULL, &err), &err);
    uint64_t archive = size_of(out + 15);
    /* the rest of the layer (a tar's last blocks) and the archive */
    CHECK(written - layer >= archive && written - layer <= archive + sizeof data + 20480);
    pht_image_writer_free(w);
    pht_image_free(img);
}

int main(void)
{
    test_workdir(work, sizeof work);
    test_new_layer();
    test_rebase_and_tags();
    test_large_layer_in_place();
    test_range_copies();
    test_misuse();
    test_encrypt_hash_behind();
    test_progress();
    test_workdir_done(work);
    TEST_DONE();
}
