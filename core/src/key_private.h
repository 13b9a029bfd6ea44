/* The inside of pht_key, shared by key.c, sign.c and crypt.c only. */
#ifndef PHT_KEY_PRIVATE_H
#define PHT_KEY_PRIVATE_H

#include <openssl/evp.h>

#include "pht/key.h"

struct pht_key {
    EVP_PKEY *pkey;
    int is_private;
};

#endif
