/*
 * The docker-daemon transport against the real daemon, with the docker CLI
 * (inspect, run, images) as the oracle: reading an image by name and by id,
 * writing a new image and updating a tag in place, leaving out the layers
 * the daemon holds, and the failures: a missing image, a bad reference, an
 * unreachable daemon, a tag the daemon refuses and a stream that breaks, each
 * leaving the tags and the daemon's images as they were; the new layer's
 * temporary file given back as the load sends it.
 */
#define _GNU_SOURCE /* fallocate */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "docker_test.h"

static char repo[200];

static void copy_file(const char *from, const char *to)
{
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    CHECK(system(cmd) == 0);
}

static int read_all(pht_image *img, const char *path, char *buf, size_t cap)
{
    pht_image_reader *r;
    pht_error err;
    size_t len = 0, got;
    buf[0] = '\0';
    if (pht_image_open_file(img, path, &r, &err) != 0) return -1;
    while (pht_image_reader_read(r, buf + len, cap - 1 - len, &got, &err) == 0 && got)
        len += got;
    buf[len] = '\0';
    pht_image_reader_free(r);
    return (int)len;
}

/* The id a tag names, by the CLI; "" when none. */
static void cli_id(const char *name, char *out, size_t cap)
{
    if (dt_sh(out, cap, "docker image inspect --format '{{.Id}}' %s 2>/dev/null", name) != 0)
        out[0] = '\0';
}

/* How many of the daemon's images have a history entry created_by marker. */
static int images_with(const char *marker)
{
    char out[256];
    dt_sh(out, sizeof out,
          "for i in $(docker images -a -q); do docker history --no-trunc --format '{{.CreatedBy}}' "
          "$i; "
          "done 2>/dev/null | grep -c -F -x '%s'",
          marker);
    return atoi(out);
}

static void test_read(void)
{
    pht_error err;
    pht_image *img = NULL, *arc = NULL;
    char base[1200], ref[1400], id[256], a[4096], b[4096];
    if (dt_base_image(base, sizeof base) == NULL) return;
    CHECK_OK(pht_image_open(&img, "docker-daemon:pht-test/busybox:latest", NULL, &err), &err);
    if (img == NULL) return;
    CHECK(strcmp(pht_image_transport(img), "docker-daemon") == 0);
    CHECK(strcmp(pht_image_reference(img), "docker-daemon:pht-test/busybox:latest") == 0);
    cli_id("pht-test/busybox:latest", id, sizeof id);
    CHECK(strncmp(id, "sha256:", 7) == 0);
    snprintf(ref, sizeof ref, "docker-archive:%s", base);
    CHECK_OK(pht_image_open(&arc, ref, NULL, &err), &err);
    if (arc) {
        /* the config rebuilt from the engine keeps what the saved config holds */
        cJSON *mine = cJSON_Parse(pht_image_config(img)),
              *saved = cJSON_Parse(pht_image_config(arc));
        CHECK(mine != NULL && saved != NULL);
        const char *keys[] = {"architecture", "os", "config", "rootfs"};
        for (size_t k = 0; mine && saved && k < sizeof keys / sizeof *keys; k++)
            CHECK(cJSON_Compare(cJSON_GetObjectItemCaseSensitive(mine, keys[k]),
                                cJSON_GetObjectItemCaseSensitive(saved, keys[k]), 1));
        cJSON_Delete(mine);
        cJSON_Delete(saved);
        pht_image_layer la, lb;
        CHECK_OK(pht_image_layer_info(img, 0, &la, &err), &err);
        CHECK_OK(pht_image_layer_info(arc, 0, &lb, &err), &err);
        CHECK(la.created_by && lb.created_by && strcmp(la.created_by, lb.created_by) == 0);
        CHECK(pht_image_layer_count(img) == pht_image_layer_count(arc));
        CHECK(read_all(img, "/etc/passwd", a, sizeof a) > 0);
        CHECK(read_all(arc, "/etc/passwd", b, sizeof b) > 0);
        CHECK(strcmp(a, b) == 0);
    }
    pht_image_layer li;
    CHECK_OK(pht_image_layer_info(img, 0, &li, &err), &err);
    CHECK(
        dt_sh(
            a, sizeof a,
            "docker image inspect --format '{{index .RootFS.Layers 0}}' pht-test/busybox:latest") ==
        0);
    CHECK(strcmp(li.diff_id, a) == 0);
    pht_image_free(img);
    pht_image_free(arc);

    /* by id, and a bare name means :latest */
    snprintf(ref, sizeof ref, "docker-daemon:%s", id);
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    pht_image_free(img);
    CHECK_OK(pht_image_open(&img, "docker-daemon:pht-test/busybox", NULL, &err), &err);
    pht_image_free(img);
}

