/*
 * train_config.json: the reference trains of every stage parse, validate,
 * read back and round-trip; malformed documents fail naming the field; the
 * setters and the constructor keep the document valid.
 */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pht/config.h"
#include "pht/util.h"
#include "test.h"

static const char *const stages[] = {"stage0-built", "stage1-station_1-post",
                                     "stage2-station_2-post", "stage3-station_3-post"};

/* Values from the reference's files (the config text and expected.json). */
static const char *const session_hex =
    "0e112e7881c5d488a5693fa4924ac98e20e694f1ce2922581cd05199ac4b31d1b603b63b3801a3c7bf1b2d20d0"
    "12f801701d945174907cb30c5345078aa44a7b";
static const char *const hash_hex =
    "d82a784d1d78f5e863c7608a603bcbc5132f507830b17d42017fbf473f61e6bb36bf07be11a5a2b208f8792f85"
    "0b093d3426227df73cc2b719f3e3df5504a9ff";
static const char *const result_hash_stage1 =
    "4d666d23246222ea9c98c3ed1ce5accfa45bdc3d911a7f3ea7f01df86b7b0ea4b7bf1970f0a7ed7f297dc5ff56"
    "23d29c2bb42808d305dfc0057386ad9d62121a";
static const char *const chain_digest_1 =
    "8fc62dc275079285c172d79eaf0cd52ab34c49fae6be9b3185e7bd3dca16e1308d407d03a6b339c7a7a49deb58"
    "55c4910306fb95779acb8f37e0307627276ea7";

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Extract /opt/train_config.json of a stage with tar; returns the path. */
static const char *stage_config(const char *stage, char *path, size_t size)
{
    char cmd[2048];
    snprintf(path, size, "%s/config-%s.json", test_tmpdir(), stage);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && tar xOf '%s/reference-v2/%s.opt.tar' "
             "opt/train_config.json > '%s'", test_tmpdir(), test_fixtures(), stage, path);
    CHECK(system(cmd) == 0);
    return path;
}

/* Hex of the PEM text of a fixture public key (the config form). */
static char *key_hex(const char *name)
{
    char path[1024];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/reference-v2/keys/%s.pub.pem", test_fixtures(), name);
    char *pem = slurp(path, &len);
    CHECK(pem != NULL);
    if (pem == NULL) return NULL;
    char *hex = malloc(2 * len + 1);
    pht_hex_encode((unsigned char *)pem, len, hex);
    free(pem);
    return hex;
}

