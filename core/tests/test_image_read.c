/*
 * Reading docker-archive images: the reference fixtures' merged /opt must
 * equal the *.opt.tar that Docker's archive endpoint produced (members,
 * order, attributes and bytes), read back here with libarchive, each file
 * read in place; and the index cache of an OCI layout's gzip layers.
 */
#include <archive.h>
#include <archive_entry.h>

#include <sys/stat.h>

#include "test.h"

static const char *stages[] = {"stage0-built", "stage1-station_1-post", "stage2-station_2-post",
                               "stage3-station_3-post"};

typedef struct walk_state {
    struct archive *opt; /* the oracle, positioned at the next member */
    pht_image *img;
    int count;
} walk_state;

static int check_entry(void *ud, const char *rel, const pht_image_stat *st)
{
    walk_state *w = ud;
    struct archive_entry *e;
    if (archive_read_next_header(w->opt, &e) != ARCHIVE_OK) {
        fprintf(stderr, "extra entry %s\n", rel);
        test_failures++;
        return 1;
    }
    char want[4096];
    snprintf(want, sizeof want, "opt/%s%s", rel, st->type == PHT_IMAGE_DIR ? "/" : "");
    if (strcmp(archive_entry_pathname(e), want) != 0) {
        fprintf(stderr, "order: got %s, Docker lists %s\n", want, archive_entry_pathname(e));
        test_failures++;
        return 1;
    }
    CHECK((uint32_t)archive_entry_perm(e) == st->mode);
    CHECK(archive_entry_mtime(e) == st->mtime);
    CHECK(archive_entry_uid(e) == st->uid);
    if (st->type == PHT_IMAGE_FILE) {
        CHECK((uint64_t)archive_entry_size(e) == st->size);
        char path[4200], a[4096], b[4096];
        snprintf(path, sizeof path, "/opt/%s", rel);
        pht_image_reader *r;
        pht_error err;
        CHECK_OK(pht_image_open_file(w->img, path, &r, &err), &err);
        size_t got, total = 0;
        for (;;) {
            CHECK_OK(pht_image_reader_read(r, a, 1000, &got, &err), &err);
            if (got == 0) break;
            la_ssize_t n = archive_read_data(w->opt, b, got);
            CHECK(n == (la_ssize_t)got && memcmp(a, b, got) == 0);
            total += got;
        }
        CHECK(total == st->size);
        pht_image_reader_free(r);
    }
    w->count++;
    return 0;
}

static void test_fixture(const char *stage)
{
    char ref[1024], opt[1024];
    snprintf(ref, sizeof ref, "docker-archive:%s/reference-v2/%s.tar", test_fixtures(), stage);
    snprintf(opt, sizeof opt, "%s/reference-v2/%s.opt.tar", test_fixtures(), stage);
    pht_error err;
    pht_image *img = NULL;
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    if (img == NULL) return;
    CHECK(pht_image_layer_count(img) == (strcmp(stage, "stage0-built") == 0 ? 2u : 3u));
    pht_image_layer li;
    CHECK_OK(pht_image_layer_info(img, 0, &li, &err), &err);
    CHECK(strcmp(li.digest, li.diff_id) == 0); /* docker save layers are plain tar */
    CHECK_STR_CONTAINS(pht_image_config(img), "\"diff_ids\"");
    /* so every file is read in place (pread at its offset), checked against Docker's bytes below */
    int yes = 0;
    CHECK_OK(pht_image_in_place(img, "/opt", &yes, &err), &err);
    CHECK(yes == 1);
    CHECK_OK(pht_image_in_order(img, "/opt", &yes, &err), &err);
    CHECK(yes == 1);
    CHECK(pht_image_in_place(img, "/opt/none", &yes, &err) == PHT_ENOTFOUND);

    walk_state w = {.img = img};
    w.opt = archive_read_new();
    archive_read_support_format_tar(w.opt);
    CHECK(archive_read_open_filename(w.opt, opt, 10240) == ARCHIVE_OK);
    struct archive_entry *e;
    CHECK(archive_read_next_header(w.opt, &e) == ARCHIVE_OK); /* opt/ itself */
    pht_image_stat st;
    CHECK_OK(pht_image_stat_path(img, "/opt", &st, &err), &err);
    CHECK(st.type == PHT_IMAGE_DIR && st.mtime == archive_entry_mtime(e));
    CHECK_OK(pht_image_walk(img, "/opt", 1, check_entry, &w, &err), &err);
    CHECK(archive_read_next_header(w.opt, &e) == ARCHIVE_EOF);
    CHECK(w.count > 5);
    archive_read_free(w.opt);
    pht_image_free(img);
}