static void test_read_errors(void)
{
    pht_error err;
    pht_image *img = NULL;
    char ref[400];
    snprintf(ref, sizeof ref, "docker-daemon:%s:absent", repo);
    CHECK_CODE(pht_image_open(&img, ref, NULL, &err), PHT_ENOTFOUND, &err);
    CHECK(img == NULL);
    CHECK_STR_CONTAINS(err.message, ref);
    CHECK_STR_CONTAINS(err.message, "has no such image (HTTP 404)");
    /* the name once: in the reference, not again in the daemon's words */
    CHECK(strstr(strstr(err.message, repo) + strlen(repo), repo) == NULL);
    CHECK_CODE(pht_image_open(&img, "docker-daemon:a b", NULL, &err), PHT_EINVAL, &err);
    CHECK_STR_CONTAINS(err.message, "is not a Docker image name");
    CHECK_CODE(pht_image_open(&img, "docker-daemon:", NULL, &err), PHT_EINVAL, &err);

    char *old = strdup(getenv("DOCKER_HOST") ? getenv("DOCKER_HOST") : "");
    char gone[800];
    snprintf(gone, sizeof gone, "unix://%s/gone-%ld.sock", test_tmpdir(), (long)getpid());
    setenv("DOCKER_HOST", gone, 1);
    CHECK_CODE(pht_image_open(&img, "docker-daemon:pht-test/busybox:latest", NULL, &err), PHT_EHTTP,
               &err);
    CHECK_STR_CONTAINS(err.message, "cannot connect to unix://");
    CHECK_STR_CONTAINS(err.message, "No such file or directory");
    if (old[0])
        setenv("DOCKER_HOST", old, 1);
    else
        unsetenv("DOCKER_HOST");
    free(old);
}

