/*
 * Changing a train config: the constructor for `pht build` and the setters
 * that pre-run and post-run need. Each checks its value with the same rules
 * as validation before it touches the document, so a config stays valid.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_private.h"

#define ID_INT_LIMIT ((long long)CONFIG_INT_LIMIT)

/* ---- building blocks ------------------------------------------------------ */

typedef struct builder {
    int oom;
} builder;

/* Add item under key; returns item, or NULL (item freed) when it could not be added. */
static cJSON *add(builder *b, cJSON *obj, const char *key, cJSON *item)
{
    if (obj == NULL || item == NULL || !cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        b->oom = 1;
        return NULL;
    }
    return item;
}

static cJSON *append(builder *b, cJSON *arr, cJSON *item)
{
    if (arr == NULL || item == NULL || !cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        b->oom = 1;
        return NULL;
    }
    return item;
}

/* A string member; NULL value: absent, or null when nullable. */
static void add_str(builder *b, cJSON *obj, const char *key, const char *value, int nullable)
{
    if (value != NULL)
        add(b, obj, key, cJSON_CreateString(value));
    else if (nullable)
        add(b, obj, key, cJSON_CreateNull());
}

/* An id as a JSON string, or as a JSON integer when id->integer is set. */
static int add_id(builder *b, cJSON *obj, const char *key, const pht_config_id *id,
                  const char *path, pht_error *err)
{
    if (id->text == NULL) return 0; /* validation names the missing field */
    if (!id->integer) {
        add_str(b, obj, key, id->text, 0);
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long long v = strtoll(id->text, &end, 10);
    if (id->text[0] == '\0' || *end != '\0' || errno != 0 || v > ID_INT_LIMIT ||
        v < -ID_INT_LIMIT || isspace((unsigned char)id->text[0]))
        return pht_error_set(err, PHT_ECONFIG,
                             "%s: \"%.64s\" is not a decimal integer of at most 2^53", path,
                             id->text);
    add(b, obj, key, cJSON_CreateNumber((double)v));
    return 0;
}

int pht_config_new(const pht_config_spec *spec, pht_config **out, pht_error *err)
{
    if (spec == NULL || out == NULL)
        return pht_error_set(err, PHT_EINVAL, "pht_config_new: NULL argument");
    *out = NULL;
    builder b = {0};
    int rc = 0;
    cJSON *doc = cJSON_CreateObject();
    if (doc == NULL) return pht_error_set(err, PHT_ENOMEM, "pht_config_new: out of memory");
    /* Containers go into the document first, so one cJSON_Delete frees all. */
    if (spec->source_type != NULL) {
        cJSON *src = add(&b, doc, "source", cJSON_CreateObject());
        add_str(&b, src, "type", spec->source_type, 0);
        add_str(&b, src, "address", spec->source_address, 0);
        add_str(&b, src, "tag", spec->source_tag, 1);
        add_str(&b, src, "branch", spec->source_branch, 1);
    }
    cJSON *creator = add(&b, doc, "creator", cJSON_CreateObject());
    if ((rc = add_id(&b, creator, "id", &spec->creator_id, "creator.id", err)) != 0) goto fail;
    add_str(&b, creator, "rsa_public_key", spec->creator_public_key, 0);
    add_str(&b, creator, "encrypted_key", spec->creator_encrypted_key, 1);
    if ((rc = add_id(&b, doc, "proposal_id", &spec->proposal_id, "proposal_id", err)) != 0)
        goto fail;
    add_str(&b, doc, "@id", spec->train_id, 0);
    if (spec->context_json != NULL) {
        cJSON *ctx = cJSON_Parse(spec->context_json);
        if (!cJSON_IsObject(ctx)) {
            cJSON_Delete(ctx);
            rc = pht_error_set(err, PHT_ECONFIG, "@context: expected the JSON text of an object");
            goto fail;
        }
        add(&b, doc, "@context", ctx);
    } else {
        add(&b, doc, "@context", cJSON_CreateNull());
    }
    add_str(&b, doc, "session_id", spec->session_id, 0);
    cJSON *route = add(&b, doc, "route", cJSON_CreateArray());
    for (size_t i = 0; i < spec->route_count; i++) {
        const pht_config_stop_spec *s = &spec->route[i];
        char path[64];
        snprintf(path, sizeof path, "route[%zu].station", i);
        cJSON *stop = append(&b, route, cJSON_CreateObject());
        if ((rc = add_id(&b, stop, "station", &s->station, path, err)) != 0) goto fail;
        add_str(&b, stop, "eco_system", s->eco_system, 0);
        add_str(&b, stop, "rsa_public_key", s->rsa_public_key, 0);
        add(&b, stop, "index", cJSON_CreateNumber((double)i));
        add(&b, stop, "signature", cJSON_CreateNull());
        add_str(&b, stop, "encrypted_key", s->encrypted_key, 1);
    }
    cJSON *files = add(&b, doc, "file_list", cJSON_CreateArray());
    for (size_t i = 0; i < spec->file_count; i++) {
        if (spec->file_list[i] == NULL) {
            rc = pht_error_set(err, PHT_ECONFIG, "file_list[%zu]: NULL name", i);
            goto fail;
        }
        append(&b, files, cJSON_CreateString(spec->file_list[i]));
    }
    add_str(&b, doc, "hash", spec->hash, 0);
    add_str(&b, doc, "signature", spec->signature, 0);
    cJSON *build = add(&b, doc, "build", cJSON_CreateObject());
    add_str(&b, build, "signature", spec->build_signature, 0);
    add_str(&b, build, "rsa_public_key", spec->build_public_key, 0);
    add(&b, doc, "result_hash", cJSON_CreateNull());
    add(&b, doc, "result_signature", cJSON_CreateNull());
    if (b.oom) {
        rc = pht_error_set(err, PHT_ENOMEM, "pht_config_new: out of memory");
        goto fail;
    }
    return config_adopt(doc, out, err);
fail:
    cJSON_Delete(doc);
    return rc;
}

/* ---- setters ---------------------------------------------------------------- */

/* A new JSON string of hex in lowercase, or JSON null for NULL. */
static cJSON *hex_item(const char *hex)
{
    if (hex == NULL) return cJSON_CreateNull();
    cJSON *it = cJSON_CreateString(hex);
    if (it != NULL)
        for (char *p = it->valuestring; *p; p++) *p = (char)tolower((unsigned char)*p);
    return it;
}

/* Put item under key (replacing any old value in place); takes item. */
static int put_member(cJSON *obj, const char *key, cJSON *item, pht_error *err)
{
    cJSON_bool ok = config_member(obj, key) != NULL
                        ? cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item)
                        : cJSON_AddItemToObject(obj, key, item);
    if (!ok) {
        cJSON_Delete(item);
        return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", key);
    }
    return 0;
}

