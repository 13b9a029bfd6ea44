/*
 * train_config.json (doc/protocol.md §2): parse, validate, read, update, write.
 *
 * A pht_config keeps the whole JSON document, so keys it does not know (at the
 * top level and inside creator, source, build and the route stops) survive a
 * read and a write. Every config handed out by pht_config_parse, _load and _new
 * has passed pht_config_validate; the setters check their values, so it stays
 * valid. Ids (`creator.id`, `proposal_id`, `route[].station`) may be JSON
 * strings or integers; the accessors give them as text (integers in decimal).
 *
 * Strings returned by accessors point into the config: they stay valid until
 * the same field is changed or the config is freed.
 */
#ifndef PHT_CONFIG_H
#define PHT_CONFIG_H

#include <stddef.h>

#include "pht/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest train_config.json accepted by pht_config_parse and pht_config_load. */
#define PHT_CONFIG_MAX_BYTES (16u * 1024u * 1024u)

/* Length of session_id in raw bytes. */
#define PHT_SESSION_ID_SIZE 64

typedef struct pht_config pht_config;

/* One route stop as the config holds it; all strings are borrowed from the config. */
typedef struct pht_config_stop {
    const char *station;        /* station id as text */
    int station_is_integer;     /* 1 when the JSON holds the id as an integer */
    size_t index;               /* 0-based route position */
    const char *eco_system;     /* "tue", "padme" or "aac" */
    const char *rsa_public_key; /* hex of the PEM text */
    const char *digest;         /* signature.digest hex, NULL while the stop is unsigned */
    const char *signature;      /* signature.signature hex, NULL while unsigned */
    const char *encrypted_key;  /* hex, or NULL when absent or null */
} pht_config_stop;

/* An id for pht_config_new: text, stored as a JSON integer when `integer` is set. */
typedef struct pht_config_id {
    const char *text;
    int integer; /* nonzero: text must be a decimal integer of at most 2^53 */
} pht_config_id;

/* One stop for pht_config_new; its index is its position in the array. */
typedef struct pht_config_stop_spec {
    pht_config_id station;
    const char *eco_system;     /* "tue", "padme" or "aac" */
    const char *rsa_public_key; /* hex of the PEM text */
    const char *encrypted_key;  /* hex, or NULL for null */
} pht_config_stop_spec;

/*
 * The fields of a new train config (hex strings as they appear in the JSON).
 * NULL optional fields are written as null, except train_id, proposal_id and
 * source_type, whose NULL leaves out `@id`, `proposal_id` and `source`.
 */
typedef struct pht_config_spec {
    const char *train_id;       /* "@id" */
    const char *context_json;   /* "@context" as JSON text (an object), or NULL for null */
    const char *source_type;    /* "docker_repository" or "git_repository" */
    const char *source_address;
    const char *source_tag;
    const char *source_branch;
    pht_config_id creator_id;
    const char *creator_public_key;    /* hex of the PEM text */
    const char *creator_encrypted_key; /* hex or NULL */
    pht_config_id proposal_id;         /* text NULL: left out */
    const char *session_id;            /* hex of 64 bytes */
    const char *const *file_list;
    size_t file_count;
    const pht_config_stop_spec *route;
    size_t route_count;
    const char *hash;             /* e_h, hex of 64 bytes */
    const char *signature;        /* e_h_sig hex */
    const char *build_signature;  /* hex */
    const char *build_public_key; /* hex of the PEM text */
} pht_config_spec;

/*
 * Parse and validate len bytes of JSON text (no NUL needed). On success *out
 * owns a new config (free with pht_config_free). Errors: PHT_ELIMIT over
 * PHT_CONFIG_MAX_BYTES, PHT_EFORMAT for text that is not one JSON object,
 * PHT_ECONFIG (or PHT_EKEY, PHT_EUNSAFE) naming the field that is invalid.
 */
PHT_API int pht_config_parse(const char *json, size_t len, pht_config **out, pht_error *err);

/*
 * pht_config_parse over the file at path, read in 64 KiB chunks. A file over
 * PHT_CONFIG_MAX_BYTES is refused with PHT_ELIMIT before it is read; a missing
 * file is PHT_ENOTFOUND, an unreadable one PHT_EIO. Messages start with the path.
 */
PHT_API int pht_config_load(const char *path, pht_config **out, pht_error *err);

/*
 * Build a new train config from spec (the central `pht build` side), with
 * the reference's key order and nulls for optional fields, and validate it.
 * Nothing in spec is kept. Errors as pht_config_parse.
 */
PHT_API int pht_config_new(const pht_config_spec *spec, pht_config **out, pht_error *err);

/* Release cfg; NULL is fine. */
PHT_API void pht_config_free(pht_config *cfg);

/*
 * Check the whole document against doc/protocol.md §2 and the stricter rules of
 * doc/lua-api.md; the message names the field and why.
 */
PHT_API int pht_config_validate(pht_config *cfg, pht_error *err);

