/*
 * The master-image check (pht_image_check_master): a train's layers begin
 * with its master's, and the layers above change only the train's paths
 * under /opt. The rule for one entry is tarsafe_master; every scan of a layer
 * records the first entry that breaks it (img_layer.outside), so the check
 * reads no header the open has not read already, except for layers a lazy
 * transport has not landed yet.
 */
#include <string.h>

#include "transport_private.h"

static const char *layer_name(const img_layer *l)
{
    return l->digest[0] ? l->digest : l->diff_id;
}

/* The bytes of layers [from, to) of img, for a transport that opens without them. */
static int land_above(pht_image *img, size_t from, size_t to, pht_error *err)
{
    for (size_t i = from; i < to; i++) {
        if (img->layers[i].fd >= 0) continue;
        if (img->tp->fetch) return img->tp->fetch(img, from, err);
        return img_land(img, IMG_LANDED_ALL, err);
    }
    return 0;
}

int pht_image_check_master(pht_image *img, const pht_image *master, size_t top, pht_error *err)
{
    const char *mref = pht_image_ref_string(master->ref);
    size_t n = top && top < img->nlayers ? top : img->nlayers, m = master->nlayers;
    /* the layers above are checked as the bytes their diff_ids name */
    int vrc = img_verify_wait(img, err);
    if (vrc) return vrc;
    if (m > n)
        return pht_error_set(err, PHT_EVERIFY,
                             "the train has %zu layers below its own, fewer than the %zu of "
                             "master %.200s: it was not built on it",
                             n, m, mref);
    for (size_t i = 0; i < m; i++) {
        const img_layer *a = &img->layers[i], *b = &master->layers[i];
        if (strcmp(a->diff_id, b->diff_id) != 0)
            return pht_error_set(err, PHT_EVERIFY,
                                 "layer %zu of %zu (%s) is not layer %zu of master %.200s (%s): "
                                 "the train was not built on it",
                                 i + 1, img->nlayers, a->diff_id, i + 1, mref, b->diff_id);
    }
    /* layers a lazy transport has not landed: their entries where it keeps them, if it can */
    int lazy = 0, from_store = 0, rc;
    for (size_t i = m; i < n; i++)
        lazy |= img->layers[i].fd < 0;
    if (lazy && img->tp->scan_above) {
        if ((rc = img->tp->scan_above(img, m, n, err)) < 0) return rc;
        from_store = rc == 0;
    }
    rc = from_store ? 0 : land_above(img, m, n, err);
    for (size_t i = m; rc == 0 && i < n; i++) {
        img_layer *l = &img->layers[i];
        /* the headers checked are those of the bytes the diff_id names (in a store, the
           transport bound each entry to its diff_id), or for a run's layer whose diff_id is
           pending, of the bytes its blob digest names (checked by img_verify_wait above) */
        if (!from_store && !l->verified && (rc = layer_verify(l, &img->opts, err)) != 0) break;
        if (l->outside)
            rc = pht_error_set(err, PHT_EVERIFY,
                               "layer %zu of %zu (%s), above the %zu of master %.200s: \"/%.300s\" "
                               "%s",
                               i + 1, img->nlayers, layer_name(l), m, mref, l->outside,
                               l->outside_why);
    }
    return rc;
}
