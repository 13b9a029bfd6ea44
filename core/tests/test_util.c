/* Hex encode/decode round trips and error messages. */
#include "pht/util.h"
#include "test.h"

int main(void)
{
    pht_error err;
    const unsigned char raw[] = {0x00, 0x7f, 0xab, 0xff};
    char hex[9];
    pht_hex_encode(raw, sizeof raw, hex);
    CHECK(strcmp(hex, "007fabff") == 0);

    unsigned char back[4];
    CHECK_OK(pht_hex_decode("007FabFF", 8, back, "x", &err), &err);
    CHECK(memcmp(back, raw, 4) == 0);

    CHECK_CODE(pht_hex_decode("abc", 3, back, "session_id", &err), PHT_EFORMAT, &err);
    CHECK_STR_CONTAINS(err.message, "session_id: not hex (odd length 3)");
    CHECK_CODE(pht_hex_decode("zz", 2, back, "hash", &err), PHT_EFORMAT, &err);
    CHECK_STR_CONTAINS(err.message, "hash: not hex");

    unsigned char *p = NULL;
    size_t n = 0;
    CHECK_OK(pht_hex_decode_alloc("0102", 4, &p, &n, "y", &err), &err);
    CHECK(n == 2 && p[0] == 1 && p[1] == 2);
    pht_secret_free(p, n);
    pht_secret_free(NULL, 0);
    TEST_DONE();
}
