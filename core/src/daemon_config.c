/*
 * A docker-daemon image's config, manifest and layers rebuilt from the
 * engine's answers (transport_private.h, daemon_*): the image inspect
 * (GET /images/{id}/json) and the history (GET /images/{id}/history), so an
 * open needs no export of the image. image_daemon.c saves the image instead
 * where the history leaves the config uncertain.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hash_private.h"
#include "transport_private.h"

static cJSON *item(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

/* Go's zero time.Time (0001-01-01T00:00:00Z) in Unix seconds: the Engine's "no time". */
#define DOCKER_ZERO_TIME (-62135596800.0)

/* Copy the string from[fkey] to to[key]; an empty one only when keep_empty. */
static void put_str(cJSON *to, const char *key, const cJSON *from, const char *fkey, int keep_empty)
{
    const char *v = cJSON_GetStringValue(item(from, fkey));
    if (v && (v[0] || keep_empty)) cJSON_AddStringToObject(to, key, v);
}

/*
 * The config's history from GET /images/{id}/history (newest first): created,
 * created_by and comment of each entry, oldest first, with empty_layer where
 * the entry has no layer. The Engine gives no such flag, only each entry's
 * layer size: 0 for an entry without a layer, but also for a layer of only
 * directories or empty files, and above 0 only for a layer. So the flags are
 * certain when no size is 0 (every entry has a layer), or when as many sizes
 * are above 0 as the image has layers (no 0 can be a layer then); otherwise
 * NULL, and the caller reads the config itself.
 */
cJSON *daemon_history(const cJSON *h, size_t nlayers)
{
    size_t sized = 0, zero = 0;
    const cJSON *it;
    if (!cJSON_IsArray(h)) return NULL;
    cJSON_ArrayForEach(it, h)
    {
        const cJSON *sz = item(it, "Size");
        if (!cJSON_IsNumber(sz) || sz->valuedouble < 0) return NULL;
        if (sz->valuedouble > 0)
            sized++;
        else
            zero++;
    }
    if (sized > nlayers || (zero > 0 && sized != nlayers)) return NULL;
    cJSON *out = cJSON_CreateArray();
    for (int i = cJSON_GetArraySize(h) - 1; out && i >= 0; i--) {
        const cJSON *e = cJSON_GetArrayItem(h, i), *created = item(e, "Created");
        cJSON *x = cJSON_CreateObject();
        if (x == NULL || !cJSON_AddItemToArray(out, x)) {
            cJSON_Delete(x);
            cJSON_Delete(out);
            return NULL;
        }
        /* an entry without a time: the Engine gives Go's zero time (year 1), the config none */
        if (cJSON_IsNumber(created) && created->valuedouble > DOCKER_ZERO_TIME) {
            char when[40];
            time_t t = (time_t)created->valuedouble;
            struct tm tm;
            if (gmtime_r(&t, &tm) && strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm))
                cJSON_AddStringToObject(x, "created", when);
        }
        put_str(x, "created_by", e, "CreatedBy", 0);
        put_str(x, "comment", e, "Comment", 0);
        if (item(e, "Size")->valuedouble == 0) cJSON_AddTrueToObject(x, "empty_layer");
    }
    return out;
}

/*
 * A copy of the runtime config object o without the members the Engine fills
 * with zero values (null, false, ""), which mean what their absence means.
 */
static cJSON *runtime_config(const cJSON *o)
{
    cJSON *c = cJSON_Duplicate(o, 1), *it = c ? c->child : NULL;
    while (it) {
        cJSON *next = it->next;
        if (cJSON_IsNull(it) || cJSON_IsFalse(it) ||
            (cJSON_IsString(it) && it->valuestring[0] == '\0'))
            cJSON_Delete(cJSON_DetachItemViaPointer(c, it));
        it = next;
    }
    return c;
}

/*
 * The image config rebuilt from the inspect answer ij: every field the Engine
 * shows (architecture, variant, os, os.version, created, author, comment,
 * container, container_config, docker_version, config), the history given
 * and the diff_ids. Not the bytes the daemon holds, so not the image id's preimage.
 */
