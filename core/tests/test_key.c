/* Key loading, export and fingerprints, with the reference fixture keys. */
#include <stdio.h>

#include <stdlib.h>

#include "pht/key.h"
#include "pht/util.h"
#include "test.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    static const size_t cap = 1 << 16;
    char *buf = malloc(cap);
    *len = fread(buf, 1, cap, f);
    fclose(f);
    return buf;
}

static char *fixture(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/reference-v2/keys/%s", test_fixtures(), name);
    char *s = slurp(path, len);
    if (s == NULL) fprintf(stderr, "cannot read %s\n", path);
    return s;
}

static void test_fixture_keys_load(void)
{
    static const char *names[] = {"builder", "station_1", "station_2", "station_3", "user"};
    pht_error err;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char file[64];
        size_t len = 0;
        snprintf(file, sizeof file, "%s.pem", names[i]);
        char *pem = fixture(file, &len);
        pht_key *priv = pht_key_load_private_pem(pem, len, NULL, &err);
        CHECK_OK(priv ? 0 : err.code, &err);
        free(pem);
        snprintf(file, sizeof file, "%s.pub.pem", names[i]);
        pem = fixture(file, &len);
        pht_key *pub = pht_key_load_public_pem(pem, len, &err);
        CHECK_OK(pub ? 0 : err.code, &err);
        /* The config form: hex of the PEM text. */
        char *hex = malloc(2 * len + 1);
        pht_hex_encode((unsigned char *)pem, len, hex);
        pht_key *pubhex = pht_key_load_public_hex(hex, 2 * len, &err);
        CHECK_OK(pubhex ? 0 : err.code, &err);
        free(hex);
        free(pem);
        if (priv && pub && pubhex) {
            char f1[65], f2[65], f3[65];
            CHECK_OK(pht_key_fingerprint(priv, f1, &err), &err);
            CHECK_OK(pht_key_fingerprint(pub, f2, &err), &err);
            CHECK_OK(pht_key_fingerprint(pubhex, f3, &err), &err);
            CHECK(strcmp(f1, f2) == 0 && strcmp(f2, f3) == 0);
            CHECK(pht_key_bits(pub) == 2048);
            CHECK(pht_key_is_private(priv) && !pht_key_is_private(pub));
        }
        pht_key_free(priv);
        pht_key_free(pub);
        pht_key_free(pubhex);
    }
}

/* Run an openssl command line (the oracle); returns 1 on success. */
static int sh(const char *fmt, const char *a, const char *b)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc == 0;
}

static char *tmpfile_text(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    char *s = slurp(path, len);
    if (s == NULL) fprintf(stderr, "cannot read %s\n", path);
    return s;
}

static void fingerprint_of(pht_key *k, char *out)
{
    pht_error err;
    out[0] = '\0';
    if (k) CHECK_OK(pht_key_fingerprint(k, out, &err), &err);
}

