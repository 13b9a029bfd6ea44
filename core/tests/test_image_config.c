/*
 * The runtime config a writer sets (pht_image_writer_set_config): Cmd,
 * Entrypoint, Env, WorkingDir, Labels and User change, everything else of
 * the source's config stays, calls accumulate, and a rejected spec changes
 * nothing.
 */
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "test.h"

static char work[1024];

static const char *src_ref(char *buf, size_t cap)
{
    snprintf(buf, cap, "docker-archive:%s/reference-v2/stage0-built.tar", test_fixtures());
    return buf;
}

/* The committed image's config, parsed; NULL (and a failed check) if it cannot be opened. */
static cJSON *config_of(const char *ref, size_t *nlayers)
{
    pht_image *img;
    pht_error err;
    CHECK_OK(pht_image_open(&img, ref, NULL, &err), &err);
    if (img == NULL) return NULL;
    cJSON *cfg = cJSON_Parse(pht_image_config(img));
    if (nlayers) *nlayers = pht_image_layer_count(img);
    pht_image_free(img);
    CHECK(cfg != NULL);
    return cfg;
}

static const char *str_at(const cJSON *obj, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

/* "a|b|c" of a string array, for comparisons. */
static const char *joined(const cJSON *arr)
{
    static char buf[512];
    buf[0] = '\0';
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (buf[0]) strncat(buf, "|", sizeof buf - strlen(buf) - 1);
        strncat(buf, cJSON_IsString(it) ? it->valuestring : "?", sizeof buf - strlen(buf) - 1);
    }
    return buf;
}

static void test_set_fields(void)
{
    char ref[1300], out[1300];
    pht_error err;
    pht_image *img;
    CHECK_OK(pht_image_open(&img, src_ref(ref, sizeof ref), NULL, &err), &err);
    if (img == NULL) return;
    pht_image_writer *w;
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    const char *cmd[] = {"/bin/sh", "-c", "echo from-cmd"};
    const pht_image_kv env[] = {{"A", "1"}, {"PATH", "/bin:/usr/bin"}, {"A", "2"}};
    const pht_image_kv labels[] = {{"org.example.train", "t1"}, {"absent", NULL}};
    pht_image_config_spec s;
    pht_image_config_spec_init(&s);
    s.set_cmd = 1;
    s.cmd = cmd;
    s.ncmd = 3;
    s.set_entrypoint = 1; /* none */
    s.env = env;
    s.nenv = 3;
    s.labels = labels;
    s.nlabels = 2;
    s.working_dir = "/opt/pht_train";
    s.user = "1000:1000";
    CHECK_OK(pht_image_writer_set_config(w, &s, &err), &err);
    /* a second call accumulates: B is added, A removed, the rest stays */
    const pht_image_kv env2[] = {{"B", "x=y"}, {"A", NULL}};
    pht_image_config_spec_init(&s);
    s.env = env2;
    s.nenv = 2;
    CHECK_OK(pht_image_writer_set_config(w, &s, &err), &err);
    snprintf(out, sizeof out, "docker-archive:%s/cfg.tar:pht/cfg:v1", work);
    pht_image_commit_opts co = {.created_by = "pht build: config"};
    CHECK_OK(pht_image_writer_commit(w, out, &co, &err), &err);
    CHECK_CODE(pht_image_writer_set_config(w, &s, &err), PHT_ESTATE, &err);
    pht_image_writer_free(w);

    size_t n = 0;
    cJSON *cfg = config_of(out, &n), *before = cJSON_Parse(pht_image_config(img));
    if (cfg == NULL || before == NULL) goto done;
    cJSON *run = cJSON_GetObjectItemCaseSensitive(cfg, "config");
    CHECK(strcmp(joined(cJSON_GetObjectItemCaseSensitive(run, "Cmd")),
                 "/bin/sh|-c|echo from-cmd") == 0);
    CHECK(cJSON_GetObjectItemCaseSensitive(run, "Entrypoint") == NULL);
    CHECK(strcmp(joined(cJSON_GetObjectItemCaseSensitive(run, "Env")),
                 "PATH=/bin:/usr/bin|B=x=y") == 0);
    cJSON *lab = cJSON_GetObjectItemCaseSensitive(run, "Labels");
    CHECK(cJSON_GetArraySize(lab) == 1 && strcmp(str_at(lab, "org.example.train"), "t1") == 0);
    CHECK(strcmp(str_at(run, "WorkingDir"), "/opt/pht_train") == 0);
    CHECK(strcmp(str_at(run, "User"), "1000:1000") == 0);
    /* the rest of the source's config is kept */
    cJSON *brun = cJSON_GetObjectItemCaseSensitive(before, "config");
    CHECK(strcmp(str_at(run, "Hostname"), str_at(brun, "Hostname")) == 0);
    CHECK(strcmp(str_at(run, "Image"), str_at(brun, "Image")) == 0);
    CHECK(cJSON_Compare(cJSON_GetObjectItemCaseSensitive(cfg, "container_config"),
                        cJSON_GetObjectItemCaseSensitive(before, "container_config"), 1));
    CHECK(strcmp(str_at(cfg, "architecture"), str_at(before, "architecture")) == 0);
    CHECK(cJSON_Compare(cJSON_GetObjectItemCaseSensitive(cfg, "rootfs"),
                        cJSON_GetObjectItemCaseSensitive(before, "rootfs"), 1));
    CHECK(n == 2);
    /* no new layer: the change is recorded as an empty_layer history entry */
    cJSON *hist = cJSON_GetObjectItemCaseSensitive(cfg, "history");
    cJSON *last = cJSON_GetArrayItem(hist, cJSON_GetArraySize(hist) - 1);
    CHECK(cJSON_GetArraySize(hist) == 3);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(last, "empty_layer")));
    CHECK(strcmp(str_at(last, "created_by"), "pht build: config") == 0);
