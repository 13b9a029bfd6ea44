/*
 * The Docker Engine client against the real daemon, with the docker CLI as
 * the oracle: version, load, inspect, tag, save, remove, containers, pruning
 * what libpht untagged; and the errors for a bad endpoint, a bad name, a
 * missing image, a refused archive and an unreachable daemon.
 */
#include <fcntl.h>

#include "docker_test.h"

static void test_open(void)
{
    pht_docker *d = NULL;
    pht_error err;
    char *old = getenv("DOCKER_HOST") ? strdup(getenv("DOCKER_HOST")) : NULL;
    setenv("DOCKER_HOST", "unix:///tmp/from-env.sock", 1);
    CHECK_OK(pht_docker_open(&d, NULL, &err), &err);
    if (d) CHECK(strcmp(pht_docker_host(d), "unix:///tmp/from-env.sock") == 0);
    pht_docker_free(d);
    CHECK_OK(pht_docker_open(&d, "unix:///tmp/arg.sock", &err), &err);
    if (d) CHECK(strcmp(pht_docker_host(d), "unix:///tmp/arg.sock") == 0);
    pht_docker_free(d);
    unsetenv("DOCKER_HOST");
    CHECK_OK(pht_docker_open(&d, "", &err), &err);
    if (d) CHECK(strcmp(pht_docker_host(d), PHT_DOCKER_DEFAULT_HOST) == 0);
    pht_docker_free(d);
    setenv("DOCKER_HOST", "ssh://user@host", 1);
    CHECK_CODE(pht_docker_open(&d, NULL, &err), PHT_EINVAL, &err);
    CHECK_STR_CONTAINS(err.message, "ssh://user@host (DOCKER_HOST)");
    setenv("DOCKER_TLS_VERIFY", "1", 1);
    CHECK_CODE(pht_docker_open(&d, "tcp://127.0.0.1:2376", &err), PHT_EINVAL, &err);
    CHECK_STR_CONTAINS(err.message, "DOCKER_TLS_VERIFY");
    unsetenv("DOCKER_TLS_VERIFY");
    if (old) setenv("DOCKER_HOST", old, 1);
    else unsetenv("DOCKER_HOST");
    free(old);
    pht_docker_free(NULL);
}

static void test_names(void)
{
    pht_error err;
    const char *good[] = {"busybox", "pht/train:latest", "127.0.0.1:5000/a/b:v1.2-x",
                          "repo@sha256:34af586565ef1a539251fbaeb7d5e79a55ead5f3f8ab9082fee1e08784e17dd1",
                          "sha256:34af586565ef1a539251fbaeb7d5e79a55ead5f3f8ab9082fee1e08784e17dd1"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) CHECK(pht_docker_name_valid(good[i], &err));
    const char *bad[] = {"", "a b", "../x", "/abs", "a//b", "x:", "a?b", "a%2Fb", "-x", "a/"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(!pht_docker_name_valid(bad[i], &err));
        CHECK(err.code == PHT_EINVAL);
        CHECK_STR_CONTAINS(err.message, "is not a Docker image name");
    }
}

static void test_unreachable(void)
{
    char ep[800];
    snprintf(ep, sizeof ep, "unix://%s/no-daemon-%ld.sock", test_tmpdir(), (long)getpid());
    pht_docker *d = NULL;
    pht_error err;
    CHECK_OK(pht_docker_open(&d, ep, &err), &err);
    if (d == NULL) return;
    CHECK_CODE(pht_docker_ping(d, &err), PHT_EHTTP, &err);
    CHECK_STR_CONTAINS(err.message, "Docker daemon ping: cannot connect to unix://");
    CHECK_STR_CONTAINS(err.message, "No such file or directory");
    pht_docker_image_info info;
    CHECK_CODE(pht_docker_image_inspect(d, "busybox", &info, &err), PHT_EHTTP, &err);
    CHECK_STR_CONTAINS(err.message, "inspect image busybox: cannot connect");
    pht_docker_free(d);
}

/* ---- against the daemon ---------------------------------------------------------- */

static int count_cb(void *ud, const pht_docker_container *c)
{
    int *n = ud;
    CHECK(strcmp(c->state, "created") == 0);
    CHECK(strncmp(c->image_id, "sha256:", 7) == 0);
    CHECK(strncmp(c->name, "pht-test-c", 10) == 0);
    (*n)++;
    return 0;
}

static int stop_cb(void *ud, const pht_docker_container *c)
{
    (void)ud;
    (void)c;
    return 42;
}

