/*
 * Validation of train_config.json (doc/protocol.md §2 plus libpht's stricter rules,
 * see doc/lua-api.md). Every message starts with the field's path, e.g.
 * `route[1].rsa_public_key: not hex (bad character at offset 4)`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_private.h"
#include "pht/key.h"
#include "pht/util.h"

#define PATH_MAX_LEN 256

static const char *type_name(const cJSON *it)
{
    if (it == NULL) return "nothing";
    switch (it->type & 0xFF) {
    case cJSON_False:
    case cJSON_True: return "boolean";
    case cJSON_NULL: return "null";
    case cJSON_Number: return "number";
    case cJSON_String: return "string";
    case cJSON_Array: return "array";
    case cJSON_Object: return "object";
    default: return "raw JSON";
    }
}

static int bad(pht_error *err, const char *path, const char *fmt, const char *arg)
{
    char why[PATH_MAX_LEN];
    snprintf(why, sizeof why, fmt, arg);
    return pht_error_set(err, PHT_ECONFIG, "%s: %s", path, why);
}

static int bad_plain(pht_error *err, const char *path, const char *why)
{
    return pht_error_set(err, PHT_ECONFIG, "%s: %s", path, why);
}

static int missing(pht_error *err, const char *path)
{
    return pht_error_set(err, PHT_ECONFIG, "%s: missing (required)", path);
}

const char *config_string(const cJSON *obj, const char *key)
{
    const cJSON *it = config_member(obj, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static int is_null_or_absent(const cJSON *it)
{
    return it == NULL || cJSON_IsNull(it);
}

int config_check_hex(const cJSON *item, const char *path, size_t want, int nullable,
                     pht_error *err)
{
    if (is_null_or_absent(item)) {
        if (nullable) return 0;
        if (item == NULL) return missing(err, path);
        return bad_plain(err, path, "expected hex, got null");
    }
    if (!cJSON_IsString(item))
        return bad(err, path, nullable ? "expected hex or null, got %s" : "expected hex, got %s",
                   type_name(item));
    const char *s = item->valuestring;
    size_t len = strlen(s);
    if (len == 0) return bad_plain(err, path, "expected hex, got an empty string");
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return pht_error_set(err, PHT_ECONFIG, "%s: not hex (bad character at offset %zu)",
                                 path, i);
    }
    if (len % 2 != 0)
        return pht_error_set(err, PHT_ECONFIG, "%s: not hex (odd length %zu)", path, len);
    if (want != 0 && len / 2 != want)
        return pht_error_set(err, PHT_ECONFIG, "%s: expected %zu bytes of hex, got %zu", path,
                             want, len / 2);
    return 0;
}

/* A public key: hex of a PEM text that OpenSSL reads as an RSA key. */
static int check_public_key(const cJSON *item, const char *path, pht_error *err)
{
    int rc = config_check_hex(item, path, 0, 0, err);
    if (rc != 0) return rc;
    pht_error kerr;
    pht_error_clear(&kerr);
    pht_key *key = pht_key_load_public_hex(item->valuestring, strlen(item->valuestring), &kerr);
    if (key == NULL)
        return pht_error_set(err, PHT_ECONFIG, "%s: not a usable public key: %s", path,
                             kerr.message);
    pht_key_free(key);
    return 0;
}

/*
 * An id: a non-empty string, or an integer of at most 2^53 whose decimal text
 * goes to num (and *is_int = 1).
 */
static int check_id(const cJSON *item, const char *path, char num[CONFIG_NUM_MAX], int *is_int,
                    pht_error *err)
{
    *is_int = 0;
    if (item == NULL) return missing(err, path);
    if (cJSON_IsString(item)) {
        if (item->valuestring[0] == '\0') return bad_plain(err, path, "empty id");
        return 0;
    }
    if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;
        long long v;
        if (d > CONFIG_INT_LIMIT || d < -CONFIG_INT_LIMIT)
            return pht_error_set(err, PHT_ECONFIG,
                                 "%s: integer %.0f is beyond 2^53 and cannot be kept exactly",
                                 path, d);
        if (!config_exact_int(d, &v))
            return pht_error_set(err, PHT_ECONFIG,
                                 "%s: expected string or integer, got number %g", path, d);
        snprintf(num, CONFIG_NUM_MAX, "%lld", v);
        *is_int = 1;
        return 0;
    }
    return bad(err, path, "expected string or integer, got %s", type_name(item));
}

