/* libpht key API (filled in by its area). */
#ifndef PHT_KEY_H
#define PHT_KEY_H

#include "pht/error.h"

#endif
