/*
 * The master-image check: trains whose layers above the master change only
 * the train's paths under /opt pass; each hostile layer (a replaced binary,
 * a file under /etc or /usr, a whiteout, an opaque directory, a setuid file,
 * a link leaving /opt) and a train on another base fail, naming the layer
 * and the path. The master opened with no_index reads no layer.
 */
#include "test.h"

static char work[1024];
static char master_ref[1300];

typedef enum {
    ADD_OPT,
    REPLACE_SH,
    ADD_ETC,
    ADD_USR,
    DELETE_FILE,
    OPAQUE_ETC,
    OPAQUE_OPT,
    SETUID,
    LINK_OUT,
    LINK_IN,
    OTHER_OPT,
    OPT_SYMLINK
} change;

/* A train: the master plus one layer of /opt plus one layer doing what c says. */
static void make_train(const char *ref, change c)
{
    pht_error err;
    pht_image *m;
    CHECK_OK(pht_image_open(&m, master_ref, NULL, &err), &err);
    if (m == NULL) return;
    pht_image_writer *w;
    CHECK_OK(pht_image_writer_new(m, NULL, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_dir(w, "/opt", NULL, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/train_config.json", "{}", 2, NULL, &err), &err);
    CHECK_OK(pht_image_writer_add_dir(w, "/opt/pht_train", NULL, &err), &err);
    CHECK_OK(
        pht_image_writer_add_bytes(w, "/opt/pht_train/entrypoint.py", "print(1)\n", 9, NULL, &err),
        &err);
    CHECK_OK(pht_image_writer_commit(w, ref, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(m);
    if (c == ADD_OPT) return;
    pht_image *t;
    CHECK_OK(pht_image_open(&t, ref, NULL, &err), &err);
    if (t == NULL) return;
    CHECK_OK(pht_image_writer_new(t, NULL, &w, &err), &err);
    pht_image_attrs at;
    pht_image_attrs_init(&at);
    switch (c) {
    case REPLACE_SH:
        at.mode = 0755;
        CHECK_OK(pht_image_writer_add_bytes(w, "/bin/sh", "#!x\n", 4, &at, &err), &err);
        break;
    case ADD_ETC:
        CHECK_OK(pht_image_writer_add_bytes(w, "/etc/ld.so.preload", "/x.so\n", 6, NULL, &err),
                 &err);
        break;
    case ADD_USR: /* the directory first, as tools write parents: the file is named */
        CHECK_OK(pht_image_writer_add_dir(w, "/usr/lib", NULL, &err), &err);
        CHECK_OK(pht_image_writer_add_bytes(w, "/usr/lib/evil.py", "x\n", 2, NULL, &err), &err);
        break;
    case DELETE_FILE:
        CHECK_OK(pht_image_writer_whiteout(w, "/etc/passwd", &err), &err);
        break;
    case OPAQUE_ETC:
        at.opaque = 1;
        CHECK_OK(pht_image_writer_add_dir(w, "/etc", &at, &err), &err);
        break;
    case OPAQUE_OPT:
        at.opaque = 1;
        CHECK_OK(pht_image_writer_add_dir(w, "/opt", &at, &err), &err);
        break;
    case SETUID:
        at.mode = 04755;
        CHECK_OK(pht_image_writer_add_bytes(w, "/opt/pht_train/run", "x\n", 2, &at, &err), &err);
        break;
    case LINK_OUT:
        CHECK_OK(pht_image_writer_add_symlink(w, "/opt/pht_train/sh", "../../bin/sh", NULL, &err),
                 &err);
        break;
    case LINK_IN:
        CHECK_OK(pht_image_writer_add_symlink(w, "/opt/pht_results/a",
                                              "/opt/pht_train/entrypoint.py", NULL, &err),
                 &err);
        CHECK_OK(pht_image_writer_whiteout(w, "/opt/pht_train/gone", &err), &err);
        break;
    case OTHER_OPT:
        CHECK_OK(pht_image_writer_add_bytes(w, "/opt/conda/bin/python", "x\n", 2, NULL, &err),
                 &err);
        break;
    case OPT_SYMLINK:
        CHECK_OK(pht_image_writer_add_symlink(w, "/opt/pht_results", "/etc", NULL, &err), &err);
        break;
    default:
        break;
    }
    CHECK_OK(pht_image_writer_commit(w, ref, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(t);
}

/* Open the master without its index and check the train against it. */
static int check(const char *ref, pht_error *err)
{
    pht_image_opts o;
    pht_image_opts_init(&o);
    o.no_index = 1;
    pht_image *m = NULL, *t = NULL;
    int rc = pht_image_open(&m, master_ref, &o, err);
    if (rc == 0) rc = pht_image_open(&t, ref, NULL, err);
    if (rc == 0) rc = pht_image_check_master(t, m, 0, err);
    pht_image_free(t);
    pht_image_free(m);
    return rc;
}

static void expect(change c, const char *name, const char *path, const char *why)
{
    char ref[1400];
    snprintf(ref, sizeof ref, "docker-archive:%s/%s.tar", work, name);
    make_train(ref, c);
    pht_error err;
    CHECK_CODE(check(ref, &err), PHT_EVERIFY, &err);
    CHECK_STR_CONTAINS(err.message, path);
    CHECK_STR_CONTAINS(err.message, why);
    CHECK_STR_CONTAINS(err.message, "layer 4 of 4 (sha256:");
}

static void test_passes(void)
{
    char ref[1400];
    snprintf(ref, sizeof ref, "docker-archive:%s/good.tar", work);
    make_train(ref, ADD_OPT);
    pht_error err;
    CHECK_OK(check(ref, &err), &err);
    snprintf(ref, sizeof ref, "docker-archive:%s/links.tar", work);
    make_train(ref, LINK_IN);
    CHECK_OK(check(ref, &err), &err);
    /* the master against itself: nothing above it */
    CHECK_OK(check(master_ref, &err), &err);
}

static void test_refused(void)
{
    expect(REPLACE_SH, "sh", "\"/bin/sh\"", "outside /opt");
    expect(ADD_ETC, "etc", "\"/etc/ld.so.preload\"", "outside /opt");
    expect(ADD_USR, "usr", "\"/usr/lib/evil.py\"", "outside /opt");
    expect(DELETE_FILE, "wh", "\"/etc/passwd\"", "whiteout");
    expect(OPAQUE_ETC, "opq", "\"/etc\"", "opaque");
    expect(OPAQUE_OPT, "opqopt", "\"/opt\"", "opaque");
    expect(SETUID, "suid", "\"/opt/pht_train/run\"", "setuid");
    expect(LINK_OUT, "link", "\"/opt/pht_train/sh\"", "symlink whose target leaves /opt");
    expect(OTHER_OPT, "conda", "\"/opt/conda", "outside the train's");
    expect(OPT_SYMLINK, "optlink", "\"/opt/pht_results\"", "symlink whose target leaves /opt");
}

/* A train on another base: its layers do not begin with the master's. */
static void test_other_base(void)
{
    pht_error err;
    pht_image *m;
    char other[1400], ref[1400];
    CHECK_OK(pht_image_open(&m, master_ref, NULL, &err), &err);
    if (m == NULL) return;
    size_t n = pht_image_layer_count(m);
    pht_image_writer *w;
    pht_image_writer_opts wo = {.keep_layers = (long)n - 1};
    CHECK_OK(pht_image_writer_new(m, &wo, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/etc/motd", "other\n", 6, NULL, &err), &err);
    snprintf(other, sizeof other, "docker-archive:%s/other-base.tar", work);
    CHECK_OK(pht_image_writer_commit(w, other, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(m);
    pht_image *b;
    CHECK_OK(pht_image_open(&b, other, NULL, &err), &err);
    if (b == NULL) return;
    CHECK_OK(pht_image_writer_new(b, NULL, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/train_config.json", "{}", 2, NULL, &err), &err);
    snprintf(ref, sizeof ref, "docker-archive:%s/on-other.tar", work);
    CHECK_OK(pht_image_writer_commit(w, ref, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(b);
    CHECK_CODE(check(ref, &err), PHT_EVERIFY, &err);
    char want[64];
    snprintf(want, sizeof want, "layer %zu of %zu (sha256:", n, n + 1);
    CHECK_STR_CONTAINS(err.message, want);
    CHECK_STR_CONTAINS(err.message, "was not built on it");
    /* fewer layers than the master */
    CHECK_OK(pht_image_open(&m, master_ref, NULL, &err), &err);
    if (m == NULL) return;
    wo.keep_layers = 0;
    CHECK_OK(pht_image_writer_new(m, &wo, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/train_config.json", "{}", 2, NULL, &err), &err);
    snprintf(ref, sizeof ref, "docker-archive:%s/short.tar", work);
    CHECK_OK(pht_image_writer_commit(w, ref, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(m);
    if (n > 1) {
        CHECK_CODE(check(ref, &err), PHT_EVERIFY, &err);
        CHECK_STR_CONTAINS(err.message, "not built on it");
    }
}

/* top: a post-run checks only the layers below pre-run's. */
static void test_top(void)
{
    char ref[1400];
    snprintf(ref, sizeof ref, "docker-archive:%s/sh.tar", work);
    pht_error err;
    pht_image_opts o;
    pht_image_opts_init(&o);
    o.no_index = 1;
    pht_image *m, *t;
    CHECK_OK(pht_image_open(&m, master_ref, &o, &err), &err);
    CHECK_OK(pht_image_open(&t, ref, NULL, &err), &err);
    if (m && t) {
        CHECK_OK(pht_image_check_master(t, m, 3, &err), &err);
        CHECK_CODE(pht_image_check_master(t, m, 4, &err), PHT_EVERIFY, &err);
        /* the master opened without its index reads nothing of its tree */
        pht_image_stat st;
        CHECK_CODE(pht_image_stat_path(m, "/etc/passwd", &st, &err), PHT_ESTATE, &err);
    }
    pht_image_free(t);
    pht_image_free(m);
}

int main(void)
{
    test_workdir(work, sizeof work);
    /* the master: the reference's first train, as any image would be */
    char src[1200];
    pht_error err;
    pht_image *img;
    snprintf(master_ref, sizeof master_ref, "docker-archive:%s/master.tar", work);
    snprintf(src, sizeof src, "docker-archive:%s/reference-v2/stage0-built.tar", test_fixtures());
    CHECK_OK(pht_image_open(&img, src, NULL, &err), &err);
    if (img) {
        pht_image_writer *w;
        pht_image_writer_opts wo = {.keep_layers = 1};
        CHECK_OK(pht_image_writer_new(img, &wo, &w, &err), &err);
        CHECK_OK(pht_image_writer_add_dir(w, "/etc", NULL, &err), &err);
        CHECK_OK(
            pht_image_writer_add_bytes(w, "/etc/passwd", "root:x:0:0::/:/bin/sh\n", 22, NULL, &err),
            &err);
        CHECK_OK(pht_image_writer_add_bytes(w, "/bin/sh", "sh\n", 3, NULL, &err), &err);
        CHECK_OK(pht_image_writer_commit(w, master_ref, NULL, &err), &err);
        pht_image_writer_free(w);
        pht_image_free(img);
    }
    test_passes();
    test_refused();
    test_other_base();
    test_top();
    test_workdir_done(work);
    TEST_DONE();
}
