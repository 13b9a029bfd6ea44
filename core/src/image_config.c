/*
 * The runtime config of an image a writer commits: the "config" object of
 * the image config (Cmd, Entrypoint, Env, WorkingDir, Labels, User), which
 * `docker run` and runtime-spec generators such as umoci read. A writer
 * starts from the source image's object and applies each
 * pht_image_config_spec on top; every other key of it (ExposedPorts,
 * Volumes, StopSignal, ...) and of the image config stays as it was.
 */
#include <stdlib.h>
#include <string.h>

#include "image_private.h"

void pht_image_config_spec_init(pht_image_config_spec *s)
{
    memset(s, 0, sizeof *s);
}

static int check_argv(const char *what, int set, const char *const *v, size_t n, pht_error *err)
{
    if (!set || n == 0) return 0;
    if (v == NULL) return pht_error_set(err, PHT_EINVAL, "image config: %s is NULL", what);
    for (size_t i = 0; i < n; i++)
        if (v[i] == NULL)
            return pht_error_set(err, PHT_EINVAL, "image config: %s[%zu] is NULL", what, i);
    return 0;
}

static int check_kv(const char *what, const pht_image_kv *kv, size_t n, int env, pht_error *err)
{
    if (n && kv == NULL) return pht_error_set(err, PHT_EINVAL, "image config: %s is NULL", what);
    for (size_t i = 0; i < n; i++) {
        const char *k = kv[i].key;
        if (k == NULL || k[0] == '\0')
            return pht_error_set(err, PHT_EINVAL, "image config: %s name %zu is empty", what, i);
        if (env && strchr(k, '=') != NULL)
            return pht_error_set(err, PHT_EINVAL,
                                 "image config: env name \"%.200s\" holds '=' (give the value "
                                 "separately)",
                                 k);
    }
    return 0;
}

static int check_spec(const pht_image_config_spec *s, pht_error *err)
{
    int rc;
    if ((rc = check_argv("cmd", s->set_cmd, s->cmd, s->ncmd, err)) ||
        (rc = check_argv("entrypoint", s->set_entrypoint, s->entrypoint, s->nentrypoint, err)) ||
        (rc = check_kv("env", s->env, s->nenv, 1, err)) ||
        (rc = check_kv("label", s->labels, s->nlabels, 0, err)))
        return rc;
    if (s->working_dir && s->working_dir[0] != '\0' && s->working_dir[0] != '/')
        return pht_error_set(err, PHT_EINVAL,
                             "image config: working_dir \"%.200s\" is not an absolute path",
                             s->working_dir);
    return 0;
}

/* Replace (or with n == 0 remove) the string array key of run. */
static int put_argv(cJSON *run, const char *key, const char *const *v, size_t n)
{
    cJSON_DeleteItemFromObjectCaseSensitive(run, key);
    if (n == 0) return 0;
    cJSON *a = cJSON_AddArrayToObject(run, key);
    for (size_t i = 0; a && i < n; i++) {
        cJSON *str = cJSON_CreateString(v[i]);
        if (str == NULL || !cJSON_AddItemToArray(a, str)) {
            cJSON_Delete(str);
            return PHT_ENOMEM;
        }
    }
    return a ? 0 : PHT_ENOMEM;
}

/* "NAME" of a "NAME=value" entry matches key. */
static int env_is(const cJSON *item, const char *key)
{
    const char *s = cJSON_GetStringValue(item);
    size_t n = strlen(key);
    return s && strncmp(s, key, n) == 0 && (s[n] == '=' || s[n] == '\0');
}

/* Set NAME=value in the place of its first entry (or at the end); drop the others. */
static int put_env(cJSON *run, const pht_image_kv *kv)
{
    cJSON *env = cJSON_GetObjectItemCaseSensitive(run, "Env");
    if (!cJSON_IsArray(env)) {
        cJSON_DeleteItemFromObjectCaseSensitive(run, "Env");
        if ((env = cJSON_AddArrayToObject(run, "Env")) == NULL) return PHT_ENOMEM;
    }
    char *text = NULL;
    if (kv->value) {
        size_t n = strlen(kv->key) + strlen(kv->value) + 2;
        if ((text = malloc(n)) == NULL) return PHT_ENOMEM;
        snprintf(text, n, "%s=%s", kv->key, kv->value);
    }
    int placed = 0, rc = 0;
    for (int i = 0; i < cJSON_GetArraySize(env);) {
        if (!env_is(cJSON_GetArrayItem(env, i), kv->key)) {
            i++;
        } else if (text && !placed) {
            cJSON *str = cJSON_CreateString(text);
            if (str == NULL || !cJSON_ReplaceItemInArray(env, i, str)) {
                cJSON_Delete(str);
                rc = PHT_ENOMEM;
                break;
            }
            placed = 1;
            i++;
        } else {
            cJSON_DeleteItemFromArray(env, i);
        }
    }
    if (rc == 0 && text && !placed) {
        cJSON *str = cJSON_CreateString(text);
        if (str == NULL || !cJSON_AddItemToArray(env, str)) {
            cJSON_Delete(str);
            rc = PHT_ENOMEM;
        }
    }
    free(text);
    return rc;
}

