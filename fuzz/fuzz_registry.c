/*
 * Registry answers as the fuzzer writes them (fake_server.h), to the calls
 * of a pull: the ping (a WWW-Authenticate challenge, Basic or Bearer with
 * a realm that leads back to the fake server), the token JSON, a manifest
 * GET and HEAD (digest headers, media types, the document), a blob GET
 * whose digest must match and a blob HEAD. No retries, short limits.
 */
#include "fake_server.h"

static int sink(void *ud, const void *p, size_t n, pht_error *err)
{
    (void)p;
    (void)err;
    *(size_t *)ud += n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char endpoint[80];
    if (endpoint[0] == '\0') {
        setenv("REGISTRY_AUTH_FILE", "/nonexistent/auth.json", 1);
        fs_start(NULL);
        snprintf(endpoint, sizeof endpoint, "%s", fs.origin);
    }
    fs_set(data, size);
    pht_registry_options o;
    pht_registry_options_init(&o);
    o.creds = "robot:secret";
    o.tls_verify = 0;
    o.max_tries = 1;
    o.retry_delay_ms = 1;
    o.max_manifest = 1u << 20;
    pht_registry *r = NULL;
    pht_error err;
    if (pht_registry_open(&r, endpoint, &o, &err) != 0) return 0;
    pht_registry_ping(r, &err);
    pht_registry_manifest m;
    memset(&m, 0, sizeof m);
    pht_registry_get_manifest(r, "fuzz/train", "latest", &m, &err);
    pht_registry_manifest_clear(&m);
    pht_registry_head_manifest(r, "fuzz/train",
                               "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                               &m, &err);
    pht_registry_manifest_clear(&m);
    size_t got = 0;
    pht_registry_get_blob(r, "fuzz/train",
                          "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", -1,
                          sink, &got, &err);
    pht_registry_free(r);
    return 0;
}