/*
 * Serialise. indent != 0: two-space indentation, the reference's key order for
 * known keys, then unknown keys in their original order; indent == 0: the
 * same without whitespace. *out is NUL-terminated, freed by the caller with
 * free(); *len (may be NULL) gets its length. Errors: PHT_ENOMEM.
 */
PHT_API int pht_config_to_json(const pht_config *cfg, int indent, char **out, size_t *len,
                               pht_error *err);

/*
 * The un-indented JSON of one top-level field ("null" for JSON null), freed by
 * the caller with free(). PHT_ENOTFOUND when the document has no such key.
 */
PHT_API int pht_config_get_json(const pht_config *cfg, const char *key, char **out,
                                pht_error *err);

/* ---- accessors (cfg must be a valid config; strings are borrowed) -------- */

/* creator.id as text (an integer id in decimal): the first input of e_h. */
PHT_API const char *pht_config_creator_id(const pht_config *cfg);
/* creator.rsa_public_key (hex of the PEM text). */
PHT_API const char *pht_config_creator_public_key(const pht_config *cfg);
/* creator.encrypted_key hex, or NULL when absent or null. */
PHT_API const char *pht_config_creator_encrypted_key(const pht_config *cfg);
/* session_id as PHT_SESSION_ID_SIZE raw bytes. */
PHT_API const unsigned char *pht_config_session_id(const pht_config *cfg);

/* Number of file_list entries. */
PHT_API size_t pht_config_file_count(const pht_config *cfg);
/* file_list[i] as stored (may start with "./"); NULL when i is out of range. */
PHT_API const char *pht_config_file(const pht_config *cfg, size_t i);
/* file_list[i] relative to /opt/pht_train, a leading "./" removed; NULL out of range. */
PHT_API const char *pht_config_file_path(const pht_config *cfg, size_t i);
/* name without one leading "./" (a pointer into name). */
PHT_API const char *pht_config_strip_dot_slash(const char *name);

/* hash (e_h), signature (e_h_sig), build.signature, build.rsa_public_key: hex. */
PHT_API const char *pht_config_hash(const pht_config *cfg);
PHT_API const char *pht_config_signature(const pht_config *cfg);
PHT_API const char *pht_config_build_signature(const pht_config *cfg);
PHT_API const char *pht_config_build_public_key(const pht_config *cfg);
/* result_hash (e_d) and result_signature hex, NULL when absent or null. */
PHT_API const char *pht_config_result_hash(const pht_config *cfg);
PHT_API const char *pht_config_result_signature(const pht_config *cfg);

/* Number of route stops. */
PHT_API size_t pht_config_route_count(const pht_config *cfg);

/*
 * Fill *out with the stop whose index is `index` (the route sorted by index).
 * PHT_ENOTFOUND when index >= pht_config_route_count.
 */
PHT_API int pht_config_stop_at(const pht_config *cfg, size_t index, pht_config_stop *out,
                               pht_error *err);

/*
 * Fill *out with the stop of station (compared as text, so "5" finds the
 * integer id 5). PHT_ENOTFOUND "station X is not on the route" otherwise.
 */
PHT_API int pht_config_find_stop(const pht_config *cfg, const char *station,
                                 pht_config_stop *out, pht_error *err);

/* ---- setters (each checks its value; on failure the config is unchanged) - */

/* result_hash: hex of 64 bytes, or NULL for null. PHT_ECONFIG on a bad value. */
PHT_API int pht_config_set_result_hash(pht_config *cfg, const char *hex, pht_error *err);
/* result_signature: non-empty hex, or NULL for null. */
PHT_API int pht_config_set_result_signature(pht_config *cfg, const char *hex, pht_error *err);

/*
 * route stop `index`: signature = {digest, signature} (digest hex of 64
 * bytes, signature non-empty hex), or null when both are NULL. PHT_ENOTFOUND
 * for an index not on the route.
 */
PHT_API int pht_config_set_stop_signature(pht_config *cfg, size_t index, const char *digest_hex,
                                          const char *sig_hex, pht_error *err);
/* route stop `index`: encrypted_key = hex, or null when hex is NULL. */
PHT_API int pht_config_set_stop_key(pht_config *cfg, size_t index, const char *hex,
                                    pht_error *err);
/* creator.encrypted_key = hex, or null when hex is NULL. */
PHT_API int pht_config_set_creator_key(pht_config *cfg, const char *hex, pht_error *err);

/*
 * Set a scalar top-level field to a string (NULL: null), an integer or a
 * boolean. Known fields keep their rules (e.g. `hash` must stay hex of 64
 * bytes); the object fields creator, source, route, file_list, build and
 * @context are refused with PHT_ECONFIG. On failure the config is unchanged.
 */
PHT_API int pht_config_set_string(pht_config *cfg, const char *key, const char *value,
                                  pht_error *err);
PHT_API int pht_config_set_integer(pht_config *cfg, const char *key, long long value,
                                   pht_error *err);
PHT_API int pht_config_set_boolean(pht_config *cfg, const char *key, int value, pht_error *err);

#ifdef __cplusplus
}
#endif
#endif
