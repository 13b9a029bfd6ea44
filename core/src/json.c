/* JSON parsing with the core's error convention. */
#include "json_private.h"

cJSON *json_parse(const char *text, const char *what, pht_error *err)
{
    cJSON *j = cJSON_Parse(text);
    if (j == NULL) pht_error_set(err, PHT_EFORMAT, "%s: malformed JSON", what);
    return j;
}