static int put_label(cJSON *run, const pht_image_kv *kv)
{
    cJSON *labels = cJSON_GetObjectItemCaseSensitive(run, "Labels");
    if (!cJSON_IsObject(labels)) {
        if (kv->value == NULL) return 0;
        cJSON_DeleteItemFromObjectCaseSensitive(run, "Labels");
        if ((labels = cJSON_AddObjectToObject(run, "Labels")) == NULL) return PHT_ENOMEM;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(labels, kv->key);
    if (kv->value && cJSON_AddStringToObject(labels, kv->key, kv->value) == NULL) return PHT_ENOMEM;
    return 0;
}

static int put_string(cJSON *run, const char *key, const char *value)
{
    cJSON_DeleteItemFromObjectCaseSensitive(run, key);
    return cJSON_AddStringToObject(run, key, value) ? 0 : PHT_ENOMEM;
}

/* *run = the source's "config" object, or an empty one when it has none. */
static int start_from(const char *src_config, cJSON **run, pht_error *err)
{
    cJSON *cfg = json_parse(src_config, "image config", err);
    if (cfg == NULL) return PHT_EFORMAT;
    *run = cJSON_DetachItemFromObjectCaseSensitive(cfg, "config");
    cJSON_Delete(cfg);
    if (!cJSON_IsObject(*run)) {
        cJSON_Delete(*run);
        if ((*run = cJSON_CreateObject()) == NULL)
            return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    return 0;
}

int img_runcfg_apply(cJSON **run, const char *src_config, const pht_image_config_spec *s,
                     pht_error *err)
{
    if (s == NULL) return pht_error_set(err, PHT_EINVAL, "image config: spec is NULL");
    int rc = check_spec(s, err);
    if (rc) return rc;
    /* work on a copy, so that running out of memory half-way changes nothing */
    cJSON *next = NULL;
    if (*run == NULL) {
        if ((rc = start_from(src_config, &next, err))) return rc;
    } else if ((next = cJSON_Duplicate(*run, 1)) == NULL) {
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    if (s->set_cmd) rc = put_argv(next, "Cmd", s->cmd, s->ncmd);
    if (rc == 0 && s->set_entrypoint)
        rc = put_argv(next, "Entrypoint", s->entrypoint, s->nentrypoint);
    for (size_t i = 0; rc == 0 && i < s->nenv; i++)
        rc = put_env(next, &s->env[i]);
    for (size_t i = 0; rc == 0 && i < s->nlabels; i++)
        rc = put_label(next, &s->labels[i]);
    if (rc == 0 && s->working_dir) rc = put_string(next, "WorkingDir", s->working_dir);
    if (rc == 0 && s->user) rc = put_string(next, "User", s->user);
    if (rc) {
        cJSON_Delete(next);
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    cJSON_Delete(*run);
    *run = next;
    return 0;
}

int img_runcfg_put(cJSON *cfg, const cJSON *run, pht_error *err)
{
    cJSON *copy = cJSON_Duplicate(run, 1);
    if (copy == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    int ok = cJSON_GetObjectItemCaseSensitive(cfg, "config")
                 ? cJSON_ReplaceItemInObjectCaseSensitive(cfg, "config", copy) /* keeps its place */
                 : cJSON_AddItemToObject(cfg, "config", copy);
    if (!ok) {
        cJSON_Delete(copy);
        return pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    return 0;
}

int img_config_pre_run(const cJSON *cfg)
{
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(cfg, "history"))
    {
        const char *by = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "created_by"));
        if (by && strcmp(by, PHT_PRE_RUN_MARK) == 0 &&
            !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "empty_layer")))
            return 1;
    }
    return 0;
}