/* PKCS#8, encrypted PKCS#8 and encrypted PKCS#1 made by the openssl CLI. */
static void test_openssl_formats(void)
{
    pht_error err;
    char src[1024], want[65], got[65];
    size_t len = 0;
    snprintf(src, sizeof src, "%s/reference-v2/keys/station_1.pem", test_fixtures());
    char *pem = slurp(src, &len);
    pht_key *ref = pht_key_load_private_pem(pem, len, NULL, &err);
    free(pem);
    fingerprint_of(ref, want);
    pht_key_free(ref);
    const char *d = test_tmpdir();
    char out[1024];

    /* The fingerprint is SHA-256 of the DER SPKI, as openssl and sha256sum compute it. */
    char cmd[2048], oracle[65] = "";
    snprintf(cmd, sizeof cmd, "openssl pkey -in '%s' -pubout -outform DER | sha256sum", src);
    FILE *p = popen(cmd, "r");
    CHECK(p && fread(oracle, 1, 64, p) == 64);
    if (p) pclose(p);
    CHECK(strcmp(oracle, want) == 0);

    snprintf(out, sizeof out, "%s/k_p8.pem", d);
    CHECK(sh("openssl pkcs8 -topk8 -nocrypt -in '%s' -out '%s'", src, out));
    pem = tmpfile_text("k_p8.pem", &len);
    CHECK(pem && strstr(pem, "-----BEGIN PRIVATE KEY-----"));
    pht_key *k = pht_key_load_private_pem(pem, len, NULL, &err);
    CHECK_OK(k ? 0 : err.code, &err);
    fingerprint_of(k, got);
    CHECK(strcmp(got, want) == 0);
    pht_key_free(k);
    free(pem);

    snprintf(out, sizeof out, "%s/k_p8enc.pem", d);
    CHECK(sh("openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:s3cret -in '%s' -out '%s'", src,
             out));
    pem = tmpfile_text("k_p8enc.pem", &len);
    CHECK(pem && strstr(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    k = pht_key_load_private_pem(pem, len, "s3cret", &err);
    CHECK_OK(k ? 0 : err.code, &err);
    fingerprint_of(k, got);
    CHECK(strcmp(got, want) == 0);
    pht_key_free(k);
    k = pht_key_load_private_file(out, "s3cret", &err);
    CHECK_OK(k ? 0 : err.code, &err);
    pht_key_free(k);
    CHECK(pht_key_load_private_pem(pem, len, "wrong", &err) == NULL);
    CHECK(err.code == PHT_EKEY);
    CHECK_STR_CONTAINS(err.message, "wrong password or corrupt key");
    CHECK(pht_key_load_private_pem(pem, len, NULL, &err) == NULL);
    CHECK(err.code == PHT_EKEY);
    CHECK_STR_CONTAINS(err.message, "encrypted and no password was given");
    free(pem);

    snprintf(out, sizeof out, "%s/k_p1enc.pem", d);
    CHECK(sh("openssl rsa -traditional -aes256 -passout pass:s3cret -in '%s' -out '%s' 2>/dev/null",
             src, out));
    pem = tmpfile_text("k_p1enc.pem", &len);
    CHECK(pem && strstr(pem, "Proc-Type: 4,ENCRYPTED"));
    k = pht_key_load_private_pem(pem, len, "s3cret", &err);
    CHECK_OK(k ? 0 : err.code, &err);
    fingerprint_of(k, got);
    CHECK(strcmp(got, want) == 0);
    pht_key_free(k);
    free(pem);

    snprintf(out, sizeof out, "%s/k_rsapub.pem", d);
    CHECK(sh("openssl rsa -in '%s' -RSAPublicKey_out -out '%s' 2>/dev/null", src, out));
    pem = tmpfile_text("k_rsapub.pem", &len);
    CHECK(pem && strstr(pem, "-----BEGIN RSA PUBLIC KEY-----"));
    k = pht_key_load_public_pem(pem, len, &err);
    CHECK_OK(k ? 0 : err.code, &err);
    fingerprint_of(k, got);
    CHECK(strcmp(got, want) == 0);
    pht_key_free(k);
    free(pem);

    snprintf(out, sizeof out, "%s/k_1024.pem", d);
    CHECK(sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out '%s'%s", out,
             " 2>/dev/null"));
    pem = tmpfile_text("k_1024.pem", &len);
    CHECK(pht_key_load_private_pem(pem, len, NULL, &err) == NULL);
    CHECK(err.code == PHT_EKEY);
    CHECK_STR_CONTAINS(err.message, "RSA key of 1024 bits (libpht needs 2048");
    free(pem);

    snprintf(out, sizeof out, "%s/k_ec.pem", d);
    CHECK(sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '%s'%s", out,
             " 2>/dev/null"));
    pem = tmpfile_text("k_ec.pem", &len);
    CHECK(pht_key_load_private_pem(pem, len, NULL, &err) == NULL);
    CHECK_STR_CONTAINS(err.message, "private key");
    free(pem);
}

