/*
 * docker-archive manifest.json and image config as the fuzzer writes them:
 * the input is "MANIFEST\n@@\nCONFIG" around a fixed small valid layer
 * (members layer.tar and config.json, see tools/image_wrap.h). Open, walk,
 * read and extract whatever opens; references with and without a tag.
 */
#include "fuzz_common.h"
#include "image_wrap.h"

/* A one-file layer: opt/pht_train/entrypoint.sh, built once. */
static char layer[3072];
static size_t layer_len;

static void make_layer(void)
{
    if (layer_len) return;
    memset(layer, 0, sizeof layer);
    char *h = layer;
    const char *body = "echo 42\n";
    snprintf(h, 100, "opt/pht_train/entrypoint.sh");
    snprintf(h + 100, 8, "0000644");
    snprintf(h + 108, 8, "0000000");
    snprintf(h + 116, 8, "0000000");
    snprintf(h + 124, 12, "%011o", (unsigned)strlen(body));
    snprintf(h + 136, 12, "%011o", 0u);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum);
    h[155] = ' ';
    memcpy(layer + 512, body, strlen(body));
    layer_len = 512 + 512 + 1024;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    make_layer();
    char *parts[2];
    size_t lens[2];
    size_t n = fz_split(data, size, parts, lens, 2);
    char path[320], ref[400];
    snprintf(path, sizeof path, "%s/json.tar", fz_tmp());
    if (n == 2 && strlen(parts[0]) == lens[0] && strlen(parts[1]) == lens[1] &&
        wrap_write_archive(path, layer, layer_len, "", "", parts[1], parts[0]) == 0) {
        snprintf(ref, sizeof ref, "docker-archive:%s", path);
        fz_exercise_image(ref, 1);
        snprintf(ref, sizeof ref, "docker-archive:%s:pht/train:latest", path);
        fz_exercise_image(ref, 0);
        unlink(path);
    }
    fz_free_parts(parts, n);
    return 0;
}
