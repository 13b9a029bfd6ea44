/* libpht config API (filled in by its area). */
#ifndef PHT_CONFIG_H
#define PHT_CONFIG_H

#include "pht/error.h"

#endif
