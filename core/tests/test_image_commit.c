/*
 * Commits into the source's own archive or layout: an untagged destination
 * takes the source's place (its RepoTags / ref name move, an untagged source
 * entry is replaced), a tagged one keeps the other tags, and a commit
 * elsewhere leaves the source's names alone. After a commit into an OCI
 * layout the blobs no manifest references any more are gone.
 */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "test.h"

static char work[1024];

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[65536];
    size_t n;
    CHECK(a && b);
    if (a)
        while ((n = fread(buf, 1, sizeof buf, a)) > 0)
            fwrite(buf, 1, n, b);
    if (a) fclose(a);
    if (b) fclose(b);
}

static char *slurp_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (f == NULL) return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Open ref, add /opt/marker with text, commit to dest (tags may be NULL). */
static void commit_marker(const char *ref, const char *dest, const char *text,
                          const pht_image_commit_opts *co)
{
    pht_error err;
    pht_image *img;
    pht_image_writer *w;
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    if (img == NULL) return;
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/marker", text, strlen(text), NULL, &err), &err);
    CHECK_OK(pht_image_writer_commit(w, dest, co, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(img);
}

/* 1 if ref opens and its /opt/marker holds text. */
static int marker_is(const char *ref, const char *text)
{
    pht_error err;
    pht_image *img;
    if (pht_image_open(&img, ref, NULL, &err) != 0) {
        fprintf(stderr, "  %s: %s\n", ref, err.message);
        return 0;
    }
    pht_image_reader *r;
    char buf[256];
    size_t got = 0, len = 0;
    int ok = pht_image_open_file(img, "/opt/marker", &r, &err) == 0;
    while (ok && pht_image_reader_read(r, buf + len, sizeof buf - 1 - len, &got, &err) == 0 && got)
        len += got;
    buf[len] = '\0';
    if (ok) pht_image_reader_free(r);
    pht_image_free(img);
    return ok && strcmp(buf, text) == 0;
}

/* Number of images in a docker-archive (entries of manifest.json). */
static int archive_images(const char *path)
{
    char ref[1300];
    pht_error err;
    for (int i = 0;; i++) {
        pht_image *img;
        snprintf(ref, sizeof ref, "docker-archive:%s:@%d", path, i);
        if (pht_image_open(&img, ref, NULL, &err) != 0) return i;
        pht_image_free(img);
    }
}

/* The RepoTags of the image ref names, joined with '|'. */
static const char *repo_tags(const char *ref)
{
    static char buf[512];
    pht_error err;
    pht_image *img;
    buf[0] = '\0';
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    if (img == NULL) return buf;
    cJSON *m = cJSON_Parse(pht_image_manifest(img)), *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(m, "RepoTags"))
    {
        if (buf[0]) strncat(buf, "|", sizeof buf - strlen(buf) - 1);
        strncat(buf, cJSON_GetStringValue(t), sizeof buf - strlen(buf) - 1);
    }
    cJSON_Delete(m);
    pht_image_free(img);
    return buf;
}

static void test_archive_in_place(void)
{
    char src[1200], path[1200], ref[1300], dest[1300];
    snprintf(src, sizeof src, "%s/reference-v2/stage0-built.tar", test_fixtures());
    snprintf(path, sizeof path, "%s/train.tar", work);
    copy_file(src, path);
    /* the train as pht-bench/ref-0:latest and :v2, beside another image other/keep:v1 */
    const char *v2[] = {"pht-bench/ref-0:v2"};
    pht_image_commit_opts co = {.tags = v2, .ntags = 1};
    snprintf(ref, sizeof ref, "docker-archive:%s:pht-bench/ref-0:latest", path);
    commit_marker(ref, ref, "one", &co);
    snprintf(dest, sizeof dest, "docker-archive:%s:other/keep:v1", path);
    commit_marker(ref, dest, "kept", NULL);
    CHECK(archive_images(path) == 2);
    CHECK(strcmp(repo_tags(ref), "pht-bench/ref-0:latest|pht-bench/ref-0:v2") == 0);

    /* untagged, in place: both tags move, the old image goes, other/keep stays */
    snprintf(dest, sizeof dest, "docker-archive:%s", path);
    commit_marker(ref, dest, "two", NULL);
    CHECK(archive_images(path) == 2);
    CHECK(marker_is(ref, "two"));
    snprintf(ref, sizeof ref, "docker-archive:%s:pht-bench/ref-0:v2", path);
    CHECK(marker_is(ref, "two"));
    CHECK(strcmp(repo_tags(ref), "pht-bench/ref-0:latest|pht-bench/ref-0:v2") == 0);
    snprintf(ref, sizeof ref, "docker-archive:%s:other/keep:v1", path);
    CHECK(marker_is(ref, "kept"));

    /* the same through another spelling of the path: still the source's own archive */
    snprintf(ref, sizeof ref, "docker-archive:%s:pht-bench/ref-0:v2", path);
    snprintf(dest, sizeof dest, "docker-archive:%s/./train.tar", work);
    const char *extra[] = {"pht-bench/ref-0:latest", "pht-bench/ref-0:v3"}; /* a repeat too */
    co = (pht_image_commit_opts){.tags = extra, .ntags = 2};
    commit_marker(ref, dest, "three", &co);
    CHECK(archive_images(path) == 2);
    CHECK(strcmp(repo_tags(ref), "pht-bench/ref-0:latest|pht-bench/ref-0:v3|pht-bench/ref-0:v2") ==
          0);
    CHECK(marker_is(ref, "three"));
}

static void test_archive_untagged(void)
{
    char src[1200], path[1100], ref[1300];
    snprintf(src, sizeof src, "docker-archive:%s/reference-v2/stage0-built.tar", test_fixtures());
    snprintf(path, sizeof path, "%s/untagged.tar", work);
    snprintf(ref, sizeof ref, "docker-archive:%s", path);
    commit_marker(src, ref, "one", NULL); /* not in place: an untagged image */
    CHECK(strcmp(repo_tags(ref), "") == 0);
    commit_marker(ref, ref, "two", NULL); /* in place: replaces it */
    CHECK(archive_images(path) == 1);
    CHECK(marker_is(ref, "two"));
    CHECK(strcmp(repo_tags(ref), "") == 0);
    /* the source of the first commit kept its tag */
    CHECK(strcmp(repo_tags(src), "pht-bench/ref-0:latest") == 0);
}

/* The ref names of index.json, in order, joined with '|' ("-" for none). */
static const char *ref_names(const char *dir, int *count)
{
    static char buf[512];
    char path[1400];
    snprintf(path, sizeof path, "%s/index.json", dir);
    buf[0] = '\0';
    *count = 0;
    const char *text = slurp_file(path);
    cJSON *ix = text ? cJSON_Parse(text) : NULL, *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(ix, "manifests"))
    {
        const char *name = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(d, "annotations"),
                                             "org.opencontainers.image.ref.name"));
        if (buf[0]) strncat(buf, "|", sizeof buf - strlen(buf) - 1);
        strncat(buf, name ? name : "-", sizeof buf - strlen(buf) - 1);
        (*count)++;
    }
    cJSON_Delete(ix);
    return buf;
}

