/*
 * RSA keys as a train or a station hands them over: the input as public
 * PEM, as hex of PEM (the train_config.json form), and as private PEM
 * without and with a password. A key that loads is written back and must
 * load again with the same fingerprint.
 */
#include "fuzz_common.h"

static void roundtrip(pht_key *k)
{
    pht_error err;
    char fp[128], fp2[128];
    if (pht_key_fingerprint(k, fp, &err) != 0) abort();
    char *hex = NULL;
    size_t len = 0;
    if (pht_key_public_hex(k, &hex, &len, &err) != 0) abort();
    pht_key *again = pht_key_load_public_hex(hex, len, &err);
    if (again == NULL || pht_key_fingerprint(again, fp2, &err) != 0 || strcmp(fp, fp2) != 0) {
        fprintf(stderr, "a loaded key does not load back: %s\n", err.message);
        abort();
    }
    pht_key_free(again);
    free(hex);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pht_error err;
    const char *text = (const char *)data;
    pht_key *k = pht_key_load_public_pem(text, size, &err);
    if (k) {
        roundtrip(k);
        pht_key_free(k);
    }
    if ((k = pht_key_load_public_hex(text, size, &err)) != NULL) {
        roundtrip(k);
        pht_key_free(k);
    }
    if ((k = pht_key_load_private_pem(text, size, NULL, &err)) != NULL) {
        roundtrip(k);
        pht_key_free(k);
    }
    if ((k = pht_key_load_private_pem(text, size, "fuzz", &err)) != NULL) pht_key_free(k);
    return 0;
}