static void test_bad_inputs(void)
{
    pht_error err;
    const char junk[] = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n";
    CHECK(pht_key_load_public_pem(junk, sizeof junk - 1, &err) == NULL);
    CHECK(err.code == PHT_EFORMAT);
    CHECK_STR_CONTAINS(err.message, "cannot decode the PEM as an RSA public key");
    CHECK(pht_key_load_public_pem("hello", 5, &err) == NULL);
    CHECK_STR_CONTAINS(err.message, "not a PEM public key");
    CHECK(pht_key_load_public_hex("2d2d2g", 6, &err) == NULL);
    CHECK(err.code == PHT_EFORMAT);
    CHECK_STR_CONTAINS(err.message, "not hex");
    CHECK(pht_key_load_private_pem("hello", 5, NULL, &err) == NULL);
    CHECK(err.code == PHT_EFORMAT);
    CHECK_STR_CONTAINS(err.message, "not a PEM private key");
    char path[1024];
    snprintf(path, sizeof path, "%s/no-such-key.pem", test_tmpdir());
    CHECK(pht_key_load_private_file(path, NULL, &err) == NULL);
    CHECK(err.code == PHT_EIO);
    CHECK_STR_CONTAINS(err.message, "no-such-key.pem: cannot open");
    /* A private key PEM is not accepted where a public key is expected. */
    size_t len = 0;
    char *pem = fixture("user.pem", &len);
    CHECK(pht_key_load_public_pem(pem, len, &err) == NULL);
    CHECK(err.code == PHT_EFORMAT);
    free(pem);
}

/* Generated keys export to PEM forms that load back to the same key. */
static void test_export(void)
{
    pht_error err;
    size_t len = 0;
    char *pem = fixture("station_3.pem", &len);
    pht_key *k = pht_key_load_private_pem(pem, len, NULL, &err);
    free(pem);
    CHECK(k != NULL);
    if (k == NULL) return;
    char want[65], got[65];
    fingerprint_of(k, want);
    char *out = NULL;
    size_t outlen = 0;
    CHECK_OK(pht_key_private_pem(k, NULL, &out, &outlen, &err), &err);
    CHECK(strstr(out, "-----BEGIN PRIVATE KEY-----") == out);
    pht_key *back = pht_key_load_private_pem(out, outlen, NULL, &err);
    fingerprint_of(back, got);
    CHECK(strcmp(got, want) == 0);
    pht_key_free(back);
    pht_secret_free(out, outlen + 1);
    CHECK_OK(pht_key_private_pem(k, "pw", &out, &outlen, &err), &err);
    CHECK(strstr(out, "-----BEGIN ENCRYPTED PRIVATE KEY-----") == out);
    back = pht_key_load_private_pem(out, outlen, "pw", &err);
    fingerprint_of(back, got);
    CHECK(strcmp(got, want) == 0);
    pht_key_free(back);
    pht_secret_free(out, outlen + 1);

    CHECK_OK(pht_key_public_pem(k, &out, &outlen, &err), &err);
    CHECK(strstr(out, "-----BEGIN PUBLIC KEY-----") == out && strlen(out) == outlen);
    size_t publen = 0;
    char *file = fixture("station_3.pub.pem", &publen);
    CHECK(publen == outlen && memcmp(file, out, outlen) == 0);
    free(file);
    free(out);
    pht_key *pub = NULL;
    CHECK_OK(pht_key_public_hex(k, &out, &outlen, &err), &err);
    CHECK(outlen == 2 * publen && strspn(out, "0123456789abcdef") == outlen);
    pub = pht_key_load_public_hex(out, outlen, &err);
    free(out);
    fingerprint_of(pub, got);
    CHECK(strcmp(got, want) == 0);
    CHECK_CODE(pht_key_private_pem(pub, NULL, &out, &outlen, &err), PHT_ESTATE, &err);
    CHECK(pht_key_size(pub) == 256);
    pht_key_free(pub);
    pht_key_free(k);
}

int main(void)
{
    test_fixture_keys_load();
    test_openssl_formats();
    test_bad_inputs();
    test_export();
    pht_key_free(NULL);
    TEST_DONE();
}