static void test_oci_in_place(void)
{
    char src[1200], dir[1200], ref[1300], dest[1300];
    int n;
    snprintf(src, sizeof src, "docker-archive:%s/reference-v2/stage0-built.tar", test_fixtures());
    snprintf(dir, sizeof dir, "%s/layout", work);
    snprintf(ref, sizeof ref, "oci:%s:one", dir);
    commit_marker(src, ref, "one", NULL);
    snprintf(dest, sizeof dest, "oci:%s:two", dir);
    commit_marker(src, dest, "two", NULL);
    CHECK(strcmp(ref_names(dir, &n), "one|two") == 0);
    snprintf(dest, sizeof dest, "oci:%s", dir);
    commit_marker(ref, dest, "one-b", NULL); /* "one" moves, "two" stays */
    CHECK(strcmp(ref_names(dir, &n), "two|one") == 0 && n == 2);
    CHECK(marker_is(ref, "one-b"));
    snprintf(dest, sizeof dest, "oci:%s:two", dir);
    CHECK(marker_is(dest, "two"));

    /* a layout whose only image has no name: replaced, not doubled */
    snprintf(dir, sizeof dir, "%s/nameless", work);
    snprintf(ref, sizeof ref, "oci:%s", dir);
    commit_marker(src, ref, "one", NULL);
    CHECK(strcmp(ref_names(dir, &n), "-") == 0);
    commit_marker(ref, ref, "two", NULL);
    CHECK(strcmp(ref_names(dir, &n), "-") == 0 && n == 1);
    CHECK(marker_is(ref, "two"));
}

/* Number of blob files under dir/blobs/sha256 that contain needle (and the total in *total). */
static int blobs_holding(const char *dir, const char *needle, int *total)
{
    char bdir[1300], path[1600];
    snprintf(bdir, sizeof bdir, "%s/blobs/sha256", dir);
    DIR *dp = opendir(bdir);
    CHECK(dp != NULL);
    if (dp == NULL) return -1;
    struct dirent *de;
    int hits = 0;
    size_t nl = strlen(needle);
    static char buf[65536 + 256];
    *total = 0;
    while ((de = readdir(dp)) != NULL) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", bdir, de->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL) continue;
        (*total)++;
        size_t keep = 0, n;
        int found = 0;
        while (!found && (n = fread(buf + keep, 1, 65536, f)) > 0) {
            n += keep;
            for (size_t i = 0; !found && i + nl <= n; i++)
                found = memcmp(buf + i, needle, nl) == 0;
            keep = n < nl ? n : nl - 1; /* a match may straddle two reads */
            memmove(buf, buf + n - keep, keep);
        }
        fclose(f);
        hits += found;
    }
    closedir(dp);
    return hits;
}

