/* Signatures: round trips, tampering, malformed input, both schemes. */
#include <stdio.h>

#include "pht/hash.h"
#include "pht/key.h"
#include "test.h"

static pht_key *load_fixture(const char *name, int private_key)
{
    char path[1024];
    pht_error err;
    snprintf(path, sizeof path, "%s/reference-v2/keys/%s%s", test_fixtures(), name,
             private_key ? ".pem" : ".pub.pem");
    if (private_key) {
        pht_key *k = pht_key_load_private_file(path, NULL, &err);
        if (k == NULL) fprintf(stderr, "%s: %s\n", path, err.message);
        return k;
    }
    FILE *f = fopen(path, "rb");
    char buf[4096];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    pht_key *k = pht_key_load_public_pem(buf, n, &err);
    if (k == NULL) fprintf(stderr, "%s: %s\n", path, err.message);
    return k;
}

static void test_pkcs1v15(pht_key *priv, pht_key *pub, pht_key *other)
{
    pht_error err;
    unsigned char eh[PHT_SHA512_LEN];
    CHECK_OK(pht_sha512("immutable", 9, eh, &err), &err);
    unsigned char *sig = NULL;
    size_t siglen = 0;
    CHECK_OK(pht_key_sign(priv, eh, sizeof eh, &sig, &siglen, &err), &err);
    CHECK(siglen == 256);
    CHECK_OK(pht_key_verify(pub, eh, sizeof eh, sig, siglen, &err), &err);
    CHECK_OK(pht_key_verify(priv, eh, sizeof eh, sig, siglen, &err), &err);

    /* PKCS#1 v1.5 is deterministic: the same message signs the same. */
    unsigned char *sig2 = NULL;
    size_t sig2len = 0;
    CHECK_OK(pht_key_sign(priv, eh, sizeof eh, &sig2, &sig2len, &err), &err);
    CHECK(sig2len == siglen && memcmp(sig, sig2, siglen) == 0);
    free(sig2);

    /* Every tampered byte of the signature or the message fails to verify. */
    for (size_t i = 0; i < siglen; i += 17) {
        sig[i] ^= 0x01;
        CHECK_CODE(pht_key_verify(pub, eh, sizeof eh, sig, siglen, &err), PHT_EVERIFY, &err);
        sig[i] ^= 0x01;
    }
    CHECK_STR_CONTAINS(err.message, "signature does not verify");
    for (size_t i = 0; i < sizeof eh; i++) {
        eh[i] ^= 0x80;
        CHECK_CODE(pht_key_verify(pub, eh, sizeof eh, sig, siglen, &err), PHT_EVERIFY, &err);
        eh[i] ^= 0x80;
    }
    CHECK_CODE(pht_key_verify(other, eh, sizeof eh, sig, siglen, &err), PHT_EVERIFY, &err);
    /* A signature that cannot be one is malformed, not just wrong. */
    CHECK_CODE(pht_key_verify(pub, eh, sizeof eh, sig, siglen - 1, &err), PHT_EFORMAT, &err);
    CHECK_STR_CONTAINS(err.message, "signature is 255 bytes");
    CHECK_CODE(pht_key_verify(pub, eh, sizeof eh, sig, 0, &err), PHT_EFORMAT, &err);
    /* A public key cannot sign. */
    unsigned char *none = NULL;
    CHECK_CODE(pht_key_sign(pub, eh, sizeof eh, &none, &siglen, &err), PHT_ESTATE, &err);
    CHECK_STR_CONTAINS(err.message, "needs a private key");
    CHECK(none == NULL);
    free(sig);
    /* An empty message is a message. */
    CHECK_OK(pht_key_sign(priv, "", 0, &sig, &siglen, &err), &err);
    CHECK_OK(pht_key_verify(pub, "", 0, sig, siglen, &err), &err);
    free(sig);
}

