/* JSON documents of the core, over cJSON (included one way everywhere). Not installed. */
#ifndef PHT_JSON_PRIVATE_H
#define PHT_JSON_PRIVATE_H

#include <cjson/cJSON.h>

#include "pht/error.h"

/* Parse NUL-terminated JSON text; NULL and PHT_EFORMAT "what: malformed JSON" on failure. */
cJSON *json_parse(const char *text, const char *what, pht_error *err);

#endif
