/*
 * The registry client: endpoints, where credentials come from (auth files
 * in containers/image's order, namespaced entries, malformed files), cert
 * dirs; then blobs and manifests against the suite's real registries (plain
 * HTTP, TLS with the test CA, basic auth), skipped when the run started none.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static char work[700];

/* Write a file under the scratch directory; returns its path (static buffer per slot). */
static const char *put_file(int slot, const char *name, const char *text)
{
    static char paths[8][900];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", work, name);
    char *dir = strdup(paths[slot]);
    *strrchr(dir, '/') = '\0';
    pht_error err;
    pht_mkdir(dir, 0700, 1, &err);
    free(dir);
    unlink(paths[slot]);
    CHECK_OK(pht_write_file(paths[slot], text, strlen(text), 0600, &err), &err);
    return paths[slot];
}

static void test_open(void)
{
    const char *good[] = {"127.0.0.1:5000", "registry.example", "https://registry.example:443/",
                          "localhost",      "[::1]:5000",       "docker.io"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        pht_registry *r = NULL;
        pht_error err;
        CHECK_OK(pht_registry_open(&r, good[i], NULL, &err), &err);
        pht_registry_free(r);
    }
    pht_registry *r = NULL;
    pht_error err;
    CHECK_OK(pht_registry_open(&r, "https://h.example:5000/", NULL, &err), &err);
    if (r) CHECK(strcmp(pht_registry_host(r), "h.example:5000") == 0);
    pht_registry_free(r);

    const char *bad[] = {"", "h.example/path", "user@h.example", "ftp://h.example", "h x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = NULL;
        CHECK_CODE(pht_registry_open(&r, bad[i], NULL, &err), PHT_EINVAL, &err);
        CHECK(r == NULL);
        CHECK_STR_CONTAINS(err.message, "HOST[:PORT]");
    }
    CHECK_CODE(pht_registry_open(&r, "http://h.example", NULL, &err), PHT_EINVAL, &err);
    CHECK_STR_CONTAINS(err.message, "tls_verify");
    pht_registry_options o;
    pht_registry_options_init(&o);
    o.creds = "no-colon";
    CHECK_CODE(pht_registry_open(&r, "h.example", &o, &err), PHT_EINVAL, &err);
    CHECK_STR_CONTAINS(err.message, "USER:PASSWORD");
    CHECK(strstr(err.message, "no-colon") == NULL);
    pht_registry_free(NULL);
}

/* The user and source the client settles on for repo. */
static void creds_of(pht_registry *r, const char *repo, char *user, char *source)
{
    pht_error err;
    CHECK_OK(pht_registry_credentials(r, repo, user, 200, source, 600, &err), &err);
}

