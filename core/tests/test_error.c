/* The error convention: codes, messages, OpenSSL queue draining. */
#include <openssl/err.h>
#include <openssl/evp.h>

#include "test.h"

int main(void)
{
    pht_error err;
    pht_error_clear(&err);
    CHECK(err.code == PHT_OK && err.message[0] == '\0');

    CHECK(pht_error_set(&err, PHT_EIO, "open %s: %s", "x.tar", "No such file") == PHT_EIO);
    CHECK(err.code == PHT_EIO);
    CHECK(strcmp(err.message, "open x.tar: No such file") == 0);

    pht_error_prefix(&err, "step %s", "read_config");
    CHECK(strcmp(err.message, "step read_config: open x.tar: No such file") == 0);

    /* A failing OpenSSL call leaves a reason in the queue; set_ssl drains it. */
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "NO-SUCH-ALGORITHM", NULL);
    CHECK(ctx == NULL);
    CHECK(pht_error_set_ssl(&err, PHT_ECRYPTO, "load key") == PHT_ECRYPTO);
    CHECK_STR_CONTAINS(err.message, "load key: ");
    CHECK(ERR_peek_error() == 0);

    CHECK(pht_error_set(NULL, PHT_EINVAL, "ignored") == PHT_EINVAL);
    CHECK(strcmp(pht_code_name(PHT_EVERIFY), "EVERIFY") == 0);
    CHECK(strcmp(pht_code_name(12345), "EUNKNOWN") == 0);
    CHECK(pht_version_number() == PHT_VERSION_NUMBER);
    TEST_DONE();
}
