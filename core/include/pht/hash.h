/* libpht hash API (filled in by its area). */
#ifndef PHT_HASH_H
#define PHT_HASH_H

#include "pht/error.h"

#endif
