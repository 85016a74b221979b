/* libFuzzer target: the job file loader (kd_job_load_string) and the config it describes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *yaml = malloc(size + 1);
    if (!yaml) return 0;
    memcpy(yaml, data, size);
    yaml[size] = 0;
    kd_job job;
    kd_job_defaults(&job);
    kd_error err;
    if (kd_job_load_string(&job, yaml, "fuzz-job.yaml", &err) == KD_OK) {
        char path[KD_CFG_PATH];
        kd_job_path(&job, "dataset", path);
    } else if (!err.msg[0]) {
        abort();
    }
    kd_job_free(&job);
    free(yaml);
    return 0;
}
