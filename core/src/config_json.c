/*
 * Writing train_config.json. cJSON_Print indents with tabs and may print an
 * integer id as 1e+15, so the structure is written here over the cJSON nodes:
 * two-space indentation like the reference's json.dump(indent=2), known keys
 * in the reference's order (unset ones written as null, as the reference
 * does), integers as decimal digits. Strings and other
 * leaves are printed by cJSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_private.h"

/* Known keys in the order the reference writes them; unknown keys follow. */
enum order {
    ORD_NONE,
    ORD_TOP,
    ORD_SOURCE,
    ORD_CREATOR,
    ORD_STOP,
    ORD_STOP_SIG,
    ORD_BUILD
};

static const char *const top_keys[] = {"source",     "creator",     "proposal_id", "@id",
                                       "@context",   "session_id",  "route",       "file_list",
                                       "hash",       "signature",   "build",       "result_hash",
                                       "result_signature", NULL};
static const char *const source_keys[] = {"type", "address", "tag", "branch", NULL};
static const char *const creator_keys[] = {"id", "rsa_public_key", "paillier_public_key",
                                           "encrypted_key", NULL};
static const char *const stop_keys[] = {"station", "eco_system", "rsa_public_key", "index",
                                        "signature", "encrypted_key", NULL};
static const char *const sig_keys[] = {"digest", "signature", NULL};
static const char *const build_keys[] = {"signature", "rsa_public_key", NULL};

static const char *const *keys_of(enum order o)
{
    switch (o) {
    case ORD_TOP: return top_keys;
    case ORD_SOURCE: return source_keys;
    case ORD_CREATOR: return creator_keys;
    case ORD_STOP: return stop_keys;
    case ORD_STOP_SIG: return sig_keys;
    case ORD_BUILD: return build_keys;
    default: return NULL;
    }
}

/* The order that applies to member `key` of an object ordered by o. */
static enum order child_order(enum order o, const char *key)
{
    if (o == ORD_TOP) {
        if (strcmp(key, "source") == 0) return ORD_SOURCE;
        if (strcmp(key, "creator") == 0) return ORD_CREATOR;
        if (strcmp(key, "route") == 0) return ORD_STOP; /* applies to the elements */
        if (strcmp(key, "build") == 0) return ORD_BUILD;
    }
    if (o == ORD_STOP && strcmp(key, "signature") == 0) return ORD_STOP_SIG;
    return ORD_NONE;
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void newline(sbuf *b, int indent, int depth)
{
    if (!indent) return;
    put(b, "\n", 1);
    for (int i = 0; i < depth; i++) put(b, "  ", 2);
}

/* A leaf printed by cJSON (strings get cJSON's escaping). */
static void put_printed(sbuf *b, const cJSON *leaf)
{
    char *s = cJSON_PrintUnformatted(leaf);
    if (s == NULL) {
        b->oom = 1;
        return;
    }
    puts_(b, s);
    cJSON_free(s);
}

static void put_string(sbuf *b, const char *s)
{
    cJSON *ref = cJSON_CreateStringReference(s);
    if (ref == NULL) {
        b->oom = 1;
        return;
    }
    put_printed(b, ref);
    cJSON_Delete(ref);
}

static void put_number(sbuf *b, const cJSON *n)
{
    long long v;
    /* Integers up to 2^53 are exact in a double: write all their digits. */
    if (config_exact_int(n->valuedouble, &v)) {
        char num[32];
        snprintf(num, sizeof num, "%lld", v);
        puts_(b, num);
    } else {
        put_printed(b, n);
    }
}

static void put_value(sbuf *b, const cJSON *v, int indent, int depth, enum order o);

static void put_member(sbuf *b, const cJSON *c, int indent, int depth, enum order o, int *first)
{
    if (!*first) put(b, ",", 1);
    *first = 0;
    newline(b, indent, depth + 1);
    put_string(b, c->string);
    puts_(b, indent ? ": " : ":");
    put_value(b, c, indent, depth + 1, child_order(o, c->string));
}

static int is_known(const char *const *keys, const char *key)
{
    for (; keys != NULL && *keys != NULL; keys++)
        if (strcmp(*keys, key) == 0) return 1;
    return 0;
}

static void put_object(sbuf *b, const cJSON *obj, int indent, int depth, enum order o)
{
    if (obj->child == NULL) {
        puts_(b, "{}");
        return;
    }
    put(b, "{", 1);
    int first = 1;
    const char *const *keys = keys_of(o);
    /* The reference's layout writes every known key, null when unset. */
    int nulls = indent && (o == ORD_TOP || o == ORD_SOURCE || o == ORD_CREATOR || o == ORD_STOP);
    for (const char *const *k = keys; k != NULL && *k != NULL; k++) {
        int seen = 0;
        for (const cJSON *c = obj->child; c != NULL; c = c->next)
            if (c->string != NULL && strcmp(c->string, *k) == 0) {
                put_member(b, c, indent, depth, o, &first);
                seen = 1;
            }
        if (!seen && nulls) {
            if (!first) put(b, ",", 1);
            first = 0;
            newline(b, indent, depth + 1);
            put_string(b, *k);
            puts_(b, ": null");
        }
    }
    for (const cJSON *c = obj->child; c != NULL; c = c->next)
        if (c->string != NULL && !is_known(keys, c->string))
            put_member(b, c, indent, depth, o, &first);
    newline(b, indent, depth);
    put(b, "}", 1);
}

static void put_array(sbuf *b, const cJSON *arr, int indent, int depth, enum order elems)
{
    if (arr->child == NULL) {
        puts_(b, "[]");
        return;
    }
    put(b, "[", 1);
    for (const cJSON *c = arr->child; c != NULL; c = c->next) {
        if (c != arr->child) put(b, ",", 1);
        newline(b, indent, depth + 1);
        put_value(b, c, indent, depth + 1, elems);
    }
    newline(b, indent, depth);
    put(b, "]", 1);
}

static void put_value(sbuf *b, const cJSON *v, int indent, int depth, enum order o)
{
    switch (v->type & 0xFF) {
    case cJSON_Object: put_object(b, v, indent, depth, o); break;
    case cJSON_Array: put_array(b, v, indent, depth, o); break;
    case cJSON_Number: put_number(b, v); break;
    case cJSON_String: put_string(b, v->valuestring); break;
    case cJSON_True: puts_(b, "true"); break;
    case cJSON_False: puts_(b, "false"); break;
    case cJSON_NULL: puts_(b, "null"); break;
    default: put_printed(b, v); break;
    }
}

int config_write(const cJSON *node, int indent, int top, char **out, size_t *len,
                 pht_error *err)
{
    sbuf b = {NULL, 0, 0, 0};
    *out = NULL;
    put_value(&b, node, indent, 0, top ? ORD_TOP : ORD_NONE);
    if (b.oom || b.p == NULL) {
        free(b.p);
        return pht_error_set(err, PHT_ENOMEM, "train_config.json: out of memory while writing");
    }
    *out = b.p;
    if (len != NULL) *len = b.len;
    return 0;
}