static void test_version(pht_docker *d)
{
    pht_docker_version_info v;
    pht_error err;
    char out[256];
    CHECK_OK(pht_docker_ping(d, &err), &err);
    CHECK_OK(pht_docker_version(d, &v, &err), &err);
    CHECK(dt_sh(out, sizeof out, "docker version --format '{{.Server.Version}} {{.Server.APIVersion}}'") == 0);
    char want[256];
    snprintf(want, sizeof want, "%s %s", v.version, v.api_version);
    CHECK(strcmp(out, want) == 0);
    CHECK(v.min_api_version[0] != '\0' && strcmp(v.os, "linux") == 0);
}

static void test_images(pht_docker *d)
{
    pht_error err;
    char base[1200], repo[200], t1[300], out[8192], file[1200];
    if (dt_base_image(base, sizeof base) == NULL) return;
    dt_name("img", repo, sizeof repo);

    /* load: the daemon reports the tag, and the CLI sees the same image */
    int fd = open(base, O_RDONLY);
    char *report = NULL;
    CHECK_OK(pht_docker_image_load_fd(d, fd, &report, &err), &err);
    close(fd);
    CHECK(report && strstr(report, "Loaded image: pht-test/busybox:latest\n"));
    free(report);
    pht_docker_image_info info;
    CHECK_OK(pht_docker_image_inspect(d, "pht-test/busybox:latest", &info, &err), &err);
    CHECK(dt_sh(out, sizeof out, "docker image inspect --format '{{.Id}}' pht-test/busybox:latest") == 0);
    CHECK(strcmp(info.id, out) == 0);
    CHECK(dt_sh(out, sizeof out, "docker image inspect --format '{{range .RootFS.Layers}}{{.}} {{end}}' "
                "pht-test/busybox:latest") == 0);
    CHECK(info.nlayers == 1 && info.layers && strstr(out, info.layers[0]) == out);
    char id[PHT_DOCKER_ID_MAX];
    snprintf(id, sizeof id, "%s", info.id);
    pht_docker_image_info_clear(&info);

    /* tag: explicit and bare (":latest") */
    snprintf(t1, sizeof t1, "%s:t1", repo);
    CHECK_OK(pht_docker_image_tag(d, "pht-test/busybox:latest", t1, &err), &err);
    CHECK_OK(pht_docker_image_tag(d, id, repo, &err), &err);
    CHECK(dt_sh(out, sizeof out, "docker image inspect --format '{{.Id}}' %s:t1 %s:latest", repo, repo) == 0);
    char two[300];
    snprintf(two, sizeof two, "%s\n%s", id, id);
    CHECK(strcmp(out, two) == 0);
    CHECK_OK(pht_docker_image_inspect(d, t1, &info, &err), &err);
    CHECK(info.ntags >= 3);
    pht_docker_image_info_clear(&info);
    CHECK_CODE(pht_docker_image_tag(d, id, "x@sha256:00", &err), PHT_EINVAL, &err);

    /* save: a docker-archive whose config digest is the image id */
    snprintf(file, sizeof file, "%s/docker-save-%ld.tar", test_tmpdir(), (long)getpid());
    fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK_OK(pht_docker_image_save_fd(d, t1, fd, &err), &err);
    close(fd);
    CHECK(dt_sh(out, sizeof out, "tar -xOf '%s' manifest.json", file) == 0);
    CHECK_STR_CONTAINS(out, t1);
    CHECK(dt_sh(out, sizeof out, "tar -xOf '%s' '%s.json' | sha256sum | cut -d' ' -f1", file, id + 7) == 0);
    CHECK(strcmp(out, id + 7) == 0);
    unlink(file);

    /* missing images */
    char missing[300];
    snprintf(missing, sizeof missing, "%s:absent", repo);
    CHECK_CODE(pht_docker_image_inspect(d, missing, &info, &err), PHT_ENOTFOUND, &err);
    CHECK_STR_CONTAINS(err.message, "inspect image ");
    CHECK_STR_CONTAINS(err.message, "answered HTTP 404");
    CHECK_STR_CONTAINS(err.message, "No such image");
    CHECK_STR_CONTAINS(err.message, dt_endpoint());
    fd = open("/dev/null", O_WRONLY);
    CHECK_CODE(pht_docker_image_save_fd(d, missing, fd, &err), PHT_ENOTFOUND, &err);
    CHECK_STR_CONTAINS(err.message, "save image ");
    close(fd);
    CHECK_CODE(pht_docker_image_inspect(d, "a b", &info, &err), PHT_EINVAL, &err);

    /* a load the daemon refuses: its message comes through */
    snprintf(file, sizeof file, "%s/not-an-archive-%ld", test_tmpdir(), (long)getpid());
    CHECK(dt_sh(NULL, 0, "printf 'this is not a tar archive' > '%s'", file) == 0);
    fd = open(file, O_RDONLY);
    CHECK_CODE(pht_docker_image_load_fd(d, fd, NULL, &err), PHT_EHTTP, &err);
    CHECK_STR_CONTAINS(err.message, "load image: the Docker daemon at ");
    close(fd);
    unlink(file);

    /* remove: a tag goes, the image stays for its other tags */
    CHECK_OK(pht_docker_image_remove(d, t1, 0, &err), &err);
    CHECK(dt_sh(NULL, 0, "docker image inspect %s >/dev/null 2>&1", t1) != 0);
    CHECK_CODE(pht_docker_image_remove(d, t1, 0, &err), PHT_ENOTFOUND, &err);
    /* by id while two tags name it: the daemon refuses with 409 */
    CHECK_CODE(pht_docker_image_remove(d, id, 0, &err), PHT_ESTATE, &err);
    CHECK_STR_CONTAINS(err.message, "HTTP 409");
    CHECK(dt_sh(NULL, 0, "docker image inspect pht-test/busybox:latest >/dev/null 2>&1") == 0);
    CHECK_OK(pht_docker_image_remove(d, repo, 0, &err), &err);
}

