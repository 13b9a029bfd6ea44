/* libpht image API (filled in by its area). */
#ifndef PHT_IMAGE_H
#define PHT_IMAGE_H

#include "pht/error.h"

#endif
