/* libFuzzer target: the YAML guards (src/core/yamlsafe.c) in front of the config and job loaders.
 * Any bytes, anchors, aliases (alias bombs), deep nesting and repeated keys included, must load or
 * give an error with a message, in bounded time and memory (libFuzzer's -timeout and -rss_limit_mb
 * fail the run otherwise); the precheck alone must agree with the loaders: a file it refuses is
 * refused by both. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/config.h"
#include "kdstep/job.h"
#include "kdstep/yamlsafe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *yaml = malloc(size + 1);
    if (!yaml) return 0;
    memcpy(yaml, data, size);
    yaml[size] = 0;
    size_t len = strlen(yaml); /* the loaders read a C string */
    kd_error e;
    int pre = kd_yaml_precheck(yaml, len, "fuzz.yaml", &e);
    if (pre != KD_OK && !e.msg[0]) abort();
    kd_config cfg;
    kd_config_defaults(&cfg);
    int rc = kd_config_load_string(&cfg, yaml, "fuzz.yaml", &e);
    if (rc != KD_OK && !e.msg[0]) abort();
    if (pre != KD_OK && rc == KD_OK) abort();
    kd_config_free(&cfg);
    kd_job job;
    kd_job_defaults(&job);
    rc = kd_job_load_string(&job, yaml, "fuzz-job.yaml", &e);
    if (rc != KD_OK && !e.msg[0]) abort();
    if (pre != KD_OK && rc == KD_OK) abort();
    kd_job_free(&job);
    free(yaml);
    return 0;
}