done:
    cJSON_Delete(cfg);
    cJSON_Delete(before);
    pht_image_free(img);
}

static void test_with_layer(void)
{
    char ref[1300], out[1300];
    pht_error err;
    pht_image *img;
    CHECK_OK(pht_image_open(&img, src_ref(ref, sizeof ref), NULL, &err), &err);
    if (img == NULL) return;
    pht_image_writer *w;
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    CHECK_OK(pht_image_writer_add_bytes(w, "/opt/run.sh", "echo hi\n", 8, NULL, &err), &err);
    const char *ep[] = {"/bin/sh", "/opt/run.sh"};
    pht_image_config_spec s;
    pht_image_config_spec_init(&s);
    s.set_entrypoint = 1;
    s.entrypoint = ep;
    s.nentrypoint = 2;
    s.set_cmd = 1; /* no Cmd */
    s.working_dir = "";
    CHECK_OK(pht_image_writer_set_config(w, &s, &err), &err);
    snprintf(out, sizeof out, "oci:%s/layout:cfg", work);
    CHECK_OK(pht_image_writer_commit(w, out, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(img);
    size_t n = 0;
    cJSON *cfg = config_of(out, &n);
    if (cfg == NULL) return;
    cJSON *run = cJSON_GetObjectItemCaseSensitive(cfg, "config");
    CHECK(strcmp(joined(cJSON_GetObjectItemCaseSensitive(run, "Entrypoint")),
                 "/bin/sh|/opt/run.sh") == 0);
    CHECK(cJSON_GetObjectItemCaseSensitive(run, "Cmd") == NULL);
    CHECK(strcmp(str_at(run, "WorkingDir"), "") == 0);
    CHECK(n == 3);
    cJSON *hist = cJSON_GetObjectItemCaseSensitive(cfg, "history");
    CHECK(!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(hist, cJSON_GetArraySize(hist) - 1), "empty_layer")));
    cJSON_Delete(cfg);
}

/* One rejected spec: PHT_EINVAL naming why, and the writer's config unchanged. */
static void reject(pht_image_writer *w, const pht_image_config_spec *s, const char *why)
{
    pht_error err;
    CHECK_CODE(pht_image_writer_set_config(w, s, &err), PHT_EINVAL, &err);
    CHECK_STR_CONTAINS(err.message, why);
}

static void test_rejects(void)
{
    char ref[1300], out[1300];
    pht_error err;
    pht_image *img;
    CHECK_OK(pht_image_open(&img, src_ref(ref, sizeof ref), NULL, &err), &err);
    if (img == NULL) return;
    pht_image_writer *w;
    CHECK_OK(pht_image_writer_new(img, NULL, &w, &err), &err);
    const char *cmd[] = {"/bin/true"};
    pht_image_config_spec s;
    pht_image_config_spec_init(&s);
    s.set_cmd = 1;
    s.cmd = cmd;
    s.ncmd = 1;
    CHECK_OK(pht_image_writer_set_config(w, &s, &err), &err);

    const pht_image_kv bad_env[] = {{"OK", "1"}, {"A=B", "c"}};
    pht_image_config_spec_init(&s);
    s.env = bad_env;
    s.nenv = 2;
    reject(w, &s, "holds '='");
    const pht_image_kv empty_env[] = {{"", "1"}};
    s.env = empty_env;
    s.nenv = 1;
    reject(w, &s, "env name 0 is empty");
    pht_image_config_spec_init(&s);
    const pht_image_kv empty_label[] = {{"", "v"}};
    s.labels = empty_label;
    s.nlabels = 1;
    reject(w, &s, "label name 0 is empty");
    pht_image_config_spec_init(&s);
    s.working_dir = "opt";
    s.user = "nobody";
    reject(w, &s, "not an absolute path");
    pht_image_config_spec_init(&s);
    const char *holey[] = {"/bin/sh", NULL};
    s.set_entrypoint = 1;
    s.entrypoint = holey;
    s.nentrypoint = 2;
    reject(w, &s, "entrypoint[1] is NULL");
    CHECK_CODE(pht_image_writer_set_config(w, NULL, &err), PHT_EINVAL, &err);

    snprintf(out, sizeof out, "docker-archive:%s/rejects.tar:pht/rejects:v1", work);
    CHECK_OK(pht_image_writer_commit(w, out, NULL, &err), &err);
    pht_image_writer_free(w);
    pht_image_free(img);
    cJSON *cfg = config_of(out, NULL);
    if (cfg == NULL) return;
    cJSON *run = cJSON_GetObjectItemCaseSensitive(cfg, "config");
    CHECK(strcmp(joined(cJSON_GetObjectItemCaseSensitive(run, "Cmd")), "/bin/true") == 0);
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(run, "Env"))); /* as in the source */
    CHECK(strcmp(str_at(run, "User"), "") == 0);
    CHECK(strcmp(str_at(run, "WorkingDir"), "") == 0);
    cJSON_Delete(cfg);
}

int main(void)
{
    test_workdir(work, sizeof work);
    test_set_fields();
    test_with_layer();
    test_rejects();
    test_workdir_done(work);
    TEST_DONE();
}