static void test_reference_stages(void)
{
    pht_error err;
    for (size_t s = 0; s < 4; s++) {
        char path[1024];
        pht_config *cfg = NULL;
        CHECK_OK(pht_config_load(stage_config(stages[s], path, sizeof path), &cfg, &err), &err);
        if (cfg == NULL) continue;
        CHECK(strcmp(pht_config_creator_id(cfg), "bench-user") == 0);
        char sid[2 * PHT_SESSION_ID_SIZE + 1];
        pht_hex_encode(pht_config_session_id(cfg), PHT_SESSION_ID_SIZE, sid);
        CHECK(strcmp(sid, session_hex) == 0);
        CHECK(strcmp(pht_config_hash(cfg), hash_hex) == 0);
        CHECK(pht_config_file_count(cfg) == 2);
        CHECK(strcmp(pht_config_file(cfg, 0), "entrypoint.sh") == 0);
        CHECK(strcmp(pht_config_file_path(cfg, 1), "analysis.r") == 0);
        CHECK(pht_config_file(cfg, 2) == NULL);
        CHECK(pht_config_route_count(cfg) == 3);
        for (size_t i = 0; i < 3; i++) {
            pht_config_stop st;
            char name[32];
            snprintf(name, sizeof name, "station_%zu", i + 1);
            CHECK_OK(pht_config_stop_at(cfg, i, &st, &err), &err);
            CHECK(strcmp(st.station, name) == 0 && st.index == i && !st.station_is_integer);
            CHECK(strcmp(st.eco_system, "tue") == 0);
            /* Stop i is signed once station i+1 has run, i.e. from stage i+1 on. */
            CHECK((st.digest != NULL) == (i < s));
            char *kh = key_hex(name);
            CHECK(kh != NULL && strcmp(st.rsa_public_key, kh) == 0);
            free(kh);
        }
        CHECK((pht_config_result_hash(cfg) != NULL) == (s > 0));
        CHECK((pht_config_creator_encrypted_key(cfg) != NULL) == (s > 0));
        if (s == 1) {
            pht_config_stop st;
            CHECK(strcmp(pht_config_result_hash(cfg), result_hash_stage1) == 0);
            CHECK_OK(pht_config_stop_at(cfg, 0, &st, &err), &err);
            CHECK(strcmp(st.digest, chain_digest_1) == 0);
        }
        /* The reference writes stages 1-3 itself: our indented form is byte-identical. */
        size_t flen = 0, jlen = 0;
        char *file = slurp(path, &flen), *json = NULL;
        CHECK_OK(pht_config_to_json(cfg, 1, &json, &jlen, &err), &err);
        if (s > 0) CHECK(json && jlen == flen && memcmp(json, file, flen) == 0);
        /* Round trip: parse(to_json) writes the same text again, indented or not. */
        pht_config *again = NULL;
        CHECK_OK(pht_config_parse(json, jlen, &again, &err), &err);
        char *json2 = NULL;
        if (again) CHECK_OK(pht_config_to_json(again, 1, &json2, NULL, &err), &err);
        CHECK(json2 && strcmp(json, json2) == 0);
        free(json2);
        pht_config_free(again);
        again = NULL;
        char *flat = NULL, *flat2 = NULL;
        CHECK_OK(pht_config_to_json(cfg, 0, &flat, NULL, &err), &err);
        CHECK(flat && strchr(flat, '\n') == NULL);
        CHECK_OK(pht_config_parse(flat, strlen(flat), &again, &err), &err);
        if (again) CHECK_OK(pht_config_to_json(again, 1, &flat2, NULL, &err), &err);
        CHECK(flat2 && strcmp(flat2, json) == 0);
        free(flat);
        free(flat2);
        pht_config_free(again);
        free(json);
        free(file);
        pht_config_free(cfg);
    }
}

static pht_config *load_stage(int s)
{
    char path[1024];
    pht_error err;
    pht_config *cfg = NULL;
    CHECK_OK(pht_config_load(stage_config(stages[s], path, sizeof path), &cfg, &err), &err);
    return cfg;
}

static void test_find_stop(void)
{
    pht_error err;
    pht_config *cfg = load_stage(2);
    if (cfg == NULL) return;
    pht_config_stop st;
    CHECK_OK(pht_config_find_stop(cfg, "station_2", &st, &err), &err);
    CHECK(st.index == 1 && st.digest != NULL && st.encrypted_key != NULL);
    CHECK_CODE(pht_config_find_stop(cfg, "station_9", &st, &err), PHT_ENOTFOUND, &err);
    CHECK_STR_CONTAINS(err.message, "station station_9 is not on the route");
    CHECK_CODE(pht_config_stop_at(cfg, 3, &st, &err), PHT_ENOTFOUND, &err);
    pht_config_free(cfg);
}

/* Text with `from` replaced once by `to`; the caller frees it. */
static char *replace(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    CHECK(at != NULL);
    if (at == NULL) return strdup(text);
    size_t a = (size_t)(at - text), fl = strlen(from), tl = strlen(to);
    char *out = malloc(strlen(text) - fl + tl + 1);
    memcpy(out, text, a);
    memcpy(out + a, to, tl);
    strcpy(out + a + tl, at + fl);
    return out;
}

static void expect_bad(const char *json, int code, const char *needle)
{
    pht_error err;
    pht_config *cfg = NULL;
    CHECK_CODE(pht_config_parse(json, strlen(json), &cfg, &err), code, &err);
    CHECK(cfg == NULL);
    CHECK_STR_CONTAINS(err.message, needle);
    pht_config_free(cfg);
}

