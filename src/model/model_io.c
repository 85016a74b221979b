/* Model checkpoints in Hugging Face layout: config.json + model.safetensors (HF tensor names). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/fsutil.h"
#include "kdstep/model.h"
#include "kdstep/safetensors.h"

int kd_model_save_safetensors(const kd_model *m, const char *path, kd_error *err) {
    kd_st_write_tensor *t = kd_calloc((size_t)m->n_tensors, sizeof *t);
    if (!t) return kd_error_set(err, KD_ERR_NOMEM, "model save: out of memory");
    for (int i = 0; i < m->n_tensors; i++) {
        t[i].name = m->tensors[i].name;
        t[i].ndim = m->tensors[i].ndim;
        t[i].shape[0] = m->tensors[i].shape[0];
        t[i].shape[1] = m->tensors[i].shape[1];
        t[i].data = m->params + m->tensors[i].offset;
    }
    int rc = kd_safetensors_write(path, t, m->n_tensors, err);
    free(t);
    return rc;
}

int kd_model_save(const kd_model *m, const char *dir, kd_error *err) {
    char path[4096];
    int rc = kd_mkdir_p(dir, err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((rc = kd_model_save_safetensors(m, path, err))) return rc;
    snprintf(path, sizeof path, "%s/config.json", dir);
    return kd_model_config_write(path, &m->cfg, err);
}

int kd_model_load_safetensors(kd_model *m, const char *path, kd_error *err) {
    kd_safetensors *st = NULL;
    int rc = kd_safetensors_open(path, &st, err);
    if (rc) return rc;
    for (int i = 0; i < m->n_tensors && rc == KD_OK; i++) {
        const kd_model_tensor *mt = &m->tensors[i];
        const kd_st_tensor *t = kd_safetensors_find(st, mt->name);
        if (!t) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: tensor '%s' is missing (is this a Qwen3 checkpoint of the same shape?)", path, mt->name);
            break;
        }
        int same = t->ndim == mt->ndim;
        for (int d = 0; same && d < mt->ndim; d++) same = t->shape[d] == mt->shape[d];
        if (!same) {
            char got[128] = "", want[128];
            size_t u = 0;
            for (int d = 0; d < t->ndim && u < sizeof got - 24; d++) u += (size_t)snprintf(got + u, sizeof got - u, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            if (mt->ndim == 2) snprintf(want, sizeof want, "%lld, %lld", (long long)mt->shape[0], (long long)mt->shape[1]);
            else snprintf(want, sizeof want, "%lld", (long long)mt->shape[0]);
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: tensor '%s' has shape [%s] but the model config needs [%s]", path, mt->name, got, want);
            break;
        }
        rc = kd_st_tensor_to_f32(t, m->params + mt->offset, mt->numel, err);
        /* NaN or Inf weights would decode to empty text without a word: refused here, by name */
        for (size_t j = 0; rc == KD_OK && j < mt->numel; j++)
            if (!isfinite(m->params[mt->offset + j]))
                rc = kd_error_set(err, KD_ERR_INVALID, "%s: tensor '%s' holds %s at element %llu; the checkpoint is damaged "
                                  "(resume from an earlier checkpoint, or retrain)", path, mt->name,
                                  isnan(m->params[mt->offset + j]) ? "NaN" : "Inf", (unsigned long long)j);
    }
    kd_safetensors_close(st);
    return rc;
}

int kd_model_open_dir(const char *dir, int B, int T, int inference, kd_model **out, kd_error *err) {
    char path[4096];
    kd_model_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = kd_model_config_load(path, &cfg, err);
    if (rc) return rc;
    if ((rc = inference ? kd_model_new_inference(&cfg, B, T, out, err) : kd_model_new(&cfg, B, T, out, err))) return rc;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((rc = kd_model_load_safetensors(*out, path, err))) {
        kd_model_free(*out);
        *out = NULL;
    }
    return rc;
}
