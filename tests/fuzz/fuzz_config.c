/* libFuzzer target: the strict YAML config loader (kd_config_load_string) and the canonical dump.
 * Any bytes must load or give an error with a message; a config that loads must dump to YAML that
 * loads again to the same hash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *yaml = malloc(size + 1);
    if (!yaml) return 0;
    memcpy(yaml, data, size);
    yaml[size] = 0;
    kd_config cfg;
    kd_config_defaults(&cfg);
    kd_error err;
    if (kd_config_load_string(&cfg, yaml, "fuzz.yaml", &err) == KD_OK) {
        char *dump = kd_config_dump(&cfg);
        if (!dump) abort();
        kd_config again;
        kd_config_defaults(&again);
        if (kd_config_load_string(&again, dump, "dump.yaml", &err) != KD_OK) abort();
        char h1[65], h2[65];
        kd_config_hash(&cfg, h1);
        kd_config_hash(&again, h2);
        if (strcmp(h1, h2) != 0) abort();
        kd_config_free(&again);
        free(dump);
    } else if (!err.msg[0]) {
        abort();
    }
    kd_config_free(&cfg);
    free(yaml);
    return 0;
}