static void test_malformed(void)
{
    char path[1024];
    size_t len = 0;
    char *base = slurp(stage_config(stages[1], path, sizeof path), &len);
    if (base == NULL) return;
    char *t;
    t = replace(base, "\"index\": 1", "\"index\": 0");
    expect_bad(t, PHT_ECONFIG, "route[1].index: duplicate index 0 (also at route[0]");
    free(t);
    t = replace(base, "\"index\": 2", "\"index\": 3");
    expect_bad(t, PHT_ECONFIG, "route: index 2 missing (indexes must be unique and contiguous from 0)");
    free(t);
    t = replace(base, "\"session_id\": \"0e112e7881c5d488a5693fa4924ac98e20e694f1ce2922581cd05199ac4b31d1",
                "\"session_id\": \"");
    expect_bad(t, PHT_ECONFIG, "session_id: expected 64 bytes of hex, got 32");
    free(t);
    t = replace(base, "\"id\": \"bench-user\"", "\"id\": [1]");
    expect_bad(t, PHT_ECONFIG, "creator.id: expected string or integer");
    free(t);
    t = replace(base, "\"result_hash\": \"", "\"result_hash\": 7, \"x\": \"");
    expect_bad(t, PHT_ECONFIG, "result_hash: expected hex or null");
    free(t);
    t = replace(base, "\"station\": \"station_2\",\n      \"eco_system\": \"tue\",\n      \"rsa_public_key\": \"2d",
                "\"station\": \"station_2\",\n      \"eco_system\": \"tue\",\n      \"rsa_public_key\": \"zz");
    expect_bad(t, PHT_ECONFIG, "route[1].rsa_public_key: not hex");
    free(t);
    t = replace(base, "\"entrypoint.sh\"", "\"../entrypoint.sh\"");
    expect_bad(t, PHT_EUNSAFE, "file_list[0]: \"..\" component");
    free(t);
    t = replace(base, "\"eco_system\": \"tue\"", "\"eco_system\": \"mars\"");
    expect_bad(t, PHT_ECONFIG, "route[0].eco_system: expected \"tue\", \"padme\" or \"aac\"");
    free(t);
    base[len / 2] = '\0';
    expect_bad(base, PHT_EFORMAT, "not valid JSON");
    expect_bad("[1, 2]", PHT_ECONFIG, "train_config.json: expected a JSON object, got array");
    free(base);
}

static void test_oversized_file(void)
{
    char path[1024];
    pht_error err;
    pht_config *cfg = NULL;
    snprintf(path, sizeof path, "%s/config-oversized.json", test_tmpdir());
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f == NULL) return;
    fclose(f);
    CHECK(truncate(path, (off_t)PHT_CONFIG_MAX_BYTES + 1) == 0);
    CHECK_CODE(pht_config_load(path, &cfg, &err), PHT_ELIMIT, &err);
    CHECK_STR_CONTAINS(err.message, "over the limit of 16777216 bytes (16 MiB)");
    CHECK(cfg == NULL);
    unlink(path);
}

