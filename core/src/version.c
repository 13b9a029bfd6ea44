/* The version of the library actually loaded (pht/version.h has the headers'). */
#include "pht/version.h"

int pht_version_number(void)
{
    return PHT_VERSION_NUMBER;
}

const char *pht_version_string(void)
{
    return PHT_VERSION_STRING;
}
