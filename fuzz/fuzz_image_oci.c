/*
 * OCI layout open, walk, stat, read and extract of a layer the fuzzer
 * writes, wrapped into a valid one-image layout (tools/image_wrap.c: right
 * diff_id, media type from the blob's magic).
 */
#include "fuzz_common.h"
#include "image_wrap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char diff_id[80], dir[320], ref[400];
    if (wrap_diff_id(data, size, 16u << 20, diff_id) != 0) return 0;
    snprintf(dir, sizeof dir, "%s/layout", fz_tmp());
    if (wrap_write_oci(dir, data, size, diff_id, "latest") == 0) {
        snprintf(ref, sizeof ref, "oci:%s:latest", dir);
        fz_exercise_image(ref, 1);
    }
    fz_rm_rf(dir);
    return 0;
}
