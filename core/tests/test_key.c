/* Key loading, export and fingerprints, with the reference fixture keys. */
#include <stdio.h>

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

int main(void)
{
    test_fixture_keys_load();
    pht_key_free(NULL);
    TEST_DONE();
}
