/*
 * The docker-daemon transport's commit (daemon_private.h).
 *
 * A commit streams a docker-archive straight into POST /images/load, built on
 * the fly 64 KiB at a time: the config, the layers the daemon does not hold
 * yet, and the manifest naming every layer and the tags. Layers the daemon
 * already has (the leading layers shared with the image a tag names now, or
 * with the base image when the daemon holds it) are left out: the classic
 * image store looks a layer up by its chain id before it opens the layer's
 * file. docker load moves the tags only once the whole
 * image is in, so a failure leaves them where they were; an image left
 * without a tag by the move is removed when nothing else needs it. A retag
 * of a daemon image tags its id. A commit to the tag the source was read by
 * fails, writing nothing, when that tag names another image by then.
 * doc/daemon.md says why this path and not containers plus commit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_private.h"
#include "hash_private.h"

/* ---- references ----------------------------------------------------------------- */

/* The NAME:TAG a commit to ref moves (malloc'ed); an id or digest cannot be written. */
static int dest_name(const pht_image_ref *ref, char **out, pht_error *err)
{
    *out = NULL;
    if (pht_image_ref_digest(ref))
        return pht_error_set(err, PHT_EINVAL,
                             "%.200s: write to a NAME[:TAG], not an image id or digest",
                             pht_image_ref_string(ref));
    return img_ref_image_name(ref, out, err);
}

/* 1 if two NAME[:TAG] name the same tag (a bare NAME is NAME:latest). */
static int same_tag(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int ta = img_ref_has_tag(a), tb = img_ref_has_tag(b);
    if (ta == tb) return strcmp(a, b) == 0;
    if (ta) return same_tag(b, a);
    return lb == la + 7 && strncmp(a, b, la) == 0 && strcmp(b + la, ":latest") == 0;
}

/* The id of an image, whatever transport read it: the digest of its config. */
static int image_id(const pht_image *img, char *id, pht_error *err)
{
    if (img->tp == &img_docker_daemon) {
        snprintf(id, IMG_DIGEST_MAX, "%s", ((const dmn *)img->tpdata)->id);
        return 0;
    }
    return hash_sha256_buf(img->config, img->config_len, id, err);
}

int daemon_dest_tag(const pht_image_ref *ref, char **where, char **tag, pht_error *err)
{
    *tag = NULL;
    int rc = dest_name(ref, where, err);
    if (rc == 0 && (*tag = strdup(*where)) == NULL) {
        free(*where);
        *where = NULL;
        rc = pht_error_set(err, PHT_ENOMEM, "out of memory");
    }
    return rc;
}

/* ---- writing -------------------------------------------------------------------- */

/* How many leading layers of the plan the image info lists, in order. */
static size_t shared_prefix(const img_plan *p, const pht_docker_image_info *info)
{
    size_t k = 0;
    while (k < p->nlayers && k < info->nlayers &&
           strcmp(p->layers[k]->diff_id, info->layers[k]) == 0)
        k++;
    return k;
}

/*
 * Leading layers of the plan the daemon already holds: the longest prefix of
 * diff_ids shared with an image a destination tag names now, with the base
 * image when the daemon has it (its id is its config's digest, wherever it
 * was read from), or with a destination's REPO:base, the protocol's name for
 * the image a train was built on. Those layers are neither sent nor landed,
 * so a train pulled from a registry into an engine that holds its base
 * fetches none of the base's blobs. 0 when the daemon keeps images in
 * containerd, whose import needs every blob.
 */