static int check_optional_string(const cJSON *obj, const char *key, const char *path,
                                 pht_error *err)
{
    const cJSON *it = config_member(obj, key);
    if (is_null_or_absent(it) || cJSON_IsString(it)) return 0;
    return bad(err, path, "expected string or null, got %s", type_name(it));
}

static int check_object(const cJSON *it, const char *path, int required, pht_error *err)
{
    if (it == NULL) return required ? missing(err, path) : 0;
    if (cJSON_IsObject(it)) return 0;
    if (!required && cJSON_IsNull(it)) return 0;
    return bad(err, path, required ? "expected object, got %s" : "expected object or null, got %s",
               type_name(it));
}

/* ---- duplicate keys ---------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * JSON parsers disagree on duplicate keys (cJSON takes the first, Python the
 * last), so a document with one could mean different things to libpht and to
 * the reference: refuse it anywhere in the tree.
 */
static int check_unique_keys(const cJSON *node, char *path, size_t plen, pht_error *err)
{
    size_t n = 0;
    for (const cJSON *c = node->child; c != NULL; c = c->next) n++;
    if (cJSON_IsObject(node) && n > 1) {
        const char **keys = malloc(n * sizeof *keys);
        if (keys == NULL) return pht_error_set(err, PHT_ENOMEM, "%s: out of memory", path);
        size_t i = 0;
        for (const cJSON *c = node->child; c != NULL; c = c->next) keys[i++] = c->string;
        qsort(keys, n, sizeof *keys, cmp_str);
        for (i = 1; i < n; i++) {
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                pht_error_set(err, PHT_ECONFIG, "%s: duplicate key \"%s\"",
                              plen ? path : "train_config.json", keys[i]);
                free(keys);
                return PHT_ECONFIG;
            }
        }
        free(keys);
    }
    size_t i = 0;
    for (const cJSON *c = node->child; c != NULL; c = c->next, i++) {
        if (!cJSON_IsObject(c) && !cJSON_IsArray(c)) continue;
        int w;
        if (cJSON_IsObject(node))
            w = snprintf(path + plen, PATH_MAX_LEN - plen, "%s%s", plen ? "." : "", c->string);
        else
            w = snprintf(path + plen, PATH_MAX_LEN - plen, "[%zu]", i);
        size_t next = plen + (w > 0 ? (size_t)w : 0);
        if (next >= PATH_MAX_LEN) next = PATH_MAX_LEN - 1;
        int rc = check_unique_keys(c, path, next, err);
        path[plen] = '\0';
        if (rc != 0) return rc;
    }
    return 0;
}

/* ---- sections -------------------------------------------------------------- */

static int check_source(const cJSON *doc, pht_error *err)
{
    const cJSON *src = config_member(doc, "source");
    int rc = check_object(src, "source", 0, err);
    if (rc != 0 || !cJSON_IsObject(src)) return rc;
    const cJSON *type = config_member(src, "type");
    if (type == NULL) return missing(err, "source.type");
    if (!cJSON_IsString(type)) return bad(err, "source.type", "expected string, got %s", type_name(type));
    if (strcmp(type->valuestring, "docker_repository") != 0 &&
        strcmp(type->valuestring, "git_repository") != 0)
        return bad(err, "source.type",
                   "expected \"docker_repository\" or \"git_repository\", got \"%.64s\"",
                   type->valuestring);
    const cJSON *addr = config_member(src, "address");
    if (addr == NULL) return missing(err, "source.address");
    if (!cJSON_IsString(addr))
        return bad(err, "source.address", "expected string, got %s", type_name(addr));
    if ((rc = check_optional_string(src, "tag", "source.tag", err)) != 0) return rc;
    return check_optional_string(src, "branch", "source.branch", err);
}

static int check_creator(const cJSON *doc, config_view *v, pht_error *err)
{
    const cJSON *cr = config_member(doc, "creator");
    int rc = check_object(cr, "creator", 1, err);
    if (rc != 0) return rc;
    if ((rc = check_id(config_member(cr, "id"), "creator.id", v->creator_num,
                       &v->creator_is_integer, err)) != 0)
        return rc;
    if ((rc = check_public_key(config_member(cr, "rsa_public_key"), "creator.rsa_public_key",
                               err)) != 0)
        return rc;
    return config_check_hex(config_member(cr, "encrypted_key"), "creator.encrypted_key", 0, 1,
                            err);
}

