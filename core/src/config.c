/*
 * train_config.json as a pht_config: parsing (cJSON), loading with a size
 * cap, accessors and serialisation. Validation is in config_validate.c, the
 * writer in config_json.c, the constructor and setters in config_edit.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_private.h"

#define READ_CHUNK (64u * 1024u)

int config_adopt(cJSON *doc, pht_config **out, pht_error *err)
{
    pht_config *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL) {
        cJSON_Delete(doc);
        return pht_error_set(err, PHT_ENOMEM, "train_config.json: out of memory");
    }
    cfg->doc = doc;
    int rc = config_check(doc, &cfg->view, err);
    if (rc != 0) {
        pht_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int pht_config_parse(const char *json, size_t len, pht_config **out, pht_error *err)
{
    if (out == NULL || (json == NULL && len != 0))
        return pht_error_set(err, PHT_EINVAL, "pht_config_parse: NULL argument");
    *out = NULL;
    if (len > PHT_CONFIG_MAX_BYTES)
        return pht_error_set(err, PHT_ELIMIT,
                             "train_config.json: %zu bytes, over the limit of %u bytes (16 MiB)",
                             len, PHT_CONFIG_MAX_BYTES);
    if (len == 0) return pht_error_set(err, PHT_EFORMAT, "train_config.json: empty, not JSON");
    /* A NUL would end a cJSON string early, hiding the rest of a value. */
    const char *nul = memchr(json, '\0', len);
    if (nul != NULL)
        return pht_error_set(err, PHT_EFORMAT, "train_config.json: NUL byte at offset %zu",
                             (size_t)(nul - json));
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (doc == NULL) {
        size_t at = end != NULL && end >= json ? (size_t)(end - json) : 0;
        return pht_error_set(err, PHT_EFORMAT,
                             "train_config.json: not valid JSON (error near byte %zu of %zu%s)",
                             at, len, at + 1 >= len ? ", where the text ends: truncated?" : "");
    }
    for (const char *p = end; p < json + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(doc);
            return pht_error_set(err, PHT_EFORMAT,
                                 "train_config.json: not valid JSON (extra text after the "
                                 "document at byte %zu)",
                                 (size_t)(p - json));
        }
    }
    return config_adopt(doc, out, err);
}