static size_t known_layers(pht_docker *d, const img_plan *p, const pht_docker_image_info *old,
                           char *const *tags, size_t nold)
{
    size_t best = 0;
    for (size_t t = 0; t < nold; t++) {
        size_t k = shared_prefix(p, &old[t]);
        if (k > best) best = k;
    }
    char id[IMG_DIGEST_MAX];
    pht_docker_image_info base;
    pht_error e;
    if (best < p->nlayers && p->base && p->base->config && image_id(p->base, id, &e) == 0 &&
        pht_docker_image_inspect(d, id, &base, &e) == 0) {
        size_t k = shared_prefix(p, &base);
        if (k > best) best = k;
        pht_docker_image_info_clear(&base);
    }
    for (size_t t = 0; t < nold && best < p->nlayers; t++) {
        const char *colon = strrchr(tags[t], ':'), *slash = strrchr(tags[t], '/');
        size_t repo =
            colon && (!slash || colon > slash) ? (size_t)(colon - tags[t]) : strlen(tags[t]);
        char name[1024];
        if (repo + sizeof ":base" > sizeof name) continue;
        snprintf(name, sizeof name, "%.*s:base", (int)repo, tags[t]);
        if (pht_docker_image_inspect(d, name, &base, &e) != 0) continue;
        size_t k = shared_prefix(p, &base);
        if (k > best) best = k;
        pht_docker_image_info_clear(&base);
    }
    if (best == 0) return 0;
    pht_http_request req;
    pht_http_response resp;
    pht_http_request_init(&req);
    req.path = "/v" PHT_DOCKER_API_VERSION "/info";
    req.max_body = 16u << 20;
    int rc = pht_http_do(pht_docker_http(d), &req, &resp, &e);
    int containerd = rc != 0 || (resp.body && strstr(resp.body, "io.containerd.snapshotter"));
    pht_http_response_clear(&resp);
    return containerd ? 0 : best;
}

/* The tags the commit moves, each as "repo:tag". */
static int norm_tags(const img_plan *p, char ***out, pht_error *err)
{
    *out = calloc(p->ntags + 1, sizeof **out);
    if (*out == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < p->ntags && rc == 0; i++) {
        size_t n = strlen(p->tags[i]) + 16;
        char *ref = malloc(n);
        pht_image_ref *r = NULL;
        if (ref == NULL) return pht_error_set(err, PHT_ENOMEM, "out of memory");
        snprintf(ref, n, "docker-daemon:%s", p->tags[i]);
        if ((rc = pht_image_ref_parse(ref, 0, &r, err)) == 0) rc = dest_name(r, &(*out)[i], err);
        pht_image_ref_free(r);
        free(ref);
    }
    return rc;
}

/* Point each tag back at the image it named before the load, or drop it if it named none. */
static void restore_tags(pht_docker *d, char **tags, const pht_docker_image_info *old, size_t n,
                         const char *new_id)
{
    pht_error e;
    for (size_t i = 0; i < n; i++) {
        pht_docker_image_info now;
        if (old[i].id[0]) {
            pht_docker_image_tag(d, old[i].id, tags[i], &e);
        } else if (pht_docker_image_inspect(d, tags[i], &now, &e) == 0) {
            if (strcmp(now.id, new_id) == 0) pht_docker_image_remove(d, tags[i], 0, &e);
            pht_docker_image_info_clear(&now);
        }
    }
}

/*
 * A commit to the tag the source was read by: that tag must still name the
 * image read, or nothing is written (someone moved or removed it meanwhile).
 */
static int check_in_place(const img_plan *p, char **tags, const pht_docker_image_info *old,
                          pht_error *err)
{
    const dmn *st = p->src && p->src->tp == &img_docker_daemon ? p->src->tpdata : NULL;
    for (size_t i = 0; st && st->tag && i < p->ntags; i++) {
        if (!same_tag(tags[i], st->tag) || strcmp(old[i].id, st->id) == 0) continue;
        if (old[i].id[0] == '\0')
            return pht_error_set(err, PHT_ESTATE,
                                 "%s was read as image %s and has been removed since; nothing "
                                 "written",
                                 tags[i], st->id);
        return pht_error_set(err, PHT_ESTATE,
                             "%s was read as image %s but names %s now; nothing written", tags[i],
                             st->id, old[i].id);
    }
    return 0;
}