static void test_setters(void)
{
    pht_error err;
    pht_config *cfg = load_stage(0);
    if (cfg == NULL) return;
    const char *sig = "AB01";
    CHECK_CODE(pht_config_set_result_hash(cfg, "abcd", &err), PHT_ECONFIG, &err);
    CHECK_STR_CONTAINS(err.message, "result_hash: expected 64 bytes of hex, got 2");
    CHECK(pht_config_result_hash(cfg) == NULL);
    CHECK_OK(pht_config_set_result_hash(cfg, hash_hex, &err), &err);
    CHECK(strcmp(pht_config_result_hash(cfg), hash_hex) == 0);
    CHECK_OK(pht_config_set_result_signature(cfg, sig, &err), &err);
    CHECK(strcmp(pht_config_result_signature(cfg), "ab01") == 0);
    CHECK_OK(pht_config_set_stop_signature(cfg, 1, chain_digest_1, sig, &err), &err);
    CHECK_CODE(pht_config_set_stop_signature(cfg, 2, "00", sig, &err), PHT_ECONFIG, &err);
    CHECK_STR_CONTAINS(err.message, "route[2].signature.digest: expected 64 bytes of hex, got 1");
    CHECK_CODE(pht_config_set_stop_key(cfg, 7, sig, &err), PHT_ENOTFOUND, &err);
    CHECK_OK(pht_config_set_stop_key(cfg, 2, sig, &err), &err);
    CHECK_OK(pht_config_set_creator_key(cfg, sig, &err), &err);
    pht_config_stop st;
    CHECK_OK(pht_config_stop_at(cfg, 1, &st, &err), &err);
    CHECK(st.digest && strcmp(st.digest, chain_digest_1) == 0 && strcmp(st.signature, "ab01") == 0);
    CHECK_OK(pht_config_stop_at(cfg, 2, &st, &err), &err);
    CHECK(st.encrypted_key && strcmp(st.encrypted_key, "ab01") == 0 && st.digest == NULL);
    CHECK(strcmp(pht_config_creator_encrypted_key(cfg), "ab01") == 0);
    /* Generic scalar set: known fields keep their rules, unknown ones are free. */
    CHECK_CODE(pht_config_set_string(cfg, "hash", "beef", &err), PHT_ECONFIG, &err);
    CHECK_STR_CONTAINS(err.message, "hash: expected 64 bytes of hex, got 2");
    CHECK(strcmp(pht_config_hash(cfg), hash_hex) == 0);
    CHECK_CODE(pht_config_set_integer(cfg, "route", 1, &err), PHT_ECONFIG, &err);
    CHECK_OK(pht_config_set_integer(cfg, "proposal_id", 42, &err), &err);
    CHECK_OK(pht_config_set_boolean(cfg, "x-flag", 1, &err), &err);
    CHECK_OK(pht_config_set_string(cfg, "result_signature", NULL, &err), &err);
    CHECK(pht_config_result_signature(cfg) == NULL);
    CHECK_OK(pht_config_validate(cfg, &err), &err);
    char *json = NULL;
    CHECK_OK(pht_config_get_json(cfg, "proposal_id", &json, &err), &err);
    CHECK(json && strcmp(json, "42") == 0);
    free(json);
    CHECK_OK(pht_config_get_json(cfg, "result_signature", &json, &err), &err);
    CHECK(json && strcmp(json, "null") == 0);
    free(json);
    CHECK_CODE(pht_config_get_json(cfg, "nope", &json, &err), PHT_ENOTFOUND, &err);
    pht_config_free(cfg);
}

static void test_integer_ids_and_unknown_keys(void)
{
    pht_error err;
    char path[1024];
    size_t len = 0;
    char *base = slurp(stage_config(stages[1], path, sizeof path), &len);
    if (base == NULL) return;
    char *a = replace(base, "\"id\": \"bench-user\"", "\"id\": 1234567890123456");
    char *b = replace(a, "\"station\": \"station_2\"", "\"station\": 2");
    char *c = replace(b, "\"type\": \"docker_repository\"",
                      "\"type\": \"docker_repository\", \"x-src\": {\"k\": [1, null]}");
    char *d = replace(c, "{\n  \"source\"", "{\"x-top\": 1.5, \n  \"source\"");
    pht_config *cfg = NULL;
    CHECK_OK(pht_config_parse(d, strlen(d), &cfg, &err), &err);
    if (cfg != NULL) {
        CHECK(strcmp(pht_config_creator_id(cfg), "1234567890123456") == 0);
        pht_config_stop st;
        CHECK_OK(pht_config_find_stop(cfg, "2", &st, &err), &err);
        CHECK(st.index == 1 && st.station_is_integer);
        char *json = NULL;
        CHECK_OK(pht_config_to_json(cfg, 1, &json, NULL, &err), &err);
        CHECK_STR_CONTAINS(json, "\"id\": 1234567890123456,");
        CHECK_STR_CONTAINS(json, "\"station\": 2,");
        CHECK_STR_CONTAINS(json, "\"x-src\": {\n      \"k\": [\n        1,\n        null\n      ]\n    }");
        /* Unknown top-level keys come after the known ones. */
        CHECK_STR_CONTAINS(json, "\"result_signature\": \"");
        CHECK_STR_CONTAINS(json, "\",\n  \"x-top\": 1.5\n}");
        free(json);
    }
    pht_config_free(cfg);
    free(a);
    free(b);
    free(c);
    free(d);
    free(base);
}

