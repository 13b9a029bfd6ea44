/* libpht: the Personal Health Train security protocol. Umbrella header. */
#ifndef PHT_PHT_H
#define PHT_PHT_H

#include "pht/export.h"
#include "pht/version.h"
#include "pht/error.h"
#include "pht/util.h"
#include "pht/interrupt.h"
#include "pht/fs.h"
#include "pht/hash.h"
#include "pht/key.h"
#include "pht/crypt.h"
#include "pht/config.h"
#include "pht/image.h"
#include "pht/image_ref.h"
#include "pht/http.h"
#include "pht/docker.h"
#include "pht/owner.h"
#include "pht/registry.h"

#endif