/* Commit a new image on the first two layers of ref (below its marker layer) to dest. */
static int commit_below(const char *ref, const char *dest, int keep_unreferenced, pht_error *err)
{
    pht_image *img;
    pht_image_writer *w;
    int rc = pht_image_open(&img, ref, NULL, err);
    if (rc) return rc;
    pht_image_writer_opts wo = {.keep_layers = 2};
    if ((rc = pht_image_writer_new(img, &wo, &w, err)) == 0) {
        pht_image_commit_opts co = {.keep_unreferenced = keep_unreferenced};
        rc = pht_image_writer_add_bytes(w, "/opt/marker", "clean", 5, NULL, err);
        if (rc == 0) rc = pht_image_writer_commit(w, dest, &co, err);
        pht_image_writer_free(w);
    }
    pht_image_free(img);
    return rc;
}

static void test_oci_gc(void)
{
    char src[1200], dir[1200], ref[1300], keep[1300], marker[64];
    int total, n;
    pht_error err;
    snprintf(src, sizeof src, "docker-archive:%s/reference-v2/stage0-built.tar", test_fixtures());
    snprintf(marker, sizeof marker, "PLAINTEXT-%d-MARKER", (int)getpid());

    /* the marker layer goes once nothing references it: 2 base layers + 1 new, config, manifest */
    snprintf(dir, sizeof dir, "%s/gc", work);
    snprintf(ref, sizeof ref, "oci:%s:train", dir);
    commit_marker(src, ref, marker, NULL);
    CHECK(blobs_holding(dir, marker, &total) == 1 && total == 5);
    CHECK_OK(commit_below(ref, ref, 0, &err), &err);
    CHECK(blobs_holding(dir, marker, &total) == 0);
    CHECK(total == 5);
    CHECK(marker_is(ref, "clean"));

    /* keep_unreferenced leaves it */
    snprintf(dir, sizeof dir, "%s/gc-keep", work);
    snprintf(ref, sizeof ref, "oci:%s:train", dir);
    commit_marker(src, ref, marker, NULL);
    CHECK_OK(commit_below(ref, ref, 1, &err), &err);
    CHECK(blobs_holding(dir, marker, &total) == 1 && total == 8);

    /* another name still references the marker image: its blobs stay */
    snprintf(dir, sizeof dir, "%s/gc-other", work);
    snprintf(ref, sizeof ref, "oci:%s:train", dir);
    snprintf(keep, sizeof keep, "oci:%s:kept", dir);
    const char *kept[] = {"kept"};
    pht_image_commit_opts co = {.tags = kept, .ntags = 1};
    commit_marker(src, ref, marker, &co);
    CHECK_OK(commit_below(ref, ref, 0, &err), &err);
    CHECK(blobs_holding(dir, marker, &total) == 1 && total == 8);
    CHECK(marker_is(keep, marker));
    CHECK(strcmp(ref_names(dir, &n), "kept|train") == 0);
}

/* A manifest of index.json that cannot be read stops the collection, not the commit. */
static void test_oci_gc_fails_safe(void)
{
    char src[1200], dir[1200], ref[1300], path[1400], marker[64];
    int total;
    pht_error err;
    snprintf(src, sizeof src, "docker-archive:%s/reference-v2/stage0-built.tar", test_fixtures());
    snprintf(marker, sizeof marker, "PLAINTEXT-%d-MARKER", (int)getpid());
    snprintf(dir, sizeof dir, "%s/gc-broken", work);
    snprintf(ref, sizeof ref, "oci:%s:train", dir);
    commit_marker(src, ref, marker, NULL);
    /* a second entry whose manifest blob is missing */
    snprintf(path, sizeof path, "%s/index.json", dir);
    char *text = slurp_file(path);
    cJSON *ix = cJSON_Parse(text);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "mediaType", "application/vnd.oci.image.manifest.v1+json");
    cJSON_AddStringToObject(
        d, "digest", "sha256:0000000000000000000000000000000000000000000000000000000000000000");
    cJSON_AddNumberToObject(d, "size", 2);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(ix, "manifests"), d);
    char *out = cJSON_PrintUnformatted(ix);
    FILE *f = fopen(path, "wb");
    CHECK(f && out);
    if (f && out) fputs(out, f);
    if (f) fclose(f);
    free(out);
    cJSON_Delete(ix);

    CHECK_CODE(commit_below(ref, ref, 0, &err), PHT_ENOTFOUND, &err);
    CHECK_STR_CONTAINS(err.message,
                       "the image is committed, but removing unreferenced blobs failed");
    CHECK_STR_CONTAINS(err.message,
                       "0000000000000000000000000000000000000000000000000000000000000000");
    CHECK(marker_is(ref, "clean"));                 /* committed */
    CHECK(blobs_holding(dir, marker, &total) == 1); /* nothing removed */
    CHECK(total == 8);
}

int main(void)
{
    test_workdir(work, sizeof work);
    test_archive_in_place();
    test_archive_untagged();
    test_oci_in_place();
    test_oci_gc();
    test_oci_gc_fails_safe();
    test_workdir_done(work);
    TEST_DONE();
}
