/*
 * The reference implementation's trains (spec/fixtures/reference-v2) decrypt,
 * hash and verify with libpht's primitives: e_h, e_d, the chain digests, the
 * PKCS#1 v1.5 and PSS signatures, OAEP key wraps and AES-256-CBC files, at
 * every stop of the route. The expected values come from expected.json.
 */
#include <dirent.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "pht/crypt.h"
#include "pht/hash.h"
#include "pht/key.h"
#include "pht/util.h"
#include "test.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot read %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static cJSON *load_json(const char *path)
{
    size_t n = 0;
    char *text = slurp(path, &n);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (j == NULL) fprintf(stderr, "%s: not JSON\n", path);
    return j;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Decode a hex field into buf (at most cap bytes); returns the byte count or 0. */
static size_t unhex(const char *hex, unsigned char *buf, size_t cap)
{
    pht_error err;
    if (hex == NULL || strlen(hex) / 2 > cap) return 0;
    if (pht_hex_decode(hex, strlen(hex), buf, "field", &err) != 0) return 0;
    return strlen(hex) / 2;
}

static pht_key *private_key(const char *name)
{
    char path[1024];
    pht_error err;
    snprintf(path, sizeof path, "%s/reference-v2/keys/%s.pem", test_fixtures(), name);
    pht_key *k = pht_key_load_private_file(path, NULL, &err);
    if (k == NULL) fprintf(stderr, "%s\n", err.message);
    return k;
}

static pht_key *config_key(const char *hex)
{
    pht_error err;
    pht_key *k = hex ? pht_key_load_public_hex(hex, strlen(hex), &err) : NULL;
    if (k == NULL) fprintf(stderr, "config key: %s\n", hex ? err.message : "missing");
    return k;
}

/* Decrypt the file at path into the hash (plaintext never leaves memory). */
static int hash_decrypted(pht_hash *h, const pht_symkey *key, const char *path, char *copy,
                          size_t copycap)
{
    pht_error err;
    size_t n = 0, a = 0, b = 0;
    char *ct = slurp(path, &n);
    if (ct == NULL) return -1;
    unsigned char *pt = malloc(n + PHT_CIPHER_OVERHEAD);
    pht_cipher *c = pht_cipher_new_decrypt(key, &err);
    int rc = pht_cipher_update(c, (unsigned char *)ct, n, pt, &a, &err);
    if (rc == 0) rc = pht_cipher_final(c, pt + a, &b, &err);
    CHECK_OK(rc, &err);
    if (rc == 0) CHECK_OK(pht_hash_update(h, pt, a + b, &err), &err);
    if (rc == 0 && copy && a + b < copycap) {
        memcpy(copy, pt, a + b);
        copy[a + b] = '\0';
    }
    pht_cipher_free(c);
    free(pt);
    free(ct);
    return rc;
}

/* Relative paths of the regular files under root/rel, appended to list. */
static void collect(const char *root, const char *rel, char **list, size_t *n, size_t cap)
{
    char dir[2048];
    snprintf(dir, sizeof dir, "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(dir);
    if (d == NULL) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char sub[1024], full[3072];
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat st;
        if (lstat(full, &st) != 0) continue;
        if (S_ISDIR(st.st_mode))
            collect(root, sub, list, n, cap);
        else if (S_ISREG(st.st_mode) && *n < cap)
            list[(*n)++] = strdup(sub);
    }
    closedir(d);
}

static void check_stage(const char *tar, int stage, const cJSON *expected)
{
    pht_error err;
    char dir[1024], cmd[4096], path[2048];
    snprintf(dir, sizeof dir, "%s/reference-stage%d", test_tmpdir(), stage);
    snprintf(cmd, sizeof cmd,
             "rm -rf '%s' && mkdir -p '%s' && tar -xf '%s/reference-v2/%s' -C '%s'", dir, dir,
             test_fixtures(), tar, dir);
    CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/opt/train_config.json", dir);
    cJSON *cfg = load_json(path);
    if (cfg == NULL) {
        CHECK(0);
        return;
    }
    unsigned char sid[64], eh[64], want[64], sig[512], ed[64];
    size_t sidlen = unhex(jstr(cfg, "session_id"), sid, sizeof sid);
    CHECK(sidlen == 64);
    const cJSON *route = cJSON_GetObjectItemCaseSensitive(cfg, "route");
    const cJSON *creator = cJSON_GetObjectItemCaseSensitive(cfg, "creator");

    /* The symmetric key: wrapped for stop 0 when built, for the creator after a post-run. */
    pht_symkey *key = NULL;
    if (stage == 0) {
        pht_key *k = private_key("station_1");
        const char *wrapped = jstr(cJSON_GetArrayItem(route, 0), "encrypted_key");
        size_t n = unhex(wrapped, sig, sizeof sig);
        key = k ? pht_symkey_unwrap(k, sig, n, &err) : NULL;
        pht_key_free(k);
    } else {
        pht_key *k = private_key("user");
        size_t n = 0;
        snprintf(path, sizeof path, "%s/opt/user_sym_key.key", dir);
        char *raw = slurp(path, &n);
        key = k && raw ? pht_symkey_unwrap(k, (unsigned char *)raw, n, &err) : NULL;
        free(raw);
        /* Every stop gets the same key. */
        for (int i = 0; key && i < 3; i++) {
            char name[32];
            snprintf(name, sizeof name, "station_%d", i + 1);
            pht_key *sk = private_key(name);
            size_t wn = unhex(jstr(cJSON_GetArrayItem(route, i), "encrypted_key"), sig, sizeof sig);
            pht_symkey *other = sk ? pht_symkey_unwrap(sk, sig, wn, &err) : NULL;
            unsigned char a[32], b[32];
            CHECK(other != NULL);
            if (other) {
                pht_symkey_export(key, a);
                pht_symkey_export(other, b);
                CHECK(memcmp(a, b, 32) == 0);
            }
            pht_symkey_free(other);
            pht_key_free(sk);
        }
        pht_key_free(k);
    }
    CHECK(key != NULL);
    if (key == NULL) {
        fprintf(stderr, "stage %d: %s\n", stage, err.message);
        cJSON_Delete(cfg);
        return;
    }

    /* e_h over the decrypted immutable files. */
    const char *cid = jstr(creator, "id");
    pht_hash *h = pht_hash_new_immutable(cid, strlen(cid), sid, sidlen, &err);
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(cfg, "file_list"))
    {
        const char *name = f->valuestring;
        if (strncmp(name, "./", 2) == 0) name += 2;
        snprintf(path, sizeof path, "%s/opt/pht_train/%s", dir, name);
        hash_decrypted(h, key, path, NULL, 0);
    }
    CHECK_OK(pht_hash_begin_query(h, &err), &err);
    snprintf(path, sizeof path, "%s/opt/pht_train/query.json", dir);
    hash_decrypted(h, key, path, NULL, 0);
    CHECK_OK(pht_hash_final(h, eh, &err), &err);
    pht_hash_free(h);
    CHECK(unhex(jstr(cfg, "hash"), want, sizeof want) == 64 && memcmp(eh, want, 64) == 0);
    CHECK(unhex(jstr(expected, "hash"), want, sizeof want) == 64 && memcmp(eh, want, 64) == 0);

    /* e_h_sig by the creator, the build signature over e_h || e_h_sig. */
    pht_key *ck = config_key(jstr(creator, "rsa_public_key"));
    size_t siglen = unhex(jstr(cfg, "signature"), sig, sizeof sig);
    if (ck) CHECK_OK(pht_key_verify(ck, eh, 64, sig, siglen, &err), &err);
    pht_key_free(ck);
    const cJSON *build = cJSON_GetObjectItemCaseSensitive(cfg, "build");
    pht_key *bk = config_key(jstr(build, "rsa_public_key"));
    unsigned char msg[64 + 512], bsig[512];
    memcpy(msg, eh, 64);
    memcpy(msg + 64, sig, siglen);
    size_t bsiglen = unhex(jstr(build, "signature"), bsig, sizeof bsig);
    if (bk) CHECK_OK(pht_key_verify(bk, msg, 64 + siglen, bsig, bsiglen, &err), &err);
    /* The builder did not sign e_h alone. */
    if (bk) CHECK_CODE(pht_key_verify(bk, eh, 64, bsig, bsiglen, &err), PHT_EVERIFY, &err);
    pht_key_free(bk);

    if (stage > 0) {
        /* e_d over the results in walk order. */
        char *files[64];
        size_t n = 0;
        snprintf(path, sizeof path, "%s/opt/pht_results", dir);
        collect(path, "", files, &n, 64);
        CHECK(n == 4);
        pht_path_walk_sort((const char **)files, n);
        const cJSON *order = cJSON_GetObjectItemCaseSensitive(expected, "results_archive_order");
        const cJSON *plain = cJSON_GetObjectItemCaseSensitive(expected, "final_results_plaintext");
        size_t k = 0;
        cJSON_ArrayForEach(f, order)
        {
            char full[3072];
            snprintf(full, sizeof full, "%s/opt/%s", dir, f->valuestring);
            struct stat st;
            if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) continue;
            CHECK(k < n && strcmp(f->valuestring + strlen("pht_results/"), files[k]) == 0);
            k++;
        }
        pht_hash *r = pht_hash_new_results(sid, sidlen, &err);
        for (size_t i = 0; i < n; i++) {
            char full[3072], text[65536];
            snprintf(full, sizeof full, "%s/opt/pht_results/%s", dir, files[i]);
            hash_decrypted(r, key, full, text, sizeof text);
            if (stage == 3) {
                char name[1100];
                snprintf(name, sizeof name, "pht_results/%s", files[i]);
                const char *w = jstr(plain, name);
                CHECK(w && strcmp(w, text) == 0);
            }
            free(files[i]);
        }
        CHECK_OK(pht_hash_final(r, ed, &err), &err);
        pht_hash_free(r);
        const cJSON *st =
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(expected, "stations"), stage - 1);
        CHECK(unhex(jstr(cfg, "result_hash"), want, 64) == 64 && memcmp(ed, want, 64) == 0);
        CHECK(unhex(jstr(st, "result_hash"), want, 64) == 64 && memcmp(ed, want, 64) == 0);

        /* e_d_sig: PSS by the station that wrote the results (stop stage-1). */
        const cJSON *stop = cJSON_GetArrayItem(route, stage - 1);
        pht_key *sk = config_key(jstr(stop, "rsa_public_key"));
        siglen = unhex(jstr(cfg, "result_signature"), sig, sizeof sig);
        if (sk) CHECK_OK(pht_key_verify_digest(sk, ed, 64, sig, siglen, &err), &err);
        pht_key_free(sk);

        /* Chain digests and their signatures for every stop that ran. */
        unsigned char prev[64 * 3], digest[64], mine[64];
        size_t prevlen = 0;
        for (int i = 0; i < stage; i++) {
            const cJSON *s = cJSON_GetArrayItem(route, i);
            const cJSON *sg = cJSON_GetObjectItemCaseSensitive(s, "signature");
            CHECK(unhex(jstr(sg, "digest"), digest, 64) == 64);
            size_t l = unhex(jstr(sg, "signature"), sig, sizeof sig);
            pht_key *pk = config_key(jstr(s, "rsa_public_key"));
            if (pk) CHECK_OK(pht_key_verify_digest(pk, digest, 64, sig, l, &err), &err);
            pht_key_free(pk);
            const cJSON *sx =
                cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(expected, "stations"), i);
            CHECK(unhex(jstr(sx, "chain_digest"), want, 64) == 64 && memcmp(digest, want, 64) == 0);
            if (i == stage - 1) {
                /* The newest digest is SHA-512(X || e_d) of this stage. */
                CHECK_OK(pht_chain_digest(i == 0 ? sid : prev, i == 0 ? sidlen : prevlen, ed, mine,
                                          &err),
                         &err);
                CHECK(memcmp(mine, digest, 64) == 0);
            }
            memcpy(prev + prevlen, digest, 64);
            prevlen += 64;
        }
    }
    pht_symkey_free(key);
    cJSON_Delete(cfg);
    CHECK_OK(pht_remove_tree(dir, &err), &err);
}

int main(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/reference-v2/expected.json", test_fixtures());
    cJSON *expected = load_json(path);
    CHECK(expected != NULL);
    if (expected == NULL) TEST_DONE();
    check_stage("stage0-built.opt.tar", 0, expected);
    check_stage("stage1-station_1-post.opt.tar", 1, expected);
    check_stage("stage2-station_2-post.opt.tar", 2, expected);
    check_stage("stage3-station_3-post.opt.tar", 3, expected);
    cJSON_Delete(expected);
    TEST_DONE();
}