/* Check a hex value with the field's rule, then store it. */
static int set_hex(cJSON *obj, const char *key, const char *path, const char *hex, size_t want,
                   pht_error *err)
{
    cJSON *it = hex_item(hex);
    if (it == NULL) return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", path);
    int rc = config_check_hex(it, path, want, 1, err);
    if (rc != 0) {
        cJSON_Delete(it);
        return rc;
    }
    return put_member(obj, key, it, err);
}

int pht_config_set_result_hash(pht_config *cfg, const char *hex, pht_error *err)
{
    if (cfg == NULL) return pht_error_set(err, PHT_EINVAL, "pht_config_set_result_hash: NULL");
    return set_hex(cfg->doc, "result_hash", "result_hash", hex, 64, err);
}

int pht_config_set_result_signature(pht_config *cfg, const char *hex, pht_error *err)
{
    if (cfg == NULL)
        return pht_error_set(err, PHT_EINVAL, "pht_config_set_result_signature: NULL");
    return set_hex(cfg->doc, "result_signature", "result_signature", hex, 0, err);
}

int pht_config_set_creator_key(pht_config *cfg, const char *hex, pht_error *err)
{
    if (cfg == NULL) return pht_error_set(err, PHT_EINVAL, "pht_config_set_creator_key: NULL");
    return set_hex(config_member(cfg->doc, "creator"), "encrypted_key", "creator.encrypted_key",
                   hex, 0, err);
}

/* The stop object of route index `index`, and its path for messages. */
static cJSON *stop_node(pht_config *cfg, size_t index, char *path, size_t size, pht_error *err)
{
    if (index >= cfg->view.nstops) {
        pht_error_set(err, PHT_ENOTFOUND, "route has no stop with index %zu (%zu stops)", index,
                      cfg->view.nstops);
        return NULL;
    }
    cJSON *node = cfg->view.stops[index].node;
    size_t pos = 0;
    for (const cJSON *s = config_member(cfg->doc, "route")->child; s && s != node; s = s->next)
        pos++;
    snprintf(path, size, "route[%zu]", pos);
    return node;
}

int pht_config_set_stop_key(pht_config *cfg, size_t index, const char *hex, pht_error *err)
{
    char path[64], p[96];
    if (cfg == NULL) return pht_error_set(err, PHT_EINVAL, "pht_config_set_stop_key: NULL");
    cJSON *stop = stop_node(cfg, index, path, sizeof path, err);
    if (stop == NULL) return PHT_ENOTFOUND;
    snprintf(p, sizeof p, "%s.encrypted_key", path);
    return set_hex(stop, "encrypted_key", p, hex, 0, err);
}

