/* Model checkpoints in Hugging Face layout: config.json + model.safetensors (HF tensor names). */
#include <jansson.h>
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
    int rc = kd_safetensors_open(&st, path, err);
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

int kd_model_open_dir(kd_model **out, const char *dir, int B, int T, int inference, kd_error *err) {
    char path[4096];
    kd_model_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = kd_model_config_load(path, &cfg, err);
    if (rc) return rc;
    if ((rc = inference ? kd_model_new_inference(out, &cfg, B, T, err) : kd_model_new(out, &cfg, B, T, err))) return rc;
    if ((rc = kd_model_load_weights_dir(*out, dir, err))) {
        kd_model_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- sharded checkpoints ---- */

static int load_tensor(kd_model *m, const kd_model_tensor *mt, const kd_st_tensor *t, const char *path, kd_error *err) {
    int same = t->ndim == mt->ndim;
    for (int d = 0; same && d < mt->ndim; d++) same = t->shape[d] == mt->shape[d];
    if (!same)
        return kd_error_set(err, KD_ERR_INVALID, "%s: tensor '%s' has a shape other than the model config's (is config.json this checkpoint's?)", path, mt->name);
    int rc = kd_st_tensor_to_f32(t, m->params + mt->offset, mt->numel, err);
    /* as the single-file reader: NaN or Inf weights are refused by name */
    for (size_t j = 0; rc == KD_OK && j < mt->numel; j++)
        if (!isfinite(m->params[mt->offset + j]))
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: tensor '%s' holds %s at element %llu; the checkpoint is damaged "
                              "(resume from an earlier checkpoint, or retrain)", path, mt->name,
                              isnan(m->params[mt->offset + j]) ? "NaN" : "Inf", (unsigned long long)j);
    return rc;
}

static int load_sharded(kd_model *m, const char *dir, const char *index_path, kd_error *err) {
    kd_st_index *ix = NULL;
    int rc = kd_st_index_load(index_path, &ix, err);
    if (rc) return rc;
    int *where = kd_calloc((size_t)m->n_tensors, sizeof *where);
    if (!where) {
        kd_st_index_close(ix);
        return kd_error_set(err, KD_ERR_NOMEM, "%s: out of memory", index_path);
    }
    for (int i = 0; i < m->n_tensors && rc == KD_OK; i++) {
        where[i] = -1;
        for (int j = 0; j < ix->n && where[i] < 0; j++)
            if (strcmp(ix->names[j], m->tensors[i].name) == 0) where[i] = ix->shard[j];
        if (where[i] < 0)
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: weight_map has no tensor '%s' (is this a Qwen3 checkpoint of the same shape?)", index_path, m->tensors[i].name);
    }
    char path[4096];
    for (int f = 0; f < ix->n_files && rc == KD_OK; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, ix->files[f]);
        kd_safetensors *st = NULL;
        if ((rc = kd_safetensors_open(&st, path, err))) break;
        for (int i = 0; i < m->n_tensors && rc == KD_OK; i++) {
            if (where[i] != f) continue;
            const kd_st_tensor *t = kd_safetensors_find(st, m->tensors[i].name);
            if (!t) rc = kd_error_set(err, KD_ERR_INVALID, "%s: tensor '%s' is missing although %s maps it here", path, m->tensors[i].name, index_path);
            else rc = load_tensor(m, &m->tensors[i], t, path, err);
        }
        kd_safetensors_close(st);
    }
    free(where);
    kd_st_index_close(ix);
    return rc;
}

int kd_model_load_weights_dir(kd_model *m, const char *dir, kd_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (kd_path_exists(path)) return kd_model_load_safetensors(m, path, err);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (kd_path_exists(path)) return load_sharded(m, dir, path, err);
    return kd_error_set(err, KD_ERR_NOTFOUND, "%s holds neither model.safetensors nor model.safetensors.index.json (is it a Hugging Face model folder?)", dir);
}

int64_t kd_parse_byte_size(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    while (*end == ' ') end++;
    static const struct { const char *u; double mul; } U[] = {
        {"", 1}, {"B", 1}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
        {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
    for (size_t i = 0; i < sizeof U / sizeof *U; i++)
        if (strcmp(end, U[i].u) == 0) return v * U[i].mul > 9e18 ? -1 : (int64_t)(v * U[i].mul);
    return -1;
}

static int write_index(const char *dir, const kd_model *m, const int *shard_of, int n_shards, uint64_t total, kd_error *err) {
    json_t *root = json_object(), *md = json_object(), *wm = json_object();
    json_object_set_new(md, "total_size", json_integer((json_int_t)total));
    json_object_set_new(root, "metadata", md);
    for (int i = 0; i < m->n_tensors; i++) {
        char f[96];
        snprintf(f, sizeof f, "model-%05d-of-%05d.safetensors", shard_of[i] + 1, n_shards);
        json_object_set_new(wm, m->tensors[i].name, json_string(f));
    }
    json_object_set_new(root, "weight_map", wm);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    if (!s) return kd_error_set(err, KD_ERR_NOMEM, "index: out of memory");
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    int rc = kd_write_file_atomic(path, s, strlen(s), err);
    free(s);
    return rc;
}

int kd_model_save_weights(const kd_model *m, const char *dir, int dtype, uint64_t max_shard_bytes, kd_error *err) {
    size_t es = kd_st_dtype_size(dtype);
    uint64_t total = 0;
    for (int i = 0; i < m->n_tensors; i++) total += (uint64_t)m->tensors[i].numel * es;
    kd_st_write_tensor *t = kd_calloc((size_t)m->n_tensors, sizeof *t);
    int *shard_of = kd_calloc((size_t)m->n_tensors, sizeof *shard_of);
    if (!t || !shard_of) {
        free(t);
        free(shard_of);
        return kd_error_set(err, KD_ERR_NOMEM, "model save: out of memory");
    }
    for (int i = 0; i < m->n_tensors; i++) {
        t[i].name = m->tensors[i].name;
        t[i].ndim = m->tensors[i].ndim;
        t[i].shape[0] = m->tensors[i].shape[0];
        t[i].shape[1] = m->tensors[i].shape[1];
        t[i].data = m->params + m->tensors[i].offset;
    }
    char path[4096];
    int rc = KD_OK;
    if (max_shard_bytes == 0 || total <= max_shard_bytes) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc = kd_safetensors_write_dtype(path, t, m->n_tensors, dtype, err);
    } else {
        /* HF's rule: tensors in order; a new shard starts when the next tensor would overflow this one */
        int n_shards = 0;
        uint64_t used = 0;
        for (int i = 0; i < m->n_tensors; i++) {
            uint64_t b = (uint64_t)m->tensors[i].numel * es;
            if (i == 0 || (used > 0 && used + b > max_shard_bytes)) {
                n_shards++;
                used = 0;
            }
            used += b;
            shard_of[i] = n_shards - 1;
        }
        for (int s = 0, first = 0; s < n_shards && rc == KD_OK; s++) {
            int last = first;
            while (last < m->n_tensors && shard_of[last] == s) last++;
            snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, s + 1, n_shards);
            rc = kd_safetensors_write_dtype(path, t + first, last - first, dtype, err);
            first = last;
        }
        if (rc == KD_OK) rc = write_index(dir, m, shard_of, n_shards, total, err);
    }
    free(t);
    free(shard_of);
    return rc;
}
