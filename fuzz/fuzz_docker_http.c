/*
 * Docker Engine answers as the fuzzer writes them (fake_server.h): status
 * lines, headers, plain and chunked bodies, JSON or not, for the calls a
 * station makes: version, image inspect (parsed and as text), container
 * lists, image load (and its report), save, create, tag, remove. Each call
 * must fail cleanly or succeed; none may hang (limits of a few seconds).
 */
#include "fake_server.h"

static int sink(void *ud, const void *p, size_t n, pht_error *err)
{
    (void)p;
    (void)err;
    *(size_t *)ud += n;
    return 0;
}

static int source(void *ud, void *buf, size_t cap, size_t *got, pht_error *err)
{
    (void)err;
    int *left = ud;
    *got = *left > 0 ? (cap < 512 ? cap : 512) : 0;
    memset(buf, 0, *got);
    (*left)--;
    return 0;
}

static int on_container(void *ud, const pht_docker_container *c)
{
    *(size_t *)ud += strlen(c->id) + strlen(c->name) + strlen(c->image) + strlen(c->state);
    return 0;
}

static int on_labelled(void *ud, const pht_docker_container *c, const char *v)
{
    *(size_t *)ud += strlen(c->id) + (v ? strlen(v) : 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pht_docker *d;
    static char host[300];
    if (d == NULL) {
        char path[280];
        snprintf(path, sizeof path, "%s/docker.sock", fz_tmp());
        fs_start(path);
        snprintf(host, sizeof host, "unix://%s", path);
        pht_error e;
        if (pht_docker_open(&d, host, &e) != 0) abort();
        pht_docker_timeouts t;
        pht_docker_timeouts_init(&t);
        pht_docker_timeouts_parse(&t, "connect=2,idle=2,total=4,stream-idle=2,stream-total=4", &e);
        pht_docker_set_timeouts(d, &t);
    }
    fs_set(data, size);
    pht_error err;
    pht_docker_version_info v;
    pht_docker_version(d, &v, &err);
    pht_docker_image_info info;
    if (pht_docker_image_inspect(d, "pht/train:latest", &info, &err) == 0)
        pht_docker_image_info_clear(&info);
    char *json = NULL;
    if (pht_docker_image_history_json(d, "pht/train:latest", &json, &err) == 0) free(json);
    size_t acc = 0;
    pht_docker_containers(d, 1, "{\"ancestor\":[\"pht/train:latest\"]}", on_container, &acc, &err);
    pht_docker_containers_labelled(d, "pht.scratch", on_labelled, &acc, &err);
    int left = 3;
    char *report = NULL;
    if (pht_docker_image_load(d, source, &left, &report, &err) == 0) free(report);
    pht_docker_image_save(d, "pht/train:latest", sink, &acc, &err);
    char id[PHT_DOCKER_ID_MAX];
    pht_docker_container_create(d, "pht-fuzz", "{\"Image\":\"pht/train:latest\"}", id, &err);
    pht_docker_container_archive(d, "pht-fuzz", "/opt", sink, &acc, &err);
    pht_docker_image_tag(d, "pht/train:latest", "pht/train:next", &err);
    int removed = 0;
    pht_docker_prune_image(d, "pht/train:old", &removed, &err);
    return 0;
}
