/* The image reference grammar (pht/image_ref.h): parts of good references, the error of each bad
 * one. */
#include "test.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* A NULL part is expected absent. */
typedef struct want {
    const char *ref;
    unsigned flags;
    const char *transport, *location, *path, *name, *tag, *digest, *host, *string;
    long index;
} want;

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

#define CHECK_PART(got, exp, what)                                                                 \
    do {                                                                                           \
        if (!same((got), (exp))) {                                                                 \
            fprintf(stderr, "%s:%d: %s of \"%s\": got %s, expected %s\n", __FILE__, __LINE__,      \
                    what, w->ref, (got) ? (got) : "NULL", (exp) ? (exp) : "NULL");                 \
            test_failures++;                                                                       \
        }                                                                                          \
    } while (0)

static void check_good(const want *w)
{
    pht_image_ref *r = NULL;
    pht_error err;
    CHECK_OK(pht_image_ref_parse(w->ref, w->flags, &r, &err), &err);
    if (r == NULL) return;
    CHECK_PART(pht_image_ref_transport(r), w->transport, "transport");
    CHECK_PART(pht_image_ref_location(r), w->location, "location");
    CHECK_PART(pht_image_ref_path(r), w->path, "path");
    CHECK_PART(pht_image_ref_name(r), w->name, "name");
    CHECK_PART(pht_image_ref_tag(r), w->tag, "tag");
    CHECK_PART(pht_image_ref_digest(r), w->digest, "digest");
    CHECK_PART(pht_image_ref_host(r), w->host, "host");
    CHECK_PART(pht_image_ref_string(r), w->string ? w->string : w->ref, "string");
    CHECK(pht_image_ref_index(r) == w->index);
    pht_image_ref_free(r);
}