static int count_cb(void *ud, const char *rel, const pht_image_stat *st)
{
    (void)rel;
    (void)st;
    (*(int *)ud)++;
    return 0;
}

static void test_lookup_errors(void)
{
    char ref[1024];
    snprintf(ref, sizeof ref, "docker-archive:%s/reference-v2/stage1-station_1-post.tar",
             test_fixtures());
    pht_error err;
    pht_image *img;
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    pht_image_stat st;
    CHECK_CODE(pht_image_stat_path(img, "/opt/nope", &st, &err), PHT_ENOTFOUND, &err);
    CHECK_CODE(pht_image_stat_path(img, "/../etc", &st, &err), PHT_EUNSAFE, &err);
    CHECK_OK(pht_image_stat_path(img, "/bin/sh", &st, &err), &err);
    CHECK(st.type == PHT_IMAGE_SYMLINK && strcmp(st.link, "busybox") == 0);
    int n = 0;
    CHECK_OK(pht_image_walk(img, "/opt", 0, count_cb, &n, &err), &err);
    CHECK(n == 4); /* pht_results, pht_train, train_config.json, user_sym_key.key */
    pht_image_reader *r;
    CHECK_CODE(pht_image_open_file(img, "/opt", &r, &err), PHT_ENOTFOUND, &err);
    pht_image_free(img);

    CHECK_CODE(pht_image_open(&img, "docker-archive:/nonexistent.tar", NULL, &err), PHT_ENOTFOUND,
               &err);
    CHECK_CODE(pht_image_open(&img, "containers-storage:x", NULL, &err), PHT_EINVAL, &err);
    snprintf(ref, sizeof ref, "docker-archive:%s/reference-v2/stage1-station_1-post.tar:other:tag",
             test_fixtures());
    CHECK_CODE(pht_image_open(&img, ref, NULL, &err), PHT_ENOTFOUND, &err);
    CHECK_STR_CONTAINS(err.message, "other:tag");
}

typedef struct disk_check {
    const char *root;
    int count;
} disk_check;

/* Each entry of the walk is on disk with its type, mode, size and mtime. */
static int check_on_disk(void *ud, const char *rel, const pht_image_stat *st)
{
    disk_check *d = ud;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", d->root, rel);
    struct stat sb;
    CHECK(lstat(path, &sb) == 0);
    if (st->type == PHT_IMAGE_DIR) CHECK(S_ISDIR(sb.st_mode));
    if (st->type == PHT_IMAGE_SYMLINK) CHECK(S_ISLNK(sb.st_mode));
    if (st->type == PHT_IMAGE_FILE) {
        CHECK(S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == st->size);
        CHECK((sb.st_mode & 07777) == st->mode);
    }
    if (st->type != PHT_IMAGE_SYMLINK) CHECK(sb.st_mtime == st->mtime);
    d->count++;
    return 0;
}

static void test_extract(void)
{
    char ref[1024], dir[1024], dest[1100];
    snprintf(ref, sizeof ref, "docker-archive:%s/reference-v2/stage2-station_2-post.tar",
             test_fixtures());
    test_workdir(dir, sizeof dir);
    snprintf(dest, sizeof dest, "%s/opt", dir);
    pht_error err;
    pht_image *img;
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    CHECK_OK(pht_image_extract(img, "/opt", dest, &err), &err);
    disk_check d = {dest, 0};
    CHECK_OK(pht_image_walk(img, "/opt", 1, check_on_disk, &d, &err), &err);
    CHECK(d.count > 5);
    CHECK_CODE(pht_image_extract(img, "/opt/train_config.json", dest, &err), PHT_ENOTFOUND, &err);
    pht_image_free(img);
    test_workdir_done(dir);
}