static void test_new_config(void)
{
    pht_error err;
    char *user = key_hex("user"), *builder = key_hex("builder");
    char *k[3] = {key_hex("station_1"), key_hex("station_2"), key_hex("station_3")};
    pht_config_stop_spec route[3] = {
        {{"station_1", 0}, "tue", k[0], "00ff"},
        {{"7", 1}, "padme", k[1], NULL},
        {{"station_3", 0}, "aac", k[2], NULL},
    };
    const char *files[] = {"./train.py", "lib/util.py"};
    pht_config_spec spec = {0};
    spec.train_id = "t-1";
    spec.context_json = "{\"link\": \"https://www.w3.org/2018/credentials/v1\"}";
    spec.source_type = "docker_repository";
    spec.source_address = "harbor.example/pht/t-1";
    spec.source_tag = "latest";
    spec.creator_id = (pht_config_id){"99", 1};
    spec.creator_public_key = user;
    spec.proposal_id = (pht_config_id){"p-1", 0};
    spec.session_id = session_hex;
    spec.file_list = files;
    spec.file_count = 2;
    spec.route = route;
    spec.route_count = 3;
    spec.hash = hash_hex;
    spec.signature = "0102";
    spec.build_signature = "0304";
    spec.build_public_key = builder;
    pht_config *cfg = NULL;
    CHECK_OK(pht_config_new(&spec, &cfg, &err), &err);
    if (cfg != NULL) {
        CHECK(strcmp(pht_config_creator_id(cfg), "99") == 0);
        CHECK(strcmp(pht_config_file_path(cfg, 0), "train.py") == 0);
        pht_config_stop st;
        CHECK_OK(pht_config_find_stop(cfg, "7", &st, &err), &err);
        CHECK(st.index == 1 && strcmp(st.eco_system, "padme") == 0 && st.encrypted_key == NULL);
        char *json = NULL;
        CHECK_OK(pht_config_to_json(cfg, 0, &json, NULL, &err), &err);
        CHECK_STR_CONTAINS(json, "{\"source\":{\"type\":\"docker_repository\",\"address\":");
        CHECK_STR_CONTAINS(json, "\"tag\":\"latest\",\"branch\":null},\"creator\":{\"id\":99,");
        CHECK_STR_CONTAINS(json, "\"result_hash\":null,\"result_signature\":null}");
        free(json);
    }
    pht_config_free(cfg);
    cfg = NULL;
    /* A missing required field is named. */
    spec.hash = NULL;
    CHECK_CODE(pht_config_new(&spec, &cfg, &err), PHT_ECONFIG, &err);
    CHECK_STR_CONTAINS(err.message, "hash: missing (required)");
    spec.hash = hash_hex;
    spec.creator_id = (pht_config_id){"12x", 1};
    CHECK_CODE(pht_config_new(&spec, &cfg, &err), PHT_ECONFIG, &err);
    CHECK_STR_CONTAINS(err.message, "creator.id: \"12x\" is not a decimal integer");
    CHECK(cfg == NULL);
    free(user);
    free(builder);
    for (int i = 0; i < 3; i++) free(k[i]);
}

int main(void)
{
    test_reference_stages();
    test_find_stop();
    test_malformed();
    test_oversized_file();
    test_setters();
    test_integer_ids_and_unknown_keys();
    test_new_config();
    pht_config_free(NULL);
    TEST_DONE();
}
