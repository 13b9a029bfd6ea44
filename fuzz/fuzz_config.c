/*
 * train_config.json: parse, validate, write, and parse the written text
 * again. What parses once must parse again to the same text and the same
 * verdict, so a write that loses or changes a field is a finding too.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pht_config *a = NULL, *b = NULL;
    pht_error err;
    if (pht_config_parse((const char *)data, size, &a, &err) != 0) return 0;
    int va = pht_config_validate(a, &err);
    char *ta = NULL, *tb = NULL;
    size_t la = 0, lb = 0;
    if (pht_config_to_json(a, 2, &ta, &la, &err) != 0) abort();
    if (pht_config_parse(ta, la, &b, &err) != 0) {
        fprintf(stderr, "written config does not parse: %s\n", err.message);
        abort();
    }
    if (pht_config_validate(b, &err) != va) abort();
    if (pht_config_to_json(b, 2, &tb, &lb, &err) != 0) abort();
    if (la != lb || memcmp(ta, tb, la) != 0) {
        fprintf(stderr, "round trip changed the text\n");
        abort();
    }
    /* the accessors of a valid config */
    if (va == 0) {
        for (size_t i = 0; i < pht_config_route_count(a); i++) {
            pht_config_stop st;
            pht_config_stop_at(a, i, &st, &err);
        }
        for (size_t i = 0; i < pht_config_file_count(a); i++) pht_config_file_path(a, i);
    }
    free(ta);
    free(tb);
    pht_config_free(a);
    pht_config_free(b);
    return 0;
}