static void test_containers_and_prune(pht_docker *d)
{
    pht_error err;
    char c1[200], c2[200], out[4096], filt[400], dangling[PHT_DOCKER_ID_MAX];
    dt_name("ctr1", c1, sizeof c1);
    dt_name("ctr2", c2, sizeof c2);
    CHECK(dt_sh(NULL, 0, "docker create --network none --name %s pht-test/busybox:latest true >/dev/null", c1) == 0);
    snprintf(filt, sizeof filt, "{\"name\":[\"%s\"]}", c1);
    int n = 0;
    CHECK_OK(pht_docker_containers(d, 1, filt, count_cb, &n, &err), &err);
    CHECK(n == 1);
    n = 0;
    CHECK_OK(pht_docker_containers(d, 0, filt, count_cb, &n, &err), &err); /* not running */
    CHECK(n == 0);
    CHECK(pht_docker_containers(d, 1, filt, stop_cb, NULL, &err) == 42);
    CHECK_CODE(pht_docker_containers(d, 1, "{not json", count_cb, &n, &err), PHT_EHTTP, &err);
    CHECK_STR_CONTAINS(err.message, "list containers: the Docker daemon at ");

    /* an untagged image from a commit: dangling until a container uses it */
    CHECK(dt_sh(out, sizeof out, "docker commit %s", c1) == 0);
    snprintf(dangling, sizeof dangling, "%.71s", out);
    CHECK(dt_sh(NULL, 0, "docker create --network none --name %s %s true >/dev/null", c2, dangling) == 0);
    int removed = -1;
    CHECK_OK(pht_docker_prune_image(d, dangling, &removed, &err), &err);
    CHECK(removed == 0);
    CHECK(dt_sh(NULL, 0, "docker image inspect %s >/dev/null 2>&1", dangling) == 0);
    CHECK(dt_sh(NULL, 0, "docker rm %s >/dev/null", c2) == 0);
    CHECK_OK(pht_docker_prune_image(d, dangling, &removed, &err), &err);
    CHECK(removed == 1);
    CHECK(dt_sh(NULL, 0, "docker image inspect %s >/dev/null 2>&1", dangling) != 0);
    CHECK_OK(pht_docker_prune_image(d, dangling, &removed, &err), &err); /* gone already */
    CHECK(removed == 0);
    /* a tagged image is never pruned */
    CHECK_OK(pht_docker_prune_image(d, "pht-test/busybox:latest", &removed, &err), &err);
    CHECK(removed == 0);
    CHECK(dt_sh(NULL, 0, "docker image inspect pht-test/busybox:latest >/dev/null 2>&1") == 0);
    CHECK(dt_sh(NULL, 0, "docker rm %s >/dev/null", c1) == 0);
}

/*
 * The logs of a container whose output interleaves stdout and stderr, with
 * frames larger than any read: each stream split out whole, compared with
 * what `docker logs` gives on its own stdout and stderr.
 */