char *daemon_config(const cJSON *ij, cJSON *history, const cJSON *diffs)
{
    cJSON *c = cJSON_CreateObject(), *rootfs = cJSON_CreateObject();
    char *text = NULL;
    if (c == NULL || rootfs == NULL) {
        cJSON_Delete(history);
        goto done;
    }
    put_str(c, "architecture", ij, "Architecture", 1);
    put_str(c, "variant", ij, "Variant", 0);
    put_str(c, "os", ij, "Os", 1);
    put_str(c, "os.version", ij, "OsVersion", 0);
    /* Go's zero time is the Engine's answer for a config without one */
    const char *created = cJSON_GetStringValue(item(ij, "Created"));
    if (created && created[0] && strncmp(created, "0001-01-01T00:00:00", 19) != 0)
        cJSON_AddStringToObject(c, "created", created);
    put_str(c, "author", ij, "Author", 0);
    put_str(c, "comment", ij, "Comment", 0);
    put_str(c, "container", ij, "Container", 0);
    const cJSON *cc = item(ij, "ContainerConfig"), *run = item(ij, "Config");
    if (cJSON_IsObject(cc) && cJSON_GetObjectItemCaseSensitive(c, "container"))
        cJSON_AddItemToObject(c, "container_config", runtime_config(cc));
    put_str(c, "docker_version", ij, "DockerVersion", 0);
    if (cJSON_IsObject(run)) cJSON_AddItemToObject(c, "config", runtime_config(run));
    cJSON_AddItemToObject(c, "history", history);
    cJSON_AddStringToObject(rootfs, "type", "layers");
    cJSON_AddItemToObject(rootfs, "diff_ids", cJSON_Duplicate(diffs, 1));
    cJSON_AddItemToObject(c, "rootfs", rootfs);
    rootfs = NULL;
    text = cJSON_PrintUnformatted(c);
done:
    cJSON_Delete(rootfs);
    cJSON_Delete(c);
    return text;
}

/* The manifest.json entry `docker save` would write for the image: Config, RepoTags, Layers. */
char *daemon_manifest(const char *id, const cJSON *tags, const pht_image *img)
{
    char name[IMG_DIGEST_MAX + 16];
    cJSON *m = cJSON_CreateObject(), *layers = cJSON_CreateArray();
    snprintf(name, sizeof name, "%s.json", id + 7);
    cJSON_AddStringToObject(m, "Config", name);
    cJSON_AddItemToObject(m, "RepoTags",
                          cJSON_IsArray(tags) ? cJSON_Duplicate(tags, 1) : cJSON_CreateArray());
    for (size_t i = 0; i < img->nlayers; i++) {
        snprintf(name, sizeof name, "%s.tar", img->layers[i].diff_id + 7);
        cJSON_AddItemToArray(layers, cJSON_CreateString(name));
    }
    cJSON_AddItemToObject(m, "Layers", layers);
    char *text = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    return text;
}

/* img->layers from the diff_ids, without bytes: plain tars, as the daemon would save them. */
int daemon_layers(pht_image *img, const cJSON *diffs, pht_error *err)
{
    int n = cJSON_GetArraySize(diffs);
    if (!cJSON_IsArray(diffs))
        return pht_error_set(err, PHT_EFORMAT, "the daemon reports no RootFS.Layers");
    if ((img->layers = calloc((size_t)n + 1, sizeof *img->layers)) == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const char *d = cJSON_GetStringValue(cJSON_GetArrayItem(diffs, i));
        img_layer *l = &img->layers[i];
        l->fd = -1;
        img->nlayers++;
        if (!hash_sha256_valid(d))
            return pht_error_set(err, PHT_EFORMAT, "the daemon reports layer %d as \"%.100s\"", i,
                                 d ? d : "");
        snprintf(l->diff_id, sizeof l->diff_id, "%s", d);
        snprintf(l->digest, sizeof l->digest, "%s", d);
        snprintf(l->media_type, sizeof l->media_type, "%s", layer_media_type(IMG_COMP_NONE));
        l->compression = IMG_COMP_NONE;
    }
    return 0;
}