/* Which layers of img the open hashed, as "10" for verified, unverified. */
static const char *verified(const pht_image *img)
{
    static char v[16];
    pht_image_layer li;
    pht_error err;
    size_t n = pht_image_layer_count(img);
    for (size_t i = 0; i < n && i + 1 < sizeof v; i++)
        v[i] = pht_image_layer_info(img, i, &li, &err) == 0 && li.verified ? '1' : '0';
    v[n < sizeof v ? n : sizeof v - 1] = '\0';
    return v;
}

/*
 * The index cache: a gzip layer outside /opt is hashed and recorded at the
 * first open, read back unhashed at the second, hashed again with
 * verify_layers; a gzip layer holding /opt is hashed every time.
 */
static void test_index_cache(void)
{
    char work[1024], spec[1200], cmd[4096], ref[1300], cache[1200];
    test_workdir(work, sizeof work);
    snprintf(spec, sizeof spec, "%s/spec.json", work);
    FILE *f = fopen(spec, "w");
    CHECK(f != NULL);
    if (f == NULL) return;
    fprintf(f,
            "{\"format\":\"oci\",\"out\":\"%s/oci\",\"tag\":\"v1\",\"layers\":["
            "{\"compression\":\"gzip\",\"entries\":[{\"name\":\"srv/\",\"type\":\"dir\"},"
            "{\"name\":\"srv/a\",\"data\":\"outside\"}]},"
            "{\"compression\":\"gzip\",\"entries\":[{\"name\":\"opt/x\",\"data\":\"x\"}]}]}",
            work);
    fclose(f);
    snprintf(cmd, sizeof cmd, "python3 %s/images/mkimage.py %s", test_fixtures(), spec);
    CHECK(system(cmd) == 0);
    snprintf(ref, sizeof ref, "oci:%s/oci:v1", work);
    snprintf(cache, sizeof cache, "%s/cache", work);
    pht_image_opts o;
    pht_image_opts_init(&o);
    o.cache_dir = cache;
    const char *want[] = {"11", "01"};
    pht_error err;
    for (int i = 0; i < 3; i++) {
        o.verify_layers = i == 2;
        pht_image *img;
        CHECK_OK(pht_image_open(&img, ref, &o, &err), &err);
        if (img == NULL) continue;
        CHECK(strcmp(verified(img), i < 2 ? want[i] : "11") == 0);
        pht_image_stat st;
        CHECK_OK(pht_image_stat_path(img, "/srv/a", &st, &err), &err);
        CHECK(st.size == 7);
        pht_image_free(img);
    }
    test_workdir_done(work);
}

/* verify_behind: the /opt layers are hashed on a thread; the verdict and the flags come after. */
static void test_verify_behind(const char *stage)
{
    char ref[1024];
    snprintf(ref, sizeof ref, "docker-archive:%s/reference-v2/%s.tar", test_fixtures(), stage);
    pht_image_opts o;
    pht_image_opts_init(&o);
    o.verify_behind = 1;
    pht_error err;
    pht_image *img = NULL, *sync = NULL;
    CHECK_OK(pht_image_open(&img, ref, &o, &err), &err);
    CHECK_OK(pht_image_open(&sync, ref, NULL, &err), &err);
    if (img == NULL || sync == NULL) {
        pht_image_free(img);
        pht_image_free(sync);
        return;
    }
    /* a read meanwhile */
    pht_image_reader *r = NULL;
    char buf[64];
    size_t got = 0;
    CHECK_OK(pht_image_open_file(img, "/opt/train_config.json", &r, &err), &err);
    if (r) CHECK_OK(pht_image_reader_read(r, buf, sizeof buf, &got, &err), &err);
    CHECK(got > 0);
    pht_image_reader_free(r);
    CHECK_OK(pht_image_verified(img, &err), &err);
    CHECK_OK(pht_image_verified(img, &err), &err); /* the same verdict again */
    CHECK_OK(pht_image_verified(sync, &err), &err);
    /* the same layers verified as by an open that waits */
    for (size_t i = 0; i < pht_image_layer_count(img); i++) {
        pht_image_layer a, b;
        CHECK_OK(pht_image_layer_info(img, i, &a, &err), &err);
        CHECK_OK(pht_image_layer_info(sync, i, &b, &err), &err);
        CHECK(a.verified == b.verified);
        CHECK(strcmp(a.digest, b.digest) == 0);
    }
    pht_image_free(img);
    pht_image_free(sync);
    /* freed before the verdict: the thread is stopped and joined */
    CHECK_OK(pht_image_open(&img, ref, &o, &err), &err);
    pht_image_free(img);
}