static void test_container_logs(pht_docker *d, const char *id, const char *name)
{
    pht_error err;
    char fout[600], ferr[600], out[4096];
    snprintf(fout, sizeof fout, "%s/logs-out-%ld", test_tmpdir(), (long)getpid());
    snprintf(ferr, sizeof ferr, "%s/logs-err-%ld", test_tmpdir(), (long)getpid());
    int o = open(fout, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open(ferr, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(o >= 0 && e >= 0);
    CHECK_OK(pht_docker_container_logs_fd(d, id, 1, o, e, &err), &err);
    close(o);
    close(e);
    CHECK(dt_sh(out, sizeof out, "wc -c <'%s'", fout) == 0);
    CHECK(atol(out) == 5 + 300000 + 1 + 5);
    CHECK(dt_sh(out, sizeof out, "docker logs %s 2>/dev/null | cmp - '%s' && echo same", name, fout) == 0);
    CHECK_STR_CONTAINS(out, "same");
    CHECK(dt_sh(out, sizeof out, "docker logs %s 2>&1 >/dev/null | cmp - '%s' && echo same", name, ferr) == 0);
    CHECK_STR_CONTAINS(out, "same");
    CHECK(dt_sh(out, sizeof out, "cat '%s'", ferr) == 0);
    CHECK(strcmp(out, "err1\nerr2") == 0 || strcmp(out, "err1\nerr2\n") == 0);
    /* a dropped stream: stderr only */
    e = open(ferr, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK_OK(pht_docker_container_logs_fd(d, id, 0, -1, e, &err), &err);
    close(e);
    CHECK(dt_sh(out, sizeof out, "wc -c <'%s'", ferr) == 0);
    CHECK(atol(out) == 10);
    CHECK_CODE(pht_docker_container_logs_fd(d, "-bad", 0, -1, -1, &err), PHT_EINVAL, &err);
    unlink(fout);
    unlink(ferr);
}

typedef struct labelled {
    const char *id;
    int found;
} labelled;

static int find_image(void *ud, const char *id, const char *value)
{
    labelled *lb = ud;
    if (strcmp(id, lb->id) == 0 && value && strcmp(value, "yes") == 0) lb->found++;
    return 0;
}

/* create, start, wait, commit and remove a container through the Engine API */
static void test_container_run(pht_docker *d)
{
    pht_error err;
    char name[200], id[PHT_DOCKER_ID_MAX], img[PHT_DOCKER_ID_MAX], out[4096], repo[200];
    dt_name("run", name, sizeof name);
    dt_name("commit", repo, sizeof repo);
    const char *cfg = "{\"Image\":\"pht-test/busybox:latest\",\"Cmd\":[\"sh\",\"-c\","
                      "\"echo made >/made.txt; echo out1; echo err1 >&2; "
                      "head -c 300000 /dev/zero | tr '\\\\000' x; echo; echo err2 >&2; "
                      "echo out2; exit 3\"],\"Labels\":{\"org.pht.test.run\":\"yes\"},"
                      "\"HostConfig\":{\"NetworkMode\":\"none\"}}";
    CHECK_OK(pht_docker_container_create(d, name, cfg, id, &err), &err);
    CHECK_OK(pht_docker_container_start(d, id, &err), &err);
    int status = 0;
    CHECK_OK(pht_docker_container_wait(d, id, &status, &err), &err);
    CHECK(status == 3);
    CHECK(dt_sh(out, sizeof out, "docker inspect -f '{{.State.ExitCode}}' %s", name) == 0);
    CHECK_STR_CONTAINS(out, "3");
    CHECK_OK(pht_docker_container_commit(d, id, repo, "t1", img, &err), &err);
    CHECK_STR_CONTAINS(img, "sha256:");
    test_container_logs(d, id, name);
    /* the commit carries the container's label: the images with it include it, with its value */
    labelled lb = {img, 0};
    CHECK_OK(pht_docker_images_labelled(d, "org.pht.test.run", find_image, &lb, &err), &err);
    CHECK(lb.found == 1);
    CHECK_CODE(pht_docker_images_labelled(d, "", find_image, &lb, &err), PHT_EINVAL, &err);
    CHECK(dt_sh(out, sizeof out, "docker run --rm --network none %s:t1 cat /made.txt", repo) == 0);
    CHECK_STR_CONTAINS(out, "made");
    CHECK_OK(pht_docker_container_remove(d, id, &err), &err);
    CHECK(dt_sh(NULL, 0, "docker inspect %s >/dev/null 2>&1", name) != 0);
    CHECK_CODE(pht_docker_container_start(d, id, &err), PHT_ENOTFOUND, &err);
    CHECK_STR_CONTAINS(err.message, "start container ");
    CHECK_CODE(pht_docker_container_wait(d, id, &status, &err), PHT_ENOTFOUND, &err);
    CHECK(status == -1);
    CHECK_CODE(pht_docker_container_commit(d, "-bad", "", "", img, &err), PHT_EINVAL, &err);
    CHECK(dt_sh(NULL, 0, "docker rmi %s:t1 >/dev/null", repo) == 0);
}

int main(void)
{
    test_open();
    test_names();
    test_unreachable();
    if (dt_daemon_up("test_docker") > 0) {
        pht_docker *d = NULL;
        pht_error err;
        CHECK_OK(pht_docker_open(&d, dt_endpoint(), &err), &err);
        if (d) {
            test_version(d);
            test_images(d);
            test_containers_and_prune(d);
            test_container_run(d);
        }
        pht_docker_free(d);
    }
    TEST_DONE();
}
