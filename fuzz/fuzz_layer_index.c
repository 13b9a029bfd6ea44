/*
 * The layer tar index alone: a plain or compressed layer the fuzzer writes,
 * wrapped into a valid docker-archive, opened (every header indexed, the
 * merged tree built) and walked with a stat of each entry; no extraction,
 * so the fuzzer spends its time in layer_index.c and tarsafe.c.
 */
#include "fuzz_common.h"
#include "image_wrap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char diff_id[80], path[320], ref[400];
    if (wrap_diff_id(data, size, 16u << 20, diff_id) != 0) return 0;
    snprintf(path, sizeof path, "%s/index.tar", fz_tmp());
    if (wrap_write_archive(path, data, size, diff_id, "fuzz/train:latest", NULL, NULL) != 0) return 0;
    snprintf(ref, sizeof ref, "docker-archive:%s", path);
    pht_image_opts o;
    fz_image_opts(&o);
    o.verify_layers = 1;
    pht_image *img = NULL;
    pht_error err;
    if (pht_image_open(&img, ref, &o, &err) == 0) {
        fz_walk w = {.img = img, .files = 64}; /* stat only: no reads */
        pht_image_walk(img, "/", 1, fz_on_entry, &w, &err);
        pht_image_free(img);
    }
    unlink(path);
    return 0;
}
