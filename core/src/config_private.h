/*
 * Shared inside the config area: the document, the validated view of it, and
 * the checks and writer the public functions are built from.
 */
#ifndef PHT_CONFIG_PRIVATE_H
#define PHT_CONFIG_PRIVATE_H

#include "json_private.h"

#include "pht/config.h"

/* Decimal text of an integer id: sign, up to 16 digits, NUL. */
#define CONFIG_NUM_MAX 24

typedef struct config_stop_view {
    cJSON *node; /* the stop object inside the document */
    int station_is_integer;
    char station_num[CONFIG_NUM_MAX];
} config_stop_view;

/*
 * What validation learns and the accessors need: the route sorted by index,
 * integer ids as text, the decoded session id. Rebuilt by every validation.
 */
typedef struct config_view {
    unsigned char session_id[PHT_SESSION_ID_SIZE];
    int creator_is_integer;
    char creator_num[CONFIG_NUM_MAX];
    size_t nstops;
    config_stop_view *stops; /* stops[i] has index i */
} config_view;

struct pht_config {
    cJSON *doc;
    config_view view;
};

/* Integers beyond 2^53 lose digits in a double. */
#define CONFIG_INT_LIMIT 9007199254740992.0

/* 1 when d is an integer of magnitude at most 2^53 (stored to *v), else 0. */
static inline int config_exact_int(double d, long long *v)
{
    if (!(d >= -CONFIG_INT_LIMIT && d <= CONFIG_INT_LIMIT)) return 0; /* also NaN */
    long long i = (long long)d;
    if ((double)i != d) return 0;
    *v = i;
    return 1;
}

/* Case-sensitive member lookup (cJSON_GetObjectItem ignores case). */
#define config_member(obj, key) cJSON_GetObjectItemCaseSensitive((obj), (key))

/* Take ownership of doc, validate it and wrap it in a new config. */
int config_adopt(cJSON *doc, pht_config **out, pht_error *err);

/* Validate doc; on success fill *view (may be NULL), which the caller frees. */
int config_check(const cJSON *doc, config_view *view, pht_error *err);
void config_view_free(config_view *view);

/*
 * Check one hex field at path. want = number of bytes required (0: any
 * non-empty); nullable: absent and null are fine.
 */
int config_check_hex(const cJSON *item, const char *path, size_t want, int nullable,
                     pht_error *err);

/* Check a top-level scalar field by its rules (unknown keys pass). */
int config_check_top_scalar(const char *key, const cJSON *item, pht_error *err);

/* The string value of a member, or NULL when absent, null or not a string. */
const char *config_string(const cJSON *obj, const char *key);

/* Serialise one node (indent: two spaces, known key order from the top). */
int config_write(const cJSON *node, int indent, int top, char **out, size_t *len,
                 pht_error *err);

#endif