int pht_config_load(const char *path, pht_config **out, pht_error *err)
{
    if (path == NULL || out == NULL)
        return pht_error_set(err, PHT_EINVAL, "pht_config_load: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return pht_error_set(err, e == ENOENT ? PHT_ENOTFOUND : PHT_EIO, "%s: cannot open: %s",
                             path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return pht_error_set(err, PHT_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISREG(st.st_mode) && (unsigned long long)st.st_size > PHT_CONFIG_MAX_BYTES) {
        close(fd);
        return pht_error_set(err, PHT_ELIMIT,
                             "%s: %lld bytes, over the limit of %u bytes (16 MiB) for "
                             "train_config.json",
                             path, (long long)st.st_size, PHT_CONFIG_MAX_BYTES);
    }
    /* Read in chunks up to the cap + 1, so a file that grows is caught too. */
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len + READ_CHUNK > cap) {
            size_t ncap = cap ? cap * 2 : READ_CHUNK;
            if (ncap > PHT_CONFIG_MAX_BYTES + READ_CHUNK) ncap = PHT_CONFIG_MAX_BYTES + READ_CHUNK;
            char *nb = realloc(buf, ncap);
            if (nb == NULL) {
                rc = pht_error_set(err, PHT_ENOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, READ_CHUNK);
        if (n < 0) {
            if (errno == EINTR) continue;
            rc = pht_error_set(err, PHT_EIO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (n == 0) break;
        len += (size_t)n;
        if (len > PHT_CONFIG_MAX_BYTES) {
            rc = pht_error_set(err, PHT_ELIMIT,
                               "%s: more than %u bytes (16 MiB), the limit for "
                               "train_config.json",
                               path, PHT_CONFIG_MAX_BYTES);
            break;
        }
    }
    close(fd);
    if (rc == 0) {
        rc = pht_config_parse(buf, len, out, err);
        if (rc != 0) pht_error_prefix(err, "%s", path);
    }
    free(buf);
    return rc;
}

void pht_config_free(pht_config *cfg)
{
    if (cfg == NULL) return;
    cJSON_Delete(cfg->doc);
    config_view_free(&cfg->view);
    free(cfg);
}

int pht_config_validate(pht_config *cfg, pht_error *err)
{
    if (cfg == NULL) return pht_error_set(err, PHT_EINVAL, "pht_config_validate: NULL config");
    config_view v;
    int rc = config_check(cfg->doc, &v, err);
    if (rc != 0) return rc;
    config_view_free(&cfg->view);
    cfg->view = v;
    return 0;
}

int pht_config_to_json(const pht_config *cfg, int indent, char **out, size_t *len,
                       pht_error *err)
{
    if (cfg == NULL || out == NULL)
        return pht_error_set(err, PHT_EINVAL, "pht_config_to_json: NULL argument");
    return config_write(cfg->doc, indent, 1, out, len, err);
}

int pht_config_get_json(const pht_config *cfg, const char *key, char **out, pht_error *err)
{
    if (cfg == NULL || key == NULL || out == NULL)
        return pht_error_set(err, PHT_EINVAL, "pht_config_get_json: NULL argument");
    *out = NULL;
    const cJSON *it = config_member(cfg->doc, key);
    if (it == NULL)
        return pht_error_set(err, PHT_ENOTFOUND, "train_config.json has no field \"%.200s\"",
                             key);
    return config_write(it, 0, 0, out, NULL, err);
}

/* ---- accessors -------------------------------------------------------------- */

const char *pht_config_creator_id(const pht_config *cfg)
{
    if (cfg->view.creator_is_integer) return cfg->view.creator_num;
    return config_string(config_member(cfg->doc, "creator"), "id");
}

const char *pht_config_creator_public_key(const pht_config *cfg)
{
    return config_string(config_member(cfg->doc, "creator"), "rsa_public_key");
}

const char *pht_config_creator_encrypted_key(const pht_config *cfg)
{
    return config_string(config_member(cfg->doc, "creator"), "encrypted_key");
}

const unsigned char *pht_config_session_id(const pht_config *cfg)
{
    return cfg->view.session_id;
}

size_t pht_config_file_count(const pht_config *cfg)
{
    return (size_t)cJSON_GetArraySize(config_member(cfg->doc, "file_list"));
}

const char *pht_config_file(const pht_config *cfg, size_t i)
{
    if (i >= pht_config_file_count(cfg)) return NULL;
    const cJSON *it = cJSON_GetArrayItem(config_member(cfg->doc, "file_list"), (int)i);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

const char *pht_config_strip_dot_slash(const char *name)
{
    return (name[0] == '.' && name[1] == '/') ? name + 2 : name;
}

const char *pht_config_file_path(const pht_config *cfg, size_t i)
{
    const char *name = pht_config_file(cfg, i);
    return name ? pht_config_strip_dot_slash(name) : NULL;
}

const char *pht_config_hash(const pht_config *cfg)
{
    return config_string(cfg->doc, "hash");
}

const char *pht_config_signature(const pht_config *cfg)
{
    return config_string(cfg->doc, "signature");
}

const char *pht_config_build_signature(const pht_config *cfg)
{
    return config_string(config_member(cfg->doc, "build"), "signature");
}

const char *pht_config_build_public_key(const pht_config *cfg)
{
    return config_string(config_member(cfg->doc, "build"), "rsa_public_key");
}

const char *pht_config_result_hash(const pht_config *cfg)
{
    return config_string(cfg->doc, "result_hash");
}

const char *pht_config_result_signature(const pht_config *cfg)
{
    return config_string(cfg->doc, "result_signature");
}

size_t pht_config_route_count(const pht_config *cfg)
{
    return cfg->view.nstops;
}

static void fill_stop(const config_stop_view *sv, size_t index, pht_config_stop *out)
{
    const cJSON *s = sv->node;
    out->station = sv->station_is_integer ? sv->station_num : config_string(s, "station");
    out->station_is_integer = sv->station_is_integer;
    out->index = index;
    out->eco_system = config_string(s, "eco_system");
    out->rsa_public_key = config_string(s, "rsa_public_key");
    const cJSON *sig = config_member(s, "signature");
    out->digest = cJSON_IsObject(sig) ? config_string(sig, "digest") : NULL;
    out->signature = cJSON_IsObject(sig) ? config_string(sig, "signature") : NULL;
    out->encrypted_key = config_string(s, "encrypted_key");
}

int pht_config_stop_at(const pht_config *cfg, size_t index, pht_config_stop *out,
                       pht_error *err)
{
    if (cfg == NULL || out == NULL)
        return pht_error_set(err, PHT_EINVAL, "pht_config_stop_at: NULL argument");
    if (index >= cfg->view.nstops)
        return pht_error_set(err, PHT_ENOTFOUND, "route has no stop with index %zu (%zu stops)",
                             index, cfg->view.nstops);
    fill_stop(&cfg->view.stops[index], index, out);
    return 0;
}

int pht_config_find_stop(const pht_config *cfg, const char *station, pht_config_stop *out,
                         pht_error *err)
{
    if (cfg == NULL || station == NULL || out == NULL)
        return pht_error_set(err, PHT_EINVAL, "pht_config_find_stop: NULL argument");
    for (size_t i = 0; i < cfg->view.nstops; i++) {
        fill_stop(&cfg->view.stops[i], i, out);
        if (strcmp(out->station, station) == 0) return 0;
    }
    memset(out, 0, sizeof *out);
    return pht_error_set(err, PHT_ENOTFOUND, "station %.200s is not on the route", station);
}