int pht_config_set_stop_signature(pht_config *cfg, size_t index, const char *digest_hex,
                                  const char *sig_hex, pht_error *err)
{
    char path[64], p[96];
    if (cfg == NULL) return pht_error_set(err, PHT_EINVAL, "pht_config_set_stop_signature: NULL");
    cJSON *stop = stop_node(cfg, index, path, sizeof path, err);
    if (stop == NULL) return PHT_ENOTFOUND;
    if (digest_hex == NULL && sig_hex == NULL) {
        cJSON *null = cJSON_CreateNull();
        if (null == NULL) return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", path);
        return put_member(stop, "signature", null, err);
    }
    if (digest_hex == NULL || sig_hex == NULL)
        return pht_error_set(err, PHT_ECONFIG,
                             "%s.signature: needs both digest and signature (or neither)", path);
    cJSON *sig = cJSON_CreateObject();
    cJSON *d = hex_item(digest_hex), *s = hex_item(sig_hex);
    if (sig == NULL || d == NULL || s == NULL || !cJSON_AddItemToObject(sig, "digest", d)) {
        cJSON_Delete(sig);
        cJSON_Delete(d);
        cJSON_Delete(s);
        return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", path);
    }
    if (!cJSON_AddItemToObject(sig, "signature", s)) {
        cJSON_Delete(sig);
        cJSON_Delete(s);
        return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", path);
    }
    int rc;
    snprintf(p, sizeof p, "%s.signature.digest", path);
    if ((rc = config_check_hex(d, p, 64, 0, err)) == 0) {
        snprintf(p, sizeof p, "%s.signature.signature", path);
        rc = config_check_hex(s, p, 0, 0, err);
    }
    if (rc != 0) {
        cJSON_Delete(sig);
        return rc;
    }
    return put_member(stop, "signature", sig, err);
}

/* ---- generic scalar set ------------------------------------------------------ */

static int is_object_field(const char *key)
{
    static const char *const objs[] = {"creator", "source",   "route",
                                       "file_list", "build", "@context"};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        if (strcmp(key, objs[i]) == 0) return 1;
    return 0;
}

static int is_hex_field(const char *key)
{
    static const char *const hex[] = {"session_id", "hash", "signature", "result_hash",
                                      "result_signature"};
    for (size_t i = 0; i < sizeof hex / sizeof *hex; i++)
        if (strcmp(key, hex[i]) == 0) return 1;
    return 0;
}

/* Exchange the values of two nodes, keeping each one's place and key. */
static void swap_value(cJSON *a, cJSON *b)
{
    const int keep = cJSON_StringIsConst;
    int ta = a->type, tb = b->type;
    a->type = (tb & ~keep) | (ta & keep);
    b->type = (ta & ~keep) | (tb & keep);
    char *vs = a->valuestring;
    a->valuestring = b->valuestring;
    b->valuestring = vs;
    int vi = a->valueint;
    a->valueint = b->valueint;
    b->valueint = vi;
    double vd = a->valuedouble;
    a->valuedouble = b->valuedouble;
    b->valuedouble = vd;
    cJSON *c = a->child;
    a->child = b->child;
    b->child = c;
}

/*
 * Put item (a scalar) at key and revalidate the whole document, so the view
 * (e.g. the decoded session id) follows; on failure put the old value back.
 */
static int set_scalar(pht_config *cfg, const char *key, cJSON *item, pht_error *err)
{
    if (item == NULL) return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", key);
    if (is_object_field(key)) {
        cJSON_Delete(item);
        return pht_error_set(err, PHT_ECONFIG,
                             "%s: not a scalar field (use the route, creator and key setters)",
                             key);
    }
    cJSON *old = config_member(cfg->doc, key);
    if (old == NULL) {
        if (!cJSON_AddItemToObject(cfg->doc, key, item)) {
            cJSON_Delete(item);
            return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", key);
        }
        int rc = pht_config_validate(cfg, err);
        if (rc != 0) cJSON_Delete(cJSON_DetachItemViaPointer(cfg->doc, item));
        return rc;
    }
    swap_value(old, item);
    int rc = pht_config_validate(cfg, err);
    if (rc != 0) swap_value(old, item);
    cJSON_Delete(item);
    return rc;
}

int pht_config_set_string(pht_config *cfg, const char *key, const char *value, pht_error *err)
{
    if (cfg == NULL || key == NULL)
        return pht_error_set(err, PHT_EINVAL, "pht_config_set_string: NULL argument");
    cJSON *item = is_hex_field(key) ? hex_item(value)
                  : value != NULL   ? cJSON_CreateString(value)
                                    : cJSON_CreateNull();
    return set_scalar(cfg, key, item, err);
}

int pht_config_set_integer(pht_config *cfg, const char *key, long long value, pht_error *err)
{
    if (cfg == NULL || key == NULL)
        return pht_error_set(err, PHT_EINVAL, "pht_config_set_integer: NULL argument");
    if (value > ID_INT_LIMIT || value < -ID_INT_LIMIT)
        return pht_error_set(err, PHT_ECONFIG, "%s: integer %lld is beyond 2^53", key, value);
    return set_scalar(cfg, key, cJSON_CreateNumber((double)value), err);
}

int pht_config_set_boolean(pht_config *cfg, const char *key, int value, pht_error *err)
{
    if (cfg == NULL || key == NULL)
        return pht_error_set(err, PHT_EINVAL, "pht_config_set_boolean: NULL argument");
    return set_scalar(cfg, key, cJSON_CreateBool(value != 0), err);
}
