/* Fuzz target: the compact JSON writer must write what jansson writes. The input is loaded with
 * json_loadb (flags 0, and JSON_DECODE_ANY|JSON_ALLOW_NUL for scalars and NULs in strings); when it
 * loads, kd_json_dumps_compact must equal json_dumps(JSON_COMPACT) and kd_jsonw_value must equal
 * json_dumps(JSON_COMPACT|JSON_ENCODE_ANY), byte for byte, failures included. The raw input is also
 * used as a string value and as an object key without UTF-8 checks (what the loader never makes:
 * json_dumps refuses such a value and cuts such a key), and its first 8 bytes as a double. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/jsonw.h"

static void check(const json_t *v) {
    char *want = json_dumps(v, JSON_COMPACT), *got = kd_json_dumps_compact(v);
    if ((want == NULL) != (got == NULL) || (want && strcmp(want, got))) abort();
    free(want);
    free(got);
    want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    kd_jsonw w = {0};
    int rc = kd_jsonw_value(&w, v);
    if ((want == NULL) != (rc != 0)) abort();
    if (want && (w.len != strlen(want) || memcmp(w.data, want, w.len))) abort();
    kd_jsonw_free(&w);
    free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 65536) return 0;
    const size_t flags[] = {0, JSON_DECODE_ANY | JSON_ALLOW_NUL};
    for (size_t f = 0; f < 2; f++) {
        json_t *v = json_loadb((const char *)data, size, flags[f], NULL);
        if (!v) continue;
        check(v);
        json_t *wrapped = json_pack("{s[O]}", "x", v); /* the loaded value below a key and in an array */
        check(wrapped);
        json_decref(wrapped);
        json_decref(v);
    }
    json_t *a = json_array(), *o = json_object();
    json_array_append_new(a, json_stringn_nocheck((const char *)data, size));
    json_object_setn_new_nocheck(o, (const char *)data, size, json_integer((json_int_t)size));
    check(a);
    check(o);
    json_decref(a);
    json_decref(o);
    if (size >= 8) {
        double d;
        memcpy(&d, data, sizeof d);
        if (isfinite(d)) {
            json_t *r = json_real(d);
            check(r);
            json_decref(r);
        }
    }
    return 0;
}