static void test_credentials(void)
{
    /* base64("robot$station_2:pw-ns"), ("robot$station_9:pw-host"), ("docker:pw-docker") */
    const char *ns = "cm9ib3Qkc3RhdGlvbl8yOnB3LW5z";
    const char *host = "cm9ib3Qkc3RhdGlvbl85OnB3LWhvc3Q=";
    const char *dock = "ZG9ja2VyOnB3LWRvY2tlcg==";
    char text[2000], user[200], source[600];
    snprintf(text, sizeof text,
             "{\"auths\": {\"reg.example:5000/station_2\": {\"auth\": \"%s\"},"
             " \"reg.example:5000\": {\"auth\": \"%s\"}}}",
             ns, host);
    const char *runtime = put_file(0, "run/containers/auth.json", text);
    snprintf(text, sizeof text,
             "{\"auths\": {\"https://reg.example:5000/v1/\": {\"auth\": \"%s\"},"
             " \"other.example\": {}}}",
             dock);
    put_file(1, "home/.docker/config.json", text);
    char run[900], home[900];
    snprintf(run, sizeof run, "%s/run", work);
    snprintf(home, sizeof home, "%s/home", work);
    setenv("XDG_RUNTIME_DIR", run, 1);
    setenv("HOME", home, 1);
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("DOCKER_CONFIG");
    unsetenv("REGISTRY_AUTH_FILE");

    pht_registry *r = NULL;
    pht_error err;
    CHECK_OK(pht_registry_open(&r, "reg.example:5000", NULL, &err), &err);
    /* The namespace's entry before the host's; the host's for other repositories. */
    creds_of(r, "station_2/train", user, source);
    CHECK(strcmp(user, "robot$station_2") == 0);
    CHECK_STR_CONTAINS(source, runtime);
    CHECK_STR_CONTAINS(source, "reg.example:5000/station_2");
    creds_of(r, "station_3/train", user, source);
    CHECK(strcmp(user, "robot$station_9") == 0);
    CHECK_STR_CONTAINS(source, "\"reg.example:5000\"");
    pht_registry_free(r);

    /* Without the runtime file, ~/.docker/config.json and its legacy key. */
    unlink(runtime);
    CHECK_OK(pht_registry_open(&r, "reg.example:5000", NULL, &err), &err);
    creds_of(r, "station_2/train", user, source);
    CHECK(strcmp(user, "docker") == 0);
    CHECK_STR_CONTAINS(source, ".docker/config.json");
    pht_registry_free(r);

    /* A registry no file names: anonymous, saying where it looked. */
    CHECK_OK(pht_registry_open(&r, "other.example", NULL, &err), &err);
    creds_of(r, "x/y", user, source);
    CHECK(strcmp(user, "") == 0);
    CHECK_STR_CONTAINS(source, "anonymous");
    CHECK_STR_CONTAINS(source, ".docker/config.json");
    pht_registry_free(r);

    /* REGISTRY_AUTH_FILE alone, and --creds before everything. */
    snprintf(text, sizeof text, "{\"auths\": {\"reg.example:5000\": {\"auth\": \"%s\"}}}", ns);
    const char *envfile = put_file(2, "env-auth.json", text);
    setenv("REGISTRY_AUTH_FILE", envfile, 1);
    CHECK_OK(pht_registry_open(&r, "reg.example:5000", NULL, &err), &err);
    creds_of(r, "station_2/train", user, source);
    CHECK(strcmp(user, "robot$station_2") == 0);
    CHECK_STR_CONTAINS(source, "REGISTRY_AUTH_FILE=");
    pht_registry_free(r);
    pht_registry_options o;
    pht_registry_options_init(&o);
    o.creds = "robot$station_5:pw5";
    CHECK_OK(pht_registry_open(&r, "reg.example:5000", &o, &err), &err);
    creds_of(r, "station_2/train", user, source);
    CHECK(strcmp(user, "robot$station_5") == 0);
    CHECK(strcmp(source, "--creds") == 0);
    pht_registry_free(r);
    pht_registry_options_init(&o);
    o.anonymous = 1;
    CHECK_OK(pht_registry_open(&r, "reg.example:5000", &o, &err), &err);
    creds_of(r, "station_2/train", user, source);
    CHECK(strcmp(user, "") == 0);
    pht_registry_free(r);

    /* A malformed file is named, its content is not repeated. */
    const char *broken = put_file(
        3, "broken.json", "{\"auths\": {\"reg.example:5000\": {\"auth\": \"!!secret!!\"}}}");
    pht_registry_options_init(&o);
    o.auth_file = broken;
    CHECK_OK(pht_registry_open(&r, "reg.example:5000", &o, &err), &err);
    CHECK_CODE(pht_registry_credentials(r, "a/b", user, sizeof user, source, sizeof source, &err),
               PHT_EFORMAT, &err);
    CHECK_STR_CONTAINS(err.message, broken);
    CHECK(strstr(err.message, "secret") == NULL);
    pht_registry_free(r);
    put_file(3, "broken.json", "{\"auths\": {\"reg.example:5000\": {\"identitytoken\": \"tok\"}}}");
    CHECK_OK(pht_registry_open(&r, "reg.example:5000", &o, &err), &err);
    CHECK_CODE(pht_registry_credentials(r, "a/b", user, sizeof user, source, sizeof source, &err),
               PHT_EFORMAT, &err);
    CHECK_STR_CONTAINS(err.message, "identity token");
    pht_registry_free(r);
    put_file(3, "broken.json", "not json at all: hunter2");
    CHECK_OK(pht_registry_open(&r, "reg.example:5000", &o, &err), &err);
    CHECK_CODE(pht_registry_credentials(r, "a/b", user, sizeof user, source, sizeof source, &err),
               PHT_EFORMAT, &err);
    CHECK(strstr(err.message, "hunter2") == NULL);
    pht_registry_free(r);
    unsetenv("REGISTRY_AUTH_FILE");
    unsetenv("XDG_RUNTIME_DIR");
}