static int check_stop_signature(const cJSON *sig, const char *path, pht_error *err)
{
    char p[128];
    if (is_null_or_absent(sig)) return 0;
    if (!cJSON_IsObject(sig))
        return bad(err, path, "expected object {digest, signature} or null, got %s",
                   type_name(sig));
    snprintf(p, sizeof p, "%s.digest", path);
    int rc = config_check_hex(config_member(sig, "digest"), p, 64, 0, err);
    if (rc != 0) return rc;
    snprintf(p, sizeof p, "%s.signature", path);
    return config_check_hex(config_member(sig, "signature"), p, 0, 0, err);
}

static int check_stop(const cJSON *stop, size_t pos, config_stop_view *sv, long long *index,
                      pht_error *err)
{
    char path[48], p[96];
    snprintf(path, sizeof path, "route[%zu]", pos);
    if (!cJSON_IsObject(stop)) return bad(err, path, "expected object, got %s", type_name(stop));
    snprintf(p, sizeof p, "%s.station", path);
    int rc = check_id(config_member(stop, "station"), p, sv->station_num, &sv->station_is_integer,
                      err);
    if (rc != 0) return rc;
    snprintf(p, sizeof p, "%s.eco_system", path);
    const cJSON *eco = config_member(stop, "eco_system");
    if (eco == NULL) return missing(err, p);
    if (!cJSON_IsString(eco)) return bad(err, p, "expected string, got %s", type_name(eco));
    if (strcmp(eco->valuestring, "tue") != 0 && strcmp(eco->valuestring, "padme") != 0 &&
        strcmp(eco->valuestring, "aac") != 0)
        return bad(err, p, "expected \"tue\", \"padme\" or \"aac\", got \"%.64s\"",
                   eco->valuestring);
    snprintf(p, sizeof p, "%s.rsa_public_key", path);
    if ((rc = check_public_key(config_member(stop, "rsa_public_key"), p, err)) != 0) return rc;
    snprintf(p, sizeof p, "%s.index", path);
    const cJSON *idx = config_member(stop, "index");
    if (idx == NULL) return missing(err, p);
    if (!cJSON_IsNumber(idx))
        return bad(err, p, "expected a non-negative integer, got %s", type_name(idx));
    long long iv;
    if (!config_exact_int(idx->valuedouble, &iv) || iv < 0)
        return pht_error_set(err, PHT_ECONFIG, "%s: expected a non-negative integer, got %g", p,
                             idx->valuedouble);
    *index = iv;
    snprintf(p, sizeof p, "%s.signature", path);
    if ((rc = check_stop_signature(config_member(stop, "signature"), p, err)) != 0) return rc;
    snprintf(p, sizeof p, "%s.encrypted_key", path);
    if ((rc = config_check_hex(config_member(stop, "encrypted_key"), p, 0, 1, err)) != 0)
        return rc;
    sv->node = (cJSON *)stop;
    return 0;
}

typedef struct named {
    const char *text;
    size_t pos;
} named;

static int cmp_named(const void *a, const void *b)
{
    const named *x = a, *y = b;
    int c = strcmp(x->text, y->text);
    return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

/* The duplicated text that comes earliest in the document (NULL: none) and its two positions. */
static const char *find_duplicate(named *items, size_t n, size_t *first, size_t *second)
{
    qsort(items, n, sizeof *items, cmp_named);
    const char *found = NULL;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(items[i - 1].text, items[i].text) != 0) continue;
        if (found == NULL || items[i].pos < *second) {
            *first = items[i - 1].pos;
            *second = items[i].pos;
            found = items[i].text;
        }
    }
    return found;
}

static const char *stop_station(const config_stop_view *sv)
{
    return sv->station_is_integer ? sv->station_num
                                  : config_member(sv->node, "station")->valuestring;
}

