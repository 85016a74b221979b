/* Fuzz target: the JSON prefix automaton must agree with jansson. For every prefix it accepts, the
 * prefix plus the automaton's completion parses; once it rejects, the whole input must not parse; an
 * input it accepts completely parses iff it is complete. Inputs with NUL bytes are skipped. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/jsonprefix.h"

static int parses(const char *s, size_t n) {
    json_error_t e;
    json_t *j = json_loadb(s, n, JSON_DECODE_ANY, &e);
    if (!j) return 0;
    json_decref(j);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* jansson's json_loadb reads a NUL byte as the end of input ("2\0x" parses); JSON has no NUL */
    if (size > 4096 || memchr(data, 0, size)) return 0;
    char *buf = malloc(size + 2 * KD_JSONPREFIX_MAX_DEPTH + 64);
    char comp[2 * KD_JSONPREFIX_MAX_DEPTH + 64];
    if (!buf) return 0;
    kd_jsonprefix st;
    kd_jsonprefix_init(&st);
    for (size_t i = 0; i <= size; i++) {
        if (i > 0 && !kd_jsonprefix_feed(&st, (const char *)data + i - 1, 1)) {
            if (parses((const char *)data, size)) abort(); /* rejected a prefix of a document */
            free(buf);
            return 0;
        }
        long cl = kd_jsonprefix_completion(&st, comp, sizeof comp);
        if (cl < 0) abort();
        /* integers beyond int64 and reals beyond double are range errors in jansson, not grammar */
        memcpy(buf, data, i);
        memcpy(buf + i, comp, (size_t)cl);
        if (!parses(buf, i + (size_t)cl)) {
            json_error_t e;
            json_t *j = json_loadb(buf, i + (size_t)cl, JSON_DECODE_ANY, &e);
            json_decref(j);
            if (!strstr(e.text, "too big") && !strstr(e.text, "overflow")) abort();
        }
    }
    if (parses((const char *)data, size) != kd_jsonprefix_complete(&st)) {
        json_error_t e;
        json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &e);
        json_decref(j);
        if (!strstr(e.text, "too big") && !strstr(e.text, "overflow")) abort();
    }
    free(buf);
    return 0;
}