static void test_good(void)
{
    static const want good[] = {
        {"docker-archive:t.tar", 0, "docker-archive", "t.tar", "t.tar", NULL, NULL, NULL, NULL,
         NULL, -1},
        {"docker-archive:t.tar:", 0, "docker-archive", "t.tar:", "t.tar", NULL, NULL, NULL, NULL,
         NULL, -1},
        {"docker-archive:t.tar:pht/train", 0, "docker-archive", "t.tar:pht/train", "t.tar",
         "pht/train", "latest", NULL, NULL, NULL, -1},
        {"docker-archive:/x/t.tar:localhost:5000/pht/train:v1", 0, "docker-archive",
         "/x/t.tar:localhost:5000/pht/train:v1", "/x/t.tar", "localhost:5000/pht/train", "v1", NULL,
         NULL, NULL, -1},
        {"docker-archive:t.tar:@2", 0, "docker-archive", "t.tar:@2", "t.tar", NULL, NULL, NULL,
         NULL, NULL, 2},
        {"oci:dir", 0, "oci", "dir", "dir", NULL, NULL, NULL, NULL, NULL, -1},
        {"oci:dir:v1:rc", 0, "oci", "dir:v1:rc", "dir", NULL, "v1:rc", NULL, NULL, NULL, -1},
        {"docker-daemon:busybox", 0, "docker-daemon", "busybox", NULL, "busybox", "latest", NULL,
         NULL, NULL, -1},
        {"docker-daemon:localhost:5000/pht/train:v1", 0, "docker-daemon",
         "localhost:5000/pht/train:v1", NULL, "localhost:5000/pht/train", "v1", NULL, NULL, NULL,
         -1},
        {"docker-daemon:pht/train@sha256:" HEX64, 0, "docker-daemon", "pht/train@sha256:" HEX64,
         NULL, "pht/train", NULL, "sha256:" HEX64, NULL, NULL, -1},
        {"docker-daemon:sha256:" HEX64, 0, "docker-daemon", "sha256:" HEX64, NULL, NULL, NULL,
         "sha256:" HEX64, NULL, NULL, -1},
        {"docker://busybox:latest", 0, "docker", "//busybox:latest", NULL, "busybox", "latest",
         NULL, "docker.io", NULL, -1},
        {"docker://registry.example:5000/pht/train@sha256:" HEX64, 0, "docker",
         "//registry.example:5000/pht/train@sha256:" HEX64, NULL, "registry.example:5000/pht/train",
         NULL, "sha256:" HEX64, "registry.example:5000", NULL, -1},
        {"docker://localhost/pht/train", 0, "docker", "//localhost/pht/train", NULL,
         "localhost/pht/train", "latest", NULL, "localhost", NULL, -1},
        {"busybox:1.36", PHT_REF_BARE_DAEMON, "docker-daemon", "busybox:1.36", NULL, "busybox",
         "1.36", NULL, NULL, "docker-daemon:busybox:1.36", -1},
        {"localhost:5000/pht/train", PHT_REF_BARE_DAEMON, "docker-daemon",
         "localhost:5000/pht/train", NULL, "localhost:5000/pht/train", "latest", NULL, NULL,
         "docker-daemon:localhost:5000/pht/train", -1},
        {"oci:dir", PHT_REF_BARE_DAEMON, "oci", "dir", "dir", NULL, NULL, NULL, NULL, NULL, -1},
        {"docker://busybox", PHT_REF_BARE_DAEMON, "docker", "//busybox", NULL, "busybox", "latest",
         NULL, "docker.io", NULL, -1},
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        check_good(&good[i]);
}

static void check_bad(const char *ref, unsigned flags, const char *why)
{
    pht_image_ref *r = (pht_image_ref *)&r; /* must be reset to NULL */
    pht_error err;
    CHECK_CODE(pht_image_ref_parse(ref, flags, &r, &err), PHT_EINVAL, &err);
    CHECK(r == NULL);
    char quoted[300];
    snprintf(quoted, sizeof quoted, "image reference \"%s\": ", ref);
    CHECK_STR_CONTAINS(err.message, quoted);
    CHECK_STR_CONTAINS(err.message, why);
}

static void test_bad(void)
{
    static const char known[] = "libpht knows docker-archive:PATH[:NAME[:TAG]|:@N], oci:DIR[:TAG], "
                                "docker-daemon:NAME[:TAG|@sha256:HEX], "
                                "docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX]";
    static const struct {
        const char *ref;
        unsigned flags;
        const char *why;
    } bad[] = {
        {"dir:/tmp/x", 0, "unknown transport \"dir\""},
        {"dir:/tmp/x", 0, known},
        {"containers-storage:x", 0, "unknown transport \"containers-storage\""},
        {"/tmp/t.tar", 0, "no transport"},
        {"/tmp/t.tar", 0, known},
        {"busybox:latest", 0, "unknown transport \"busybox\""},
        {"", 0, "no transport"},
        {"docker-archive:", 0, "empty PATH; expected docker-archive:PATH[:NAME[:TAG]|:@N]"},
        {"docker-archive::pht/train:v1", 0, "empty PATH"},
        {"docker-archive:t.tar::v1", 0, "empty NAME"},
        {"docker-archive:t.tar:pht/train:", 0, "empty TAG"},
        {"docker-archive:t.tar:@", 0, "@N needs a number N"},
        {"docker-archive:t.tar:@x1", 0, "@N needs a number N"},
        {"docker-archive:t.tar:pht/train@sha256:" HEX64, 0, "names images by NAME:TAG"},
        {"oci:", 0, "empty DIR; expected oci:DIR[:TAG]"},
        {"docker-daemon:", 0, "is not a Docker image name: it is empty"},
        {"docker-daemon:a b", 0, "\"a b\" is not a Docker image name"},
        {"docker-daemon:pht/train:v1:x", 0, "a ':' in NAME must separate HOST and PORT"},
        {"docker-daemon:host:port/pht/train", 0, "a ':' in NAME must separate HOST and PORT"},
        {"docker-daemon:pht/train@sha256:abc", 0, "a digest is sha256: and 64 lowercase hex"},
        {"docker-daemon:pht/train:@sha256:" HEX64, 0, "empty TAG"},
        {"docker-daemon:sha256:xyz", 0, "an image id is sha256: and lowercase hex digits"},
        {"docker:busybox", 0, "expected docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX]"},
        {"docker://", 0, "is not a Docker image name: it is empty"},
        {"a b", PHT_REF_BARE_DAEMON, "\"a b\" is not a Docker image name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        check_bad(bad[i].ref, bad[i].flags, bad[i].why);

    pht_error err;
    pht_image_ref *r;
    CHECK_CODE(pht_image_ref_parse(NULL, 0, &r, &err), PHT_EINVAL, &err);
    CHECK(r == NULL);
    pht_image_ref_free(NULL);
}

static void check_with_tag(const char *ref, const char *name, const char *tag, const char *exp)
{
    pht_image_ref *r = NULL, *out = NULL;
    pht_error err;
    CHECK_OK(pht_image_ref_parse(ref, 0, &r, &err), &err);
    if (r == NULL) return;
    int rc = pht_image_ref_with_tag(r, name, tag, &out, &err);
    if (exp) {
        CHECK_OK(rc, &err);
        if (out) CHECK_STR_CONTAINS(pht_image_ref_string(out), exp);
        if (out) CHECK(strcmp(pht_image_ref_string(out), exp) == 0);
    } else {
        CHECK_CODE(rc, PHT_EINVAL, &err);
        CHECK(out == NULL);
        CHECK_STR_CONTAINS(err.message, "names no repository");
    }
    pht_image_ref_free(out);
    pht_image_ref_free(r);
}

static void test_with_tag(void)
{
    check_with_tag("docker-archive:t.tar:pht/train:latest", NULL, "base",
                   "docker-archive:t.tar:pht/train:base");
    check_with_tag("docker-archive:t.tar", "pht/train:latest", "base",
                   "docker-archive:t.tar:pht/train:base");
    check_with_tag("docker-archive:t.tar:@1", "localhost:5000/pht/train", "base",
                   "docker-archive:t.tar:localhost:5000/pht/train:base");
    check_with_tag("docker-archive:t.tar", NULL, "base", NULL);
    check_with_tag("oci:dir:latest", NULL, "base", "oci:dir:base");
    check_with_tag("oci:dir", "ignored/repo:x", "base", "oci:dir:base");
    check_with_tag("docker-daemon:localhost:5000/pht/train", NULL, "base",
                   "docker-daemon:localhost:5000/pht/train:base");
    check_with_tag("docker-daemon:pht/train@sha256:" HEX64, NULL, "base",
                   "docker-daemon:pht/train:base");
    check_with_tag("docker-daemon:sha256:" HEX64, NULL, "base", NULL);
    check_with_tag("docker://registry.example/pht/train:v1", NULL, "base",
                   "docker://registry.example/pht/train:base");

    pht_image_ref *r = NULL, *out = NULL;
    pht_error err;
    CHECK_OK(pht_image_ref_parse("oci:dir", 0, &r, &err), &err);
    CHECK_CODE(pht_image_ref_with_tag(r, NULL, "", &out, &err), PHT_EINVAL, &err);
    CHECK_CODE(pht_image_ref_with_tag(r, NULL, NULL, &out, &err), PHT_EINVAL, &err);
    pht_image_ref_free(r);
    CHECK_OK(pht_image_ref_parse("docker-daemon:pht/train", 0, &r, &err), &err);
    CHECK_CODE(pht_image_ref_with_tag(r, NULL, "a b", &out, &err), PHT_EINVAL, &err);
    CHECK(out == NULL);
    pht_image_ref_free(r);
}

static void test_transports(void)
{
    static const char *const names[] = {"docker-archive", "oci", "docker-daemon", "docker",
                                        "oci-archive"};
    size_t i = 0;
    for (; pht_image_transport_name(i); i++) {
        CHECK(i < 5 && strcmp(pht_image_transport_name(i), names[i]) == 0);
        CHECK(strncmp(pht_image_transport_syntax(i), names[i], strlen(names[i])) == 0);
    }
    CHECK(i == 5);
    CHECK(pht_image_transport_syntax(i) == NULL);
}

/* Opening and committing go through the same grammar: docker:// reaches its registry. */
static void test_open(void)
{
    pht_image *img = NULL;
    pht_error err;
    CHECK_CODE(pht_image_open(&img, "docker://127.0.0.1:1/pht/train:v1", NULL, &err), PHT_EHTTP,
               &err);
    CHECK_STR_CONTAINS(err.message, "registry 127.0.0.1:1");
    CHECK_CODE(pht_image_open(&img, "dir:/tmp/x", NULL, &err), PHT_EINVAL, &err);
    CHECK_STR_CONTAINS(err.message, "unknown transport \"dir\"");
    CHECK(img == NULL);
}

int main(void)
{
    test_good();
    test_bad();
    test_with_tag();
    test_transports();
    test_open();
    TEST_DONE();
}