static void test_pss_digest(pht_key *priv, pht_key *pub, pht_key *other)
{
    pht_error err;
    unsigned char ed[PHT_SHA512_LEN];
    CHECK_OK(pht_sha512("results", 7, ed, &err), &err);
    unsigned char *sig = NULL, *sig2 = NULL;
    size_t siglen = 0, sig2len = 0;
    CHECK_OK(pht_key_sign_digest(priv, ed, sizeof ed, &sig, &siglen, &err), &err);
    CHECK(siglen == 256);
    CHECK_OK(pht_key_verify_digest(pub, ed, sizeof ed, sig, siglen, &err), &err);
    /* PSS is randomised by its salt. */
    CHECK_OK(pht_key_sign_digest(priv, ed, sizeof ed, &sig2, &sig2len, &err), &err);
    CHECK(sig2len == siglen && memcmp(sig, sig2, siglen) != 0);
    CHECK_OK(pht_key_verify_digest(pub, ed, sizeof ed, sig2, sig2len, &err), &err);
    free(sig2);

    for (size_t i = 0; i < siglen; i += 13) {
        sig[i] ^= 0x40;
        CHECK_CODE(pht_key_verify_digest(pub, ed, sizeof ed, sig, siglen, &err), PHT_EVERIFY, &err);
        sig[i] ^= 0x40;
    }
    for (size_t i = 0; i < sizeof ed; i++) {
        ed[i] ^= 0x02;
        CHECK_CODE(pht_key_verify_digest(pub, ed, sizeof ed, sig, siglen, &err), PHT_EVERIFY, &err);
        ed[i] ^= 0x02;
    }
    CHECK_CODE(pht_key_verify_digest(other, ed, sizeof ed, sig, siglen, &err), PHT_EVERIFY, &err);
    /* A PSS signature is no PKCS#1 v1.5 signature of the same bytes. */
    CHECK_CODE(pht_key_verify(pub, ed, sizeof ed, sig, siglen, &err), PHT_EVERIFY, &err);
    CHECK_CODE(pht_key_verify_digest(pub, ed, 63, sig, siglen, &err), PHT_EFORMAT, &err);
    CHECK_STR_CONTAINS(err.message, "digest is 63 bytes, expected 64");
    CHECK_CODE(pht_key_verify_digest(pub, ed, sizeof ed, sig, 300, &err), PHT_EFORMAT, &err);
    unsigned char *none = NULL;
    CHECK_CODE(pht_key_sign_digest(priv, ed, 32, &none, &siglen, &err), PHT_EINVAL, &err);
    CHECK_CODE(pht_key_sign_digest(pub, ed, sizeof ed, &none, &siglen, &err), PHT_ESTATE, &err);
    CHECK(none == NULL);
    free(sig);
}

static void test_generated_key(void)
{
    pht_error err;
    pht_key *k = pht_key_generate(2048, &err);
    CHECK(k != NULL);
    if (k == NULL) return;
    CHECK(pht_key_bits(k) == 2048 && pht_key_is_private(k));
    unsigned char d[PHT_SHA512_LEN] = {1, 2, 3};
    unsigned char *sig = NULL;
    size_t siglen = 0;
    CHECK_OK(pht_key_sign_digest(k, d, sizeof d, &sig, &siglen, &err), &err);
    char *hex = NULL;
    size_t hexlen = 0;
    CHECK_OK(pht_key_public_hex(k, &hex, &hexlen, &err), &err);
    pht_key *pub = pht_key_load_public_hex(hex, hexlen, &err);
    CHECK(pub != NULL);
    if (pub) CHECK_OK(pht_key_verify_digest(pub, d, sizeof d, sig, siglen, &err), &err);
    free(hex);
    free(sig);
    pht_key_free(pub);
    pht_key_free(k);
    CHECK(pht_key_generate(1024, &err) == NULL);
    CHECK(err.code == PHT_EINVAL);
    CHECK_STR_CONTAINS(err.message, "1024 bits requested");
}

int main(void)
{
    pht_key *priv = load_fixture("station_1", 1), *pub = load_fixture("station_1", 0);
    pht_key *other = load_fixture("station_2", 0);
    CHECK(priv && pub && other);
    if (priv && pub && other) {
        test_pkcs1v15(priv, pub, other);
        test_pss_digest(priv, pub, other);
    }
    pht_key_free(priv);
    pht_key_free(pub);
    pht_key_free(other);
    test_generated_key();
    TEST_DONE();
}