/* An OCI layout: a gzip layer holding the train's config below a gzip run's layer (3 MiB of
   results, then extra, "" for none); 0 once made. */
static int make_run_layout(const char *work, const char *extra)
{
    char spec[1200], cmd[4096];
    snprintf(spec, sizeof spec, "%s/spec.json", work);
    FILE *f = fopen(spec, "w");
    if (f == NULL) return -1;
    fprintf(
        f,
        "{\"format\":\"oci\",\"out\":\"%s/oci\",\"tag\":\"v1\",\"layers\":["
        "{\"compression\":\"gzip\",\"entries\":[{\"name\":\"opt/\",\"type\":\"dir\"},"
        "{\"name\":\"opt/train_config.json\",\"data\":\"{}\"}]},"
        "{\"compression\":\"gzip\",\"entries\":[{\"name\":\"opt/pht_results/\",\"type\":\"dir\"},"
        "{\"name\":\"opt/pht_results/out.bin\",\"zeros\":3145728}%s]}]}",
        work, extra);
    fclose(f);
    snprintf(cmd, sizeof cmd, "python3 %s/images/mkimage.py %s", test_fixtures(), spec);
    return system(cmd) == 0 ? 0 : -1;
}

/*
 * A run's layer under verify_behind: hashed beside the open (its blob digest), its diff_id
 * pending until a commit keeps it; a hostile one fails the open with its thread stopped.
 */
static void test_run_layer(void)
{
    char work[1024], ref[1300], dest[1300];
    test_workdir(work, sizeof work);
    CHECK(make_run_layout(work, "") == 0);
    snprintf(ref, sizeof ref, "oci:%s/oci:v1", work);
    pht_image_opts o;
    pht_image_opts_init(&o);
    o.verify_behind = 1;
    pht_error err;
    pht_image *img = NULL;
    CHECK_OK(pht_image_open(&img, ref, &o, &err), &err);
    if (img) {
        pht_image_stat st;
        CHECK_OK(pht_image_stat_path(img, "/opt/pht_results/out.bin", &st, &err), &err);
        CHECK(st.size == 3145728);
        CHECK_OK(pht_image_verified(img, &err), &err);
        CHECK(strcmp(verified(img), "10") == 0); /* the blob matched, the diff_id is pending */
        pht_image_writer *w = NULL;
        CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
        snprintf(dest, sizeof dest, "oci:%s/out:v2", work);
        if (w) {
            CHECK_OK(pht_image_writer_add_bytes(w, "/opt/pht_results/enc", "e", 1, NULL, &err),
                     &err);
            CHECK_OK(pht_image_writer_commit(w, dest, NULL, &err), &err);
        }
        pht_image_writer_free(w);
        CHECK(strcmp(verified(img), "11") == 0); /* the commit that kept it checked it */
        pht_image_free(img);
    }
    /* freed before the verdict: the thread is stopped and joined */
    CHECK_OK(pht_image_open(&img, ref, &o, &err), &err);
    pht_image_free(img);
    test_workdir_done(work);
    /* a traversal after the large file: the open fails there, its thread stopped */
    test_workdir(work, sizeof work);
    CHECK(make_run_layout(work, ",{\"name\":\"opt/pht_results/../../../etc/passwd\","
                                "\"data\":\"root::0:0\"}") == 0);
    snprintf(ref, sizeof ref, "oci:%s/oci:v1", work);
    img = NULL;
    CHECK_CODE(pht_image_open(&img, ref, &o, &err), PHT_EUNSAFE, &err);
    CHECK(img == NULL);
    CHECK_STR_CONTAINS(err.message, "path leaves the image root");
    test_workdir_done(work);
}

int main(void)
{
    for (size_t i = 0; i < sizeof stages / sizeof *stages; i++)
        test_fixture(stages[i]);
    test_lookup_errors();
    test_extract();
    test_index_cache();
    for (size_t i = 0; i < sizeof stages / sizeof *stages; i++)
        test_verify_behind(stages[i]);
    test_run_layer();
    TEST_DONE();
}