static void test_cert_dir(void)
{
    pht_registry *r = NULL;
    pht_error err;
    pht_registry_options o;
    pht_registry_options_init(&o);
    char dir[900];
    snprintf(dir, sizeof dir, "%s/certs-half", work);
    put_file(0, "certs-half/client.cert", "not used");
    o.cert_dir = dir;
    CHECK_CODE(pht_registry_open(&r, "reg.example", &o, &err), PHT_EKEY, &err);
    CHECK_STR_CONTAINS(err.message, "client.cert has no client.key");
    snprintf(dir, sizeof dir, "%s/certs-bad", work);
    put_file(0, "certs-bad/ca.crt",
             "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    CHECK_CODE(pht_registry_open(&r, "reg.example", &o, &err), PHT_EKEY, &err);
    CHECK_STR_CONTAINS(err.message, "ca.crt");
    snprintf(dir, sizeof dir, "%s/no-such-dir", work);
    CHECK(pht_registry_open(&r, "reg.example", &o, &err) != 0);
    CHECK_STR_CONTAINS(err.message, "cert dir");
    CHECK(r == NULL);
}

/* ---- against the real registries ---------------------------------------------- */

/* The address in var, or NULL (SKIP printed) when the run started no such registry. */
static const char *service(const char *var, const char *test)
{
    const char *a = getenv(var);
    if (a && a[0]) return a;
    printf("SKIP: %s: no %s (run through tools/test.sh or eval tools/services.sh)\n", test, var);
    return NULL;
}

typedef struct membuf {
    char *p;
    size_t n;
} membuf;

static int mem_sink(void *ud, const void *p, size_t n, pht_error *err)
{
    membuf *m = ud;
    char *b = realloc(m->p, m->n + n + 1);
    if (b == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    memcpy(b + m->n, p, n);
    m->p = b;
    m->n += n;
    return 0;
}

typedef struct memsrc {
    const char *p;
    size_t n, at;
} memsrc;

static int mem_source(void *ud, void *buf, size_t cap, size_t *got, pht_error *err)
{
    memsrc *s = ud;
    size_t k = s->n - s->at < cap ? s->n - s->at : cap;
    memcpy(buf, s->p + s->at, k);
    s->at += k;
    *got = k;
    return 0;
}

static void test_plain_registry(void)
{
    const char *addr = service("PHT_TEST_REGISTRY", "plain registry");
    if (addr == NULL) return;
    pht_registry *r = NULL;
    pht_error err;
    pht_registry_options o;
    pht_registry_options_init(&o);
    o.tls_verify = 0; /* plain http: found by falling back from https */
    o.anonymous = 1;
    CHECK_OK(pht_registry_open(&r, addr, &o, &err), &err);
    if (r == NULL) return;
    CHECK_OK(pht_registry_ping(r, &err), &err);
    char repo[128], other[128];
    snprintf(repo, sizeof repo, "pht-test-creg-%ld/a", (long)getpid());
    snprintf(other, sizeof other, "pht-test-creg-%ld/b", (long)getpid());

    /* A blob of unknown digest, streamed; then found, read back, mounted elsewhere. */
    char data[200000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 7 + getpid());
    memsrc src = {data, sizeof data, 0};
    pht_registry_upload up;
    pht_registry_upload_init(&up);
    up.read = mem_source;
    up.ud = &src;
    char digest[PHT_REGISTRY_DIGEST_MAX];
    int how = 0;
    CHECK_OK(pht_registry_upload_blob(r, repo, &up, digest, &how, &err), &err);
    CHECK(how == PHT_REGISTRY_UPLOADED);
    CHECK(strncmp(digest, "sha256:", 7) == 0);
    int exists = 0;
    int64_t size = 0;
    CHECK_OK(pht_registry_blob_exists(r, repo, digest, &exists, &size, &err), &err);
    CHECK(exists == 1 && size == (int64_t)sizeof data);
    membuf got = {0};
    CHECK_OK(pht_registry_get_blob(r, repo, digest, sizeof data, mem_sink, &got, &err), &err);
    CHECK(got.n == sizeof data && memcmp(got.p, data, sizeof data) == 0);
    free(got.p);
    /* The size the caller expects is enforced both ways. */
    got = (membuf){0};
    CHECK_CODE(pht_registry_get_blob(r, repo, digest, 100, mem_sink, &got, &err), PHT_ELIMIT, &err);
    free(got.p);
    got = (membuf){0};
    CHECK_CODE(pht_registry_get_blob(r, repo, digest, sizeof data + 1, mem_sink, &got, &err),
               PHT_EVERIFY, &err);
    CHECK_STR_CONTAINS(err.message, "bytes came");
    free(got.p);
    int mounted = 0;
    CHECK_OK(pht_registry_mount_blob(r, other, digest, repo, &mounted, &err), &err);
    CHECK(mounted == 1);
    CHECK_OK(pht_registry_blob_exists(r, other, digest, &exists, NULL, &err), &err);
    CHECK(exists == 1);

    /* A claimed digest the bytes do not have is refused before the commit. */
    src.at = 0;
    up.digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    char refused[PHT_REGISTRY_DIGEST_MAX];
    CHECK_CODE(pht_registry_upload_blob(r, repo, &up, refused, &how, &err), PHT_EVERIFY, &err);
    CHECK_STR_CONTAINS(err.message, "not committed");
    CHECK_OK(pht_registry_blob_exists(r, repo, up.digest, &exists, NULL, &err), &err);
    CHECK(exists == 0);

    /* A manifest naming the blob as its config; by tag, by digest, HEAD. */
    char config_digest[PHT_REGISTRY_DIGEST_MAX];
    src.at = 0;
    up.digest = NULL;
    CHECK_OK(pht_registry_upload_blob(r, repo, &up, config_digest, &how, &err), &err);
    char manifest[1024];
    snprintf(manifest, sizeof manifest,
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
             "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
             "\"layers\":[]}",
             PHT_MEDIA_OCI_MANIFEST, config_digest, sizeof data);
    char mdigest[PHT_REGISTRY_DIGEST_MAX];
    CHECK_OK(pht_registry_put_manifest(r, repo, "v1", PHT_MEDIA_OCI_MANIFEST, manifest,
                                       strlen(manifest), mdigest, &err),
             &err);
    pht_registry_manifest m;
    CHECK_OK(pht_registry_get_manifest(r, repo, "v1", &m, &err), &err);
    CHECK(m.len == strlen(manifest) && m.data && memcmp(m.data, manifest, m.len) == 0);
    CHECK(strcmp(m.digest, mdigest) == 0);
    CHECK(strcmp(m.media_type, PHT_MEDIA_OCI_MANIFEST) == 0);
    pht_registry_manifest_clear(&m);
    CHECK_OK(pht_registry_get_manifest(r, repo, mdigest, &m, &err), &err);
    CHECK(m.len == strlen(manifest));
    pht_registry_manifest_clear(&m);
    CHECK_OK(pht_registry_head_manifest(r, repo, "v1", &m, &err), &err);
    CHECK(strcmp(m.digest, mdigest) == 0 && m.data == NULL && m.len == strlen(manifest));
    pht_registry_manifest_clear(&m);
    CHECK_CODE(pht_registry_get_manifest(r, repo, "no-such-tag", &m, &err), PHT_ENOTFOUND, &err);
    CHECK_STR_CONTAINS(err.message, addr);
    CHECK_STR_CONTAINS(err.message, repo);
    CHECK_STR_CONTAINS(err.message, "MANIFEST_UNKNOWN");
    pht_registry_manifest_clear(&m);
    /* A cap below the manifest's size. */
    pht_registry_free(r);
    o.max_manifest = 64;
    CHECK_OK(pht_registry_open(&r, addr, &o, &err), &err);
    CHECK_CODE(pht_registry_get_manifest(r, repo, "v1", &m, &err), PHT_ELIMIT, &err);
    pht_registry_manifest_clear(&m);

    /* A blob to a file: in place when it verifies, nothing when it does not. */
    char path[900];
    snprintf(path, sizeof path, "%s/blob", work);
    CHECK_OK(pht_registry_get_blob_file(r, repo, digest, -1, path, &err), &err);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size == (off_t)sizeof data);
    char bad[900];
    snprintf(bad, sizeof bad, "%s/bad-blob", work);
    CHECK_CODE(pht_registry_get_blob_file(r, repo, digest, 10, bad, &err), PHT_ELIMIT, &err);
    CHECK(stat(bad, &st) != 0);
    char up_digest[PHT_REGISTRY_DIGEST_MAX];
    CHECK_OK(pht_registry_upload_file(r, other, path, digest, NULL, up_digest, &how, &err), &err);
    CHECK(strcmp(up_digest, digest) == 0);
    pht_registry_free(r);
}

static void test_tls_registry(void)
{
    const char *addr = service("PHT_TEST_REGISTRY_TLS", "TLS registry");
    const char *cert_dir = getenv("PHT_TEST_REGISTRY_CERT_DIR");
    if (addr == NULL || cert_dir == NULL) return;
    pht_registry *r = NULL;
    pht_error err;
    pht_registry_options o;
    pht_registry_options_init(&o);
    o.anonymous = 1;
    /* The test CA is not a system CA. */
    CHECK_OK(pht_registry_open(&r, addr, &o, &err), &err);
    CHECK_CODE(pht_registry_ping(r, &err), PHT_EHTTP, &err);
    CHECK_STR_CONTAINS(err.message, addr);
    pht_registry_free(r);
    o.cert_dir = cert_dir;
    CHECK_OK(pht_registry_open(&r, addr, &o, &err), &err);
    CHECK_OK(pht_registry_ping(r, &err), &err);
    int exists = 1;
    CHECK_OK(pht_registry_blob_exists(
                 r, "pht-test-c/none",
                 "sha256:0000000000000000000000000000000000000000000000000000000000000000", &exists,
                 NULL, &err),
             &err);
    CHECK(exists == 0);
    /* A stream of unknown length over HTTP/2 (no chunked encoding there). */
    char data[150000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 13 + getpid());
    memsrc src = {data, sizeof data, 0};
    pht_registry_upload up;
    pht_registry_upload_init(&up);
    up.read = mem_source;
    up.ud = &src;
    char digest[PHT_REGISTRY_DIGEST_MAX], repo[128];
    int how = 0;
    snprintf(repo, sizeof repo, "pht-test-creg-%ld/tls", (long)getpid());
    CHECK_OK(pht_registry_upload_blob(r, repo, &up, digest, &how, &err), &err);
    int64_t size = 0;
    CHECK_OK(pht_registry_blob_exists(r, repo, digest, &exists, &size, &err), &err);
    CHECK(exists == 1 && size == (int64_t)sizeof data);
    pht_registry_free(r);
    o.cert_dir = NULL;
    o.tls_verify = 0;
    CHECK_OK(pht_registry_open(&r, addr, &o, &err), &err);
    CHECK_OK(pht_registry_ping(r, &err), &err);
    pht_registry_free(r);
}

static void test_basic_registry(void)
{
    const char *addr = service("PHT_TEST_REGISTRY_BASIC", "basic-auth registry");
    const char *cert_dir = getenv("PHT_TEST_REGISTRY_CERT_DIR");
    const char *user = getenv("PHT_TEST_REGISTRY_BASIC_USER");
    const char *pass = getenv("PHT_TEST_REGISTRY_BASIC_PASSWORD");
    if (addr == NULL || cert_dir == NULL || user == NULL || pass == NULL) return;
    char creds[300];
    pht_registry *r = NULL;
    pht_error err;
    pht_registry_options o;
    pht_registry_options_init(&o);
    o.cert_dir = cert_dir;
    o.creds = creds;
    snprintf(creds, sizeof creds, "%s:%s", user, pass);
    CHECK_OK(pht_registry_open(&r, addr, &o, &err), &err);
    int exists = 1;
    const char *zero = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    CHECK_OK(pht_registry_blob_exists(r, "station_2/train", zero, &exists, NULL, &err), &err);
    CHECK(exists == 0);
    pht_registry_free(r);
    snprintf(creds, sizeof creds, "%s:wrong-%s", user, pass);
    CHECK_OK(pht_registry_open(&r, addr, &o, &err), &err);
    CHECK_CODE(pht_registry_blob_exists(r, "station_2/train", zero, &exists, NULL, &err), PHT_EHTTP,
               &err);
    CHECK_STR_CONTAINS(err.message, addr);
    CHECK_STR_CONTAINS(err.message, "station_2/train");
    CHECK_STR_CONTAINS(err.message, "--creds");
    CHECK_STR_CONTAINS(err.message, "HTTP 401");
    CHECK(strstr(err.message, pass) == NULL);
    pht_registry_free(r);
}

int main(void)
{
    test_workdir(work, sizeof work);
    test_open();
    test_credentials();
    test_cert_dir();
    test_plain_registry();
    test_tls_registry();
    test_basic_registry();
    test_workdir_done(work);
    TEST_DONE();
}