static void test_write(void)
{
    pht_error err;
    pht_image *img = NULL, *again = NULL;
    pht_image_writer *w = NULL;
    char ref[400], tag[300], out[4096], first[256], second[256];
    snprintf(tag, sizeof tag, "%s:w1", repo);
    snprintf(ref, sizeof ref, "docker-daemon:%s", tag);
    CHECK_OK(pht_image_open(&img, "docker-daemon:pht-test/busybox:latest", NULL, &err), &err);
    if (img == NULL) return;
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/hello.txt", "hello daemon\n", 13, NULL, &err),
             &err);
    char marker[300];
    snprintf(marker, sizeof marker, "written %s", repo);
    pht_image_commit_opts co = {.created_by = marker, .comment = "first"};
    CHECK_OK(pht_image_writer_commit(w, ref, &co, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(img);
    /* the oracle: a container of the new image sees the file */
    CHECK(dt_sh(out, sizeof out, "docker run --rm --network none %s cat /opt/hello.txt", tag) == 0);
    CHECK(strcmp(out, "hello daemon") == 0);
    cli_id(tag, first, sizeof first);
    CHECK(first[0] != '\0');
    CHECK(images_with(marker) == 1); /* the oracle the failure cases rely on */

    /* in place: the tag moves, the image it named goes */
    CHECK_OK(pht_image_open(&again, ref, NULL, &err), &err);
    if (again == NULL) return;
    CHECK(pht_image_layer_count(again) == 2);
    pht_image_layer li;
    CHECK_OK(pht_image_layer_info(again, 1, &li, &err), &err);
    CHECK(li.created_by && strcmp(li.created_by, marker) == 0);
    /* /opt lands from a scratch container; a reader on it outlives landing every layer */
    pht_image_reader *r = NULL;
    size_t got = 0;
    CHECK_OK(pht_image_open_file(again, "/opt/hello.txt", &r, &err), &err);
    CHECK(li.size == 0); /* nothing saved for /opt */
    CHECK(read_all(again, "/etc/passwd", out, sizeof out) > 0);
    CHECK_OK(pht_image_layer_info(again, 1, &li, &err), &err);
    CHECK(li.size > 0);
    if (r) CHECK_OK(pht_image_reader_read(r, out, sizeof out - 1, &got, &err), &err);
    out[got] = '\0';
    CHECK(strcmp(out, "hello daemon\n") == 0);
    pht_image_reader_free(r);
    CHECK(dt_sh(out, sizeof out, "docker ps -aq --filter label=org.pht.libpht.scratch") == 0);
    CHECK(out[0] == '\0');
    CHECK_OK(pht_image_writer_new(again, NULL, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/second.txt", "2\n", 2, NULL, &err), &err);
    const char *extra[] = {NULL};
    char extra_tag[300];
    snprintf(extra_tag, sizeof extra_tag, "%s:w1-copy", repo);
    extra[0] = extra_tag;
    co = (pht_image_commit_opts){.tags = extra, .ntags = 1, .created_by = "libpht test 2"};
    CHECK_OK(pht_image_writer_commit(w, ref, &co, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(again);
    cli_id(tag, second, sizeof second);
    CHECK(second[0] && strcmp(first, second) != 0);
    cli_id(extra_tag, out, sizeof out);
    CHECK(strcmp(out, second) == 0);
    cli_id(first, out, sizeof out);
    CHECK(out[0] == '\0'); /* the untagged image is gone */
    CHECK(dt_sh(out, sizeof out,
                "docker run --rm --network none %s cat /opt/hello.txt /opt/second.txt", tag) == 0);
    CHECK(strcmp(out, "hello daemon\n2") == 0);

    /* writing to an id is refused */
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    char idref[300];
    snprintf(idref, sizeof idref, "docker-daemon:%s", second);
    CHECK_CODE(pht_image_writer_commit(w, idref, NULL, &err), PHT_EINVAL, &err);
    CHECK_STR_CONTAINS(err.message, "write to a NAME[:TAG]");
    pht_image_writer_free(w);
    pht_image_free(img);
    CHECK(dt_sh(NULL, 0, "docker rmi %s %s >/dev/null", tag, extra_tag) == 0);
}

/* A tag the daemon refuses: the load fails, nothing is left behind. */
static void test_refused_tag(void)
{
    pht_error err;
    pht_image *img = NULL;
    pht_image_writer *w = NULL;
    char ref[400], marker[300];
    snprintf(ref, sizeof ref, "docker-daemon:Upper-%s:x", repo);
    snprintf(marker, sizeof marker, "refused %s", repo);
    pht_image_commit_opts co = {.created_by = marker};
    CHECK_OK(pht_image_open(&img, "docker-daemon:pht-test/busybox:latest", NULL, &err), &err);
    if (img == NULL) return;
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/refused.txt", "x", 1, NULL, &err), &err);
    CHECK_CODE(pht_image_writer_commit(w, ref, &co, &err), PHT_EHTTP, &err);
    CHECK_STR_CONTAINS(err.message, "must be lowercase");
    pht_image_writer_free(w);
    pht_image_free(img);
    CHECK(images_with(marker) == 0);
}

/* A stream that breaks halfway: the tag keeps its image, no image is added. */
static void test_broken_stream(void)
{
    pht_error err;
    pht_image *img = NULL, *scratch = NULL;
    pht_image_writer *w = NULL;
    char base[1200], copy[1300], ref[1400], tag[300], before[256], after[256];
    if (dt_base_image(base, sizeof base) == NULL) return;
    /* a one-file image with no busybox layer, at repo:scratch */
    snprintf(tag, sizeof tag, "%s:scratch", repo);
    snprintf(ref, sizeof ref, "docker-daemon:%s", tag);
    snprintf(copy, sizeof copy, "docker-archive:%s", base);
    CHECK_OK(pht_image_open(&img, copy, NULL, &err), &err);
    if (img == NULL) return;
    pht_image_writer_opts wo = {.keep_layers = 0};
    CHECK_OK(pht_image_writer_new(img, &wo, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/only.txt", "only\n", 5, NULL, &err), &err);
    CHECK_OK(pht_image_writer_commit(w, ref, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(img);
    cli_id(tag, before, sizeof before);
    CHECK(before[0] != '\0');
    char marker[300];
    snprintf(marker, sizeof marker, "broken %s", repo);
    pht_image_commit_opts co = {.created_by = marker};

    /* the layers come from an archive the daemon has no image of, cut short before the commit */
    snprintf(copy, sizeof copy, "%s/broken-%ld.tar", test_tmpdir(), (long)getpid());
    snprintf(ref, sizeof ref, "docker-archive:%s", base);
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    if (img == NULL) return;
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/unknown.txt", marker, strlen(marker), NULL, &err),
             &err);
    snprintf(ref, sizeof ref, "docker-archive:%s:x/unknown:1", copy);
    CHECK_OK(pht_image_writer_commit(w, ref, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(img);
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    if (img == NULL) return;
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/x", "x", 1, NULL, &err), &err);
    CHECK(truncate(copy, 4096) == 0);
    snprintf(ref, sizeof ref, "docker-daemon:%s", tag);
    CHECK_CODE(pht_image_writer_commit(w, ref, &co, &err), PHT_EIO, &err);
    CHECK_STR_CONTAINS(err.message, "unexpected end of file");
    pht_image_writer_free(w);
    pht_image_free(img);
    unlink(copy);
    cli_id(tag, after, sizeof after);
    CHECK(strcmp(before, after) == 0);
    CHECK(images_with(marker) == 0);
    CHECK_OK(pht_image_open(&scratch, "docker-daemon:pht-test/busybox:latest", NULL, &err), &err);
    pht_image_free(scratch);
    CHECK(dt_sh(NULL, 0, "docker rmi %s >/dev/null", tag) == 0);
}

/*
 * Layers the daemon holds are not sent: a base read from an archive of an
 * image the daemon has commits to a new tag even when that archive is cut
 * short before the commit.
 */
static void test_known_base(void)
{
    pht_error err;
    pht_image *img = NULL;
    pht_image_writer *w = NULL;
    char base[1200], copy[1300], ref[1400], tag[300], out[256];
    if (dt_base_image(base, sizeof base) == NULL) return;
    snprintf(copy, sizeof copy, "%s/known-%ld.tar", test_tmpdir(), (long)getpid());
    copy_file(base, copy);
    snprintf(ref, sizeof ref, "docker-archive:%s", copy);
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    if (img == NULL) return;
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/known.txt", "known\n", 6, NULL, &err), &err);
    CHECK(truncate(copy, 4096) == 0);
    snprintf(tag, sizeof tag, "%s:known", repo);
    snprintf(ref, sizeof ref, "docker-daemon:%s", tag);
    CHECK_OK(pht_image_writer_commit(w, ref, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(img);
    unlink(copy);
    CHECK(dt_sh(out, sizeof out, "docker run --rm --network none %s cat /opt/known.txt", tag) == 0);
    CHECK(strcmp(out, "known") == 0);
    CHECK(dt_sh(NULL, 0, "docker rmi %s >/dev/null", tag) == 0);
}

/* 1 if the file system of dir gives back a punched range's blocks. */
static int punch_works(const char *dir)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/punch-probe", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), ok = 0;
    if (fd < 0) return 0;
    unlink(path);
    static char block[1 << 16];
    ok = write(fd, block, sizeof block) == (ssize_t)sizeof block &&
         fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, sizeof block) == 0;
    close(fd);
    return ok;
}

/* The open file of this process that /proc/self/fd names under dir (deleted), as fstat sees it. */
static int spool_under(const char *dir, struct stat *st)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int found = 0;
    while (d && (e = readdir(d)) != NULL) {
        char link[300], to[1400];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, to, sizeof to - 1);
        if (n <= 0) continue;
        to[n] = '\0';
        if (strncmp(to, dir, strlen(dir)) == 0 && to[strlen(dir)] == '/' &&
            strstr(to, "(deleted)") && stat(link, st) == 0 && S_ISREG(st->st_mode)) {
            found = 1;
            break;
        }
    }
    if (d) closedir(d);
    return found;
}

/*
 * The commit sends the new layer and gives its temporary file's blocks back as it goes (its
 * dirty pages dropped, not written back): after the load the writer still holds the file, of
 * the layer's size, with next to nothing allocated; the image holds the bytes.
 */
static void test_spent_layer(void)
{
    pht_error err;
    pht_image *img = NULL;
    pht_image_writer *w = NULL;
    char dir[1200], tag[300], ref[400], out[256], path[1300];
    test_workdir(dir, sizeof dir);
    if (!punch_works(dir)) {
        printf("test_spent_layer: skipped (%s cannot punch holes)\n", dir);
        test_workdir_done(dir);
        return;
    }
    enum { BIG = 24 << 20 };
    unsigned char *big = malloc(BIG);
    CHECK(big != NULL);
    if (big == NULL) return;
    uint32_t x = 2463534242u; /* xorshift: bytes that no layer of the base has */
    for (size_t i = 0; i < BIG; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        big[i] = (unsigned char)x;
    }
    snprintf(path, sizeof path, "%s/big.bin", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(big, 1, BIG, f) == BIG);
    if (f) fclose(f);
    snprintf(tag, sizeof tag, "%s:spent", repo);
    snprintf(ref, sizeof ref, "docker-daemon:%s", tag);
    CHECK_OK(pht_image_open(&img, "docker-daemon:pht-test/busybox:latest", NULL, &err), &err);
    pht_image_writer_opts wo = {.keep_layers = -1, .tmpdir = dir};
    if (img) CHECK_OK(pht_image_writer_new(img, &wo, &w, &err), &err);
    if (w) {
        CHECK_OK(pht_image_writer_add_bytes(w, "/opt/big.bin", big, BIG, NULL, &err), &err);
        struct stat st;
        CHECK(spool_under(dir, &st));
        /* all there before, but what the writer still buffers (its ring, the archive's block) */
        CHECK((uint64_t)st.st_blocks * 512 >= BIG - (4u << 20));
        CHECK_OK(pht_image_writer_commit(w, ref, NULL, &err), &err);
        CHECK(spool_under(dir, &st)); /* still the writer's until it is freed */
        CHECK(st.st_size > BIG);
        CHECK((uint64_t)st.st_blocks * 512 < (1u << 20));
        pht_image_writer_free(w);
        CHECK(!spool_under(dir, &st));
    }
    pht_image_free(img);
    free(big);
    char want[256];
    CHECK(dt_sh(want, sizeof want, "sha256sum < '%s'", path) == 0);
    CHECK(dt_sh(out, sizeof out, "docker run --rm --network none %s sha256sum /opt/big.bin", tag) ==
          0);
    CHECK(strncmp(out, want, 64) == 0);
    CHECK(dt_sh(NULL, 0, "docker rmi %s >/dev/null", tag) == 0);
    test_workdir_done(dir);
}

int main(void)
{
    dt_name("dmn", repo, sizeof repo);
    if (dt_daemon_up("test_image_daemon") > 0) {
        char base[1200];
        if (dt_base_image(base, sizeof base) &&
            dt_sh(NULL, 0,
                  "docker image inspect pht-test/busybox:latest >/dev/null 2>&1 || "
                  "docker load -q -i '%s' >/dev/null",
                  base) != 0)
            test_failures++;
        test_read();
        test_read_errors();
        test_write();
        test_refused_tag();
        test_broken_stream();
        test_known_base();
        test_spent_layer();
    }
    TEST_DONE();
}