/* The layers the load sends must have bytes: land those of a base read without them. */
static int land_unsent(const img_plan *p, size_t known, pht_error *err)
{
    for (size_t i = known; i < p->nlayers; i++) {
        if (p->layers[i]->fd >= 0) continue;
        int rc = 0;
        if (p->base && p->base->landed != IMG_LANDED_ALL && p->base->tp->fetch)
            rc = p->base->tp->fetch(p->base, i, err); /* only what the load sends */
        else if (p->base)
            rc = img_land(p->base, IMG_LANDED_ALL, err);
        if (rc) return rc;
        if (p->layers[i]->fd < 0)
            return pht_error_set(err, PHT_ESTATE, "layer %s has no bytes to send",
                                 p->layers[i]->diff_id);
    }
    return 0;
}

static int tag_all(pht_docker *d, const char *id, char **tags, size_t n, pht_error *err)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = pht_docker_image_tag(d, id, tags[i], err);
    return rc;
}

int daemon_commit(const char *where, const img_plan *p, pht_error *err)
{
    (void)where; /* the first of p->tags */
    pht_docker *d = NULL;
    char **tags = NULL;
    pht_docker_image_info *old = calloc(p->ntags + 1, sizeof *old);
    daemon_load *g = NULL;
    int rc = old ? 0 : pht_error_set(err, PHT_ENOMEM, "out of memory");
    if (rc || (rc = norm_tags(p, &tags, err)) || (rc = daemon_docker(p->opts, &d, err))) goto done;
    for (size_t i = 0; i < p->ntags; i++) {
        rc = pht_docker_image_inspect(d, tags[i], &old[i], err);
        if (rc == PHT_ENOTFOUND) rc = 0;
        if (rc) goto done;
    }
    if ((rc = check_in_place(p, tags, old, err))) goto done;
    /* a daemon image unchanged: tag its id (its config here is rebuilt, not its bytes) */
    int retag = p->retag && p->src && p->src->tp == &img_docker_daemon;
    char new_id[IMG_DIGEST_MAX];
    snprintf(new_id, sizeof new_id, "%s",
             retag ? ((const dmn *)p->src->tpdata)->id : p->config_digest);
    if (retag) {
        rc = tag_all(d, new_id, tags, p->ntags, err);
    } else {
        size_t known = known_layers(d, p, old, tags, p->ntags);
        if ((rc = land_unsent(p, known, err)) ||
            (rc = daemon_load_new(p, (const char *const *)tags, p->ntags, known, &g, err)))
            goto done;
        if ((rc = pht_docker_image_load(d, daemon_load_read, g, NULL, err))) {
            /* a daemon that stored the image before it failed keeps it untagged: drop it */
            pht_docker_prune_image(d, new_id, NULL, NULL);
            goto done;
        }
    }
    /* the tags moved; check they name the image just written */
    for (size_t i = 0; i < p->ntags && rc == 0; i++) {
        pht_docker_image_info now;
        if ((rc = pht_docker_image_inspect(d, tags[i], &now, err))) break;
        if (strcmp(now.id, new_id) != 0)
            rc = pht_error_set(err, PHT_EVERIFY, "after the %s %s names %s, not the new image %s",
                               retag ? "tag" : "load", tags[i], now.id, new_id);
        pht_docker_image_info_clear(&now);
    }
    if (rc) {
        restore_tags(d, tags, old, p->ntags, new_id);
        if (!retag) pht_docker_prune_image(d, new_id, NULL, NULL);
        goto done;
    }
    /* the images the tags named before, now without a tag, go when nothing needs them */
    for (size_t i = 0; i < p->ntags; i++)
        if (old[i].id[0] && strcmp(old[i].id, new_id) != 0)
            pht_docker_prune_image(d, old[i].id, NULL, NULL);
done:
    daemon_load_free(g);
    for (size_t i = 0; old && i < p->ntags; i++)
        pht_docker_image_info_clear(&old[i]);
    free(old);
    for (size_t i = 0; tags && i < p->ntags; i++)
        free(tags[i]);
    free(tags);
    pht_docker_free(d);
    return rc;
}
