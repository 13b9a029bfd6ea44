/* libpht crypt API (filled in by its area). */
#ifndef PHT_CRYPT_H
#define PHT_CRYPT_H

#include "pht/error.h"

#endif