static int check_route(const cJSON *doc, config_view *v, pht_error *err)
{
    const cJSON *route = config_member(doc, "route");
    if (route == NULL) return missing(err, "route");
    if (!cJSON_IsArray(route)) return bad(err, "route", "expected array, got %s", type_name(route));
    size_t n = (size_t)cJSON_GetArraySize(route);
    if (n == 0) return bad_plain(err, "route", "empty (a train needs at least one stop)");
    config_stop_view *byidx = calloc(n, sizeof *byidx);
    size_t *where = calloc(n, sizeof *where);
    named *names = calloc(n, sizeof *names);
    int rc = 0;
    if (byidx == NULL || where == NULL || names == NULL) {
        rc = pht_error_set(err, PHT_ENOMEM, "route: out of memory");
        goto done;
    }
    size_t pos = 0;
    for (const cJSON *stop = route->child; stop != NULL; stop = stop->next, pos++) {
        config_stop_view sv;
        memset(&sv, 0, sizeof sv);
        long long index = 0;
        if ((rc = check_stop(stop, pos, &sv, &index, err)) != 0) goto done;
        if ((unsigned long long)index < n) {
            if (byidx[index].node != NULL) {
                rc = pht_error_set(err, PHT_ECONFIG,
                                   "route[%zu].index: duplicate index %lld (also at route[%zu]; "
                                   "indexes must be unique and contiguous from 0)",
                                   pos, index, where[index]);
                goto done;
            }
            byidx[index] = sv;
            where[index] = pos;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (byidx[i].node == NULL) {
            rc = pht_error_set(err, PHT_ECONFIG,
                               "route: index %zu missing (indexes must be unique and contiguous "
                               "from 0)",
                               i);
            goto done;
        }
        names[i].text = stop_station(&byidx[i]);
        names[i].pos = where[i];
    }
    size_t a = 0, b = 0;
    const char *dup = find_duplicate(names, n, &a, &b);
    if (dup != NULL) {
        rc = pht_error_set(err, PHT_ECONFIG,
                           "route[%zu].station: station \"%.128s\" is on the route twice (also at "
                           "route[%zu])",
                           b, dup, a);
        goto done;
    }
    if (v != NULL) {
        v->stops = byidx;
        v->nstops = n;
        byidx = NULL;
    }
done:
    free(byidx);
    free(where);
    free(names);
    return rc;
}

/* A file_list name: relative, no "..", no empty or "." components past a leading "./". */
static int check_file_name(const char *name, const char *path, pht_error *err)
{
    if (name[0] == '\0') return bad_plain(err, path, "empty name");
    if (name[0] == '/')
        return pht_error_set(err, PHT_EUNSAFE,
                             "%s: absolute path \"%.200s\" (names are relative to /opt/pht_train)",
                             path, name);
    const char *p = pht_config_strip_dot_slash(name);
    if (*p == '\0') return bad(err, path, "\"%.200s\" names no file", name);
    while (*p != '\0') {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return pht_error_set(err, PHT_EUNSAFE,
                                 "%s: \"..\" component in \"%.200s\" (names must stay inside "
                                 "/opt/pht_train)",
                                 path, name);
        if (len == 0) return bad(err, path, "empty path component in \"%.200s\"", name);
        if (len == 1 && p[0] == '.') return bad(err, path, "\".\" component in \"%.200s\"", name);
        p += len;
        if (*p == '/') p++;
        if (slash != NULL && *p == '\0')
            return bad(err, path, "trailing \"/\" in \"%.200s\" (names must be files)", name);
    }
    return 0;
}

static int check_file_list(const cJSON *doc, pht_error *err)
{
    const cJSON *list = config_member(doc, "file_list");
    if (list == NULL) return missing(err, "file_list");
    if (!cJSON_IsArray(list))
        return bad(err, "file_list", "expected array of strings, got %s", type_name(list));
    size_t n = (size_t)cJSON_GetArraySize(list), i = 0;
    if (n == 0) return 0;
    named *names = calloc(n, sizeof *names);
    if (names == NULL) return pht_error_set(err, PHT_ENOMEM, "file_list: out of memory");
    int rc = 0;
    char path[PATH_MAX_LEN];
    for (const cJSON *it = list->child; it != NULL; it = it->next, i++) {
        snprintf(path, sizeof path, "file_list[%zu]", i);
        if (!cJSON_IsString(it)) {
            rc = bad(err, path, "expected string, got %s", type_name(it));
            goto done;
        }
        if ((rc = check_file_name(it->valuestring, path, err)) != 0) goto done;
        names[i].text = pht_config_strip_dot_slash(it->valuestring);
        names[i].pos = i;
    }
    size_t a = 0, b = 0;
    const char *dup = find_duplicate(names, n, &a, &b);
    if (dup != NULL)
        rc = pht_error_set(err, PHT_ECONFIG,
                           "file_list[%zu]: \"%.200s\" is listed twice (also at file_list[%zu])",
                           b, dup, a);
done:
    free(names);
    return rc;
}

static int check_build(const cJSON *doc, pht_error *err)
{
    const cJSON *build = config_member(doc, "build");
    int rc = check_object(build, "build", 1, err);
    if (rc != 0) return rc;
    if ((rc = config_check_hex(config_member(build, "signature"), "build.signature", 0, 0, err)))
        return rc;
    return check_public_key(config_member(build, "rsa_public_key"), "build.rsa_public_key", err);
}

int config_check_top_scalar(const char *key, const cJSON *item, pht_error *err)
{
    if (strcmp(key, "@id") == 0) {
        if (is_null_or_absent(item) || cJSON_IsString(item)) return 0;
        return bad(err, key, "expected string or null, got %s", type_name(item));
    }
    if (strcmp(key, "proposal_id") == 0) {
        char num[CONFIG_NUM_MAX];
        int is_int;
        if (is_null_or_absent(item)) return 0;
        return check_id(item, key, num, &is_int, err);
    }
    if (strcmp(key, "session_id") == 0) return config_check_hex(item, key, PHT_SESSION_ID_SIZE, 0, err);
    if (strcmp(key, "hash") == 0) return config_check_hex(item, key, 64, 0, err);
    if (strcmp(key, "signature") == 0) return config_check_hex(item, key, 0, 0, err);
    if (strcmp(key, "result_hash") == 0) return config_check_hex(item, key, 64, 1, err);
    if (strcmp(key, "result_signature") == 0) return config_check_hex(item, key, 0, 1, err);
    return 0;
}

void config_view_free(config_view *view)
{
    if (view == NULL) return;
    free(view->stops);
    view->stops = NULL;
    view->nstops = 0;
}

int config_check(const cJSON *doc, config_view *view, pht_error *err)
{
    config_view v;
    memset(&v, 0, sizeof v);
    char path[PATH_MAX_LEN] = "";
    int rc;
    if (!cJSON_IsObject(doc))
        return pht_error_set(err, PHT_ECONFIG, "train_config.json: expected a JSON object, got %s",
                             type_name(doc));
    if ((rc = check_unique_keys(doc, path, 0, err)) != 0) return rc;
    if ((rc = check_source(doc, err)) != 0) return rc;
    if ((rc = check_creator(doc, &v, err)) != 0) return rc;
    static const char *const scalars[] = {"proposal_id", "@id", "session_id"};
    for (size_t i = 0; i < sizeof scalars / sizeof *scalars; i++)
        if ((rc = config_check_top_scalar(scalars[i], config_member(doc, scalars[i]), err)) != 0)
            return rc;
    if ((rc = check_object(config_member(doc, "@context"), "@context", 0, err)) != 0) return rc;
    if ((rc = check_route(doc, &v, err)) != 0) return rc;
    if ((rc = check_file_list(doc, err)) != 0) goto fail;
    static const char *const tail[] = {"hash", "signature", "result_hash", "result_signature"};
    for (size_t i = 0; i < 2; i++)
        if ((rc = config_check_top_scalar(tail[i], config_member(doc, tail[i]), err)) != 0)
            goto fail;
    if ((rc = check_build(doc, err)) != 0) goto fail;
    for (size_t i = 2; i < 4; i++)
        if ((rc = config_check_top_scalar(tail[i], config_member(doc, tail[i]), err)) != 0)
            goto fail;
    const char *sid = config_string(doc, "session_id");
    if ((rc = pht_hex_decode(sid, strlen(sid), v.session_id, "session_id", err)) != 0) goto fail;
    if (view != NULL)
        *view = v;
    else
        config_view_free(&v);
    return 0;
fail:
    config_view_free(&v);
    return rc;
}
