/*
 * docker-archive open, walk, stat, read and extract of a layer the fuzzer
 * writes: the input is a layer blob (a tar, or a gzip/zstd/... of one),
 * wrapped into a valid one-image archive with the right diff_id
 * (tools/image_wrap.c), so that it passes the digest checks and reaches the
 * layer index, the walk and the extraction.
 */
#include "fuzz_common.h"
#include "image_wrap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char diff_id[80], path[320], ref[400];
    if (wrap_diff_id(data, size, 16u << 20, diff_id) != 0) return 0;
    snprintf(path, sizeof path, "%s/image.tar", fz_tmp());
    if (wrap_write_archive(path, data, size, diff_id, "fuzz/train:latest", NULL, NULL) != 0) return 0;
    snprintf(ref, sizeof ref, "docker-archive:%s", path);
    fz_exercise_image(ref, 1);
    unlink(path);
    return 0;
}
