/* Training checkpoints (see include/kdstep/checkpoint.h). */
#include "kdstep/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdstep/fsutil.h"
#include "kdstep/hash.h"

static int fsync_path(const char *path, kd_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return kd_error_errno(err, errno, "%s: cannot open to fsync", path);
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc) return kd_error_errno(err, e, "%s: fsync failed", path);
    return KD_OK;
}

static int copy_file(const char *src, const char *dst, kd_error *err) {
    char *data = NULL;
    size_t len = 0;
    int rc = kd_read_file(src, &data, &len, err);
    if (rc) return rc;
    rc = kd_write_file_atomic(dst, data, len, err);
    free(data);
    return rc;
}

static void dirname_of(const char *path, char *out, size_t cap) {
    snprintf(out, cap, "%s", path);
    char *s = strrchr(out, '/');
    if (s) *s = '\0';
    else snprintf(out, cap, ".");
}

int kd_checkpoint_write(const char *dir, const kd_model *m, const char *tokenizer_json, const kd_train_state *st,
                        kd_error *err) {
    char tmp[4096], path[4096], parent[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", dir) >= (int)sizeof tmp)
        return kd_error_set(err, KD_ERR_INVALID, "checkpoint path too long: %s", dir);
    int rc;
    if ((rc = kd_rm_rf(tmp, err)) || (rc = kd_mkdir_p(tmp, err))) return kd_error_prefix(err, "checkpoint %s", dir);
    if ((rc = kd_model_save(m, tmp, err))) goto fail;
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    if ((rc = fsync_path(path, err))) goto fail;
    snprintf(path, sizeof path, "%s/config.json", tmp);
    if ((rc = fsync_path(path, err))) goto fail;
    if (tokenizer_json) {
        snprintf(path, sizeof path, "%s/tokenizer.json", tmp);
        if ((rc = copy_file(tokenizer_json, path, err))) goto fail;
        char tdir[4096], tcfg[4200];
        dirname_of(tokenizer_json, tdir, sizeof tdir);
        snprintf(tcfg, sizeof tcfg, "%s/tokenizer_config.json", tdir);
        if (kd_path_exists(tcfg)) {
            snprintf(path, sizeof path, "%s/tokenizer_config.json", tmp);
            if ((rc = copy_file(tcfg, path, err))) goto fail;
        }
    }
    /* moments: m then v, raw float32 */
    size_t nb = m->n_params * sizeof(float);
    char *buf = malloc(2 * nb > 0 ? 2 * nb : 1);
    if (!buf) {
        rc = kd_error_set(err, KD_ERR_NOMEM, "checkpoint: out of memory for the optimizer state");
        goto fail;
    }
    memcpy(buf, m->adam_m, nb);
    memcpy(buf + nb, m->adam_v, nb);
    char opt_sha[65];
    kd_sha256_hex(buf, 2 * nb, opt_sha);
    snprintf(path, sizeof path, "%s/optimizer.bin", tmp);
    rc = kd_write_file_atomic(path, buf, 2 * nb, err);
    free(buf);
    if (rc) goto fail;
    json_t *js = json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:s}", "format",
                           KD_CHECKPOINT_FORMAT, "step", (json_int_t)st->step, "adam_t", (json_int_t)st->adam_t,
                           "bad_steps", (json_int_t)st->bad_steps, "total_steps", (json_int_t)st->total_steps, "seed",
                           (json_int_t)st->seed, "data_cursor", (json_int_t)st->data_cursor, "world",
                           (json_int_t)st->world, "micro_batch", (json_int_t)st->micro_batch, "grad_accum",
                           (json_int_t)st->grad_accum, "seq_len", (json_int_t)st->seq_len, "n_params",
                           (json_int_t)m->n_params, "optimizer_sha256", opt_sha, "config_sha256",
                           st->config_sha256);
    char *txt = js ? json_dumps(js, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(js);
    if (!txt) {
        rc = kd_error_set(err, KD_ERR_NOMEM, "checkpoint: out of memory");
        goto fail;
    }
    snprintf(path, sizeof path, "%s/trainer_state.json", tmp);
    rc = kd_write_file_atomic(path, txt, strlen(txt), err);
    free(txt);
    if (rc) goto fail;
    if ((rc = kd_fsync_dir(tmp, err))) goto fail;
    if (kd_path_exists(dir) && (rc = kd_rm_rf(dir, err))) goto fail;
    if (rename(tmp, dir) != 0) {
        rc = kd_error_errno(err, errno, "checkpoint: cannot rename %s to %s", tmp, dir);
        goto fail;
    }
    dirname_of(dir, parent, sizeof parent);
    if ((rc = kd_fsync_dir(parent, err))) return rc;
    return KD_OK;
fail:
    kd_error_prefix(err, "writing checkpoint %s: ", dir);
    kd_rm_rf(tmp, NULL);
    return rc;
}

int kd_checkpoint_set_latest(const char *run_dir, const char *name, kd_error *err) {
    char path[4096], line[512];
    snprintf(path, sizeof path, "%s/checkpoints/latest", run_dir);
    int n = snprintf(line, sizeof line, "%s\n", name);
    return kd_write_file_atomic(path, line, (size_t)n, err);
}

int kd_checkpoint_latest(const char *run_dir, char *path, size_t cap, kd_error *err) {
    char p[4096];
    snprintf(p, sizeof p, "%s/checkpoints/latest", run_dir);
    if (!kd_path_exists(p)) return kd_error_set(err, KD_ERR_NOTFOUND, "%s: no checkpoint to resume from", p);
    char *data = NULL;
    size_t len = 0;
    int rc = kd_read_file(p, &data, &len, err);
    if (rc) return rc;
    while (len && (data[len - 1] == '\n' || data[len - 1] == ' ' || data[len - 1] == '\r')) data[--len] = '\0';
    if (len == 0 || strchr(data, '/')) {
        free(data);
        return kd_error_set(err, KD_ERR_PARSE, "%s: expected the name of a checkpoint folder", p);
    }
    int w = snprintf(path, cap, "%s/checkpoints/%s", run_dir, data);
    free(data);
    if (w < 0 || (size_t)w >= cap) return kd_error_set(err, KD_ERR_INVALID, "checkpoint path too long");
    if (!kd_is_dir(path))
        return kd_error_set(err, KD_ERR_NOTFOUND, "%s names %s, which is not a folder (was it deleted?)", p, path);
    return KD_OK;
}

static int64_t get_i(json_t *js, const char *key, int *ok) {
    json_t *v = json_object_get(js, key);
    if (!json_is_integer(v)) {
        *ok = 0;
        return 0;
    }
    return (int64_t)json_integer_value(v);
}

/* The last step metrics.jsonl of the run holding checkpoint `dir` (run/checkpoints/NAME) records, or -1. */
static int64_t metrics_last_step(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/../../metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    int64_t last = -1;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] != '\n') { /* a torn last line: which step it was is unknown (the resume reports it) */
            last = -1;
            break;
        }
        json_t *js = json_loads(line, 0, NULL);
        json_t *sv = json_object_get(js, "step");
        if (json_is_integer(sv) && json_integer_value(sv) > last) last = json_integer_value(sv);
        json_decref(js);
    }
    free(line);
    fclose(f);
    return last;
}

/* trainer_state.json against the checkpoint it sits in: the folder's step, the optimizer's step count
 * and the run's metrics (each step's metrics line is written before its checkpoint is committed). An
 * edited state would otherwise be believed (a run "at step 999" after 12 steps). */
static int check_state(const char *dir, const char *path, const kd_train_state *st, kd_error *err) {
    const char *name = strrchr(dir, '/');
    name = name ? name + 1 : dir;
    long long named;
    char tail;
    if (sscanf(name, "step-%lld%c", &named, &tail) == 1 && named != st->step)
        return kd_error_set(err, KD_ERR_INVALID, "%s: step %lld, but it sits in checkpoint folder %s; the state was edited "
                            "or copied from another checkpoint (resume from a checkpoint folder left as it was written)",
                            path, (long long)st->step, name);
    if (st->step < 0 || st->adam_t < 0 || st->adam_t > st->step || (st->total_steps > 0 && st->step > st->total_steps))
        return kd_error_set(err, KD_ERR_INVALID, "%s: step %lld, optimizer step (adam_t) %lld and total_steps %lld do not "
                            "fit together (adam_t counts the steps taken, at most step; step at most total_steps)",
                            path, (long long)st->step, (long long)st->adam_t, (long long)st->total_steps);
    int64_t last = metrics_last_step(dir);
    if (last >= 0 && last < st->step)
        return kd_error_set(err, KD_ERR_INVALID, "%s: step %lld, but the run's metrics.jsonl ends at step %lld (each step's "
                            "line is written before its checkpoint): the state was edited, or metrics.jsonl was cut",
                            path, (long long)st->step, (long long)last);
    return KD_OK;
}

int kd_checkpoint_load(const char *dir, kd_model *m, kd_train_state *st, kd_error *err) {
    char path[4096];
    memset(st, 0, sizeof *st);
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    json_error_t je;
    json_t *js = json_load_file(path, 0, &je);
    if (!js) return kd_error_set(err, KD_ERR_PARSE, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    int ok = 1;
    int64_t fmt = get_i(js, "format", &ok);
    st->step = get_i(js, "step", &ok);
    st->adam_t = get_i(js, "adam_t", &ok);
    st->bad_steps = get_i(js, "bad_steps", &ok);
    st->total_steps = get_i(js, "total_steps", &ok);
    st->seed = get_i(js, "seed", &ok);
    st->data_cursor = get_i(js, "data_cursor", &ok);
    st->world = get_i(js, "world", &ok);
    st->micro_batch = get_i(js, "micro_batch", &ok);
    st->grad_accum = get_i(js, "grad_accum", &ok);
    st->seq_len = get_i(js, "seq_len", &ok);
    int64_t np = get_i(js, "n_params", &ok);
    const char *osha = json_string_value(json_object_get(js, "optimizer_sha256"));
    const char *csha = json_string_value(json_object_get(js, "config_sha256"));
    if (!ok || !osha || fmt != KD_CHECKPOINT_FORMAT) {
        json_decref(js);
        return kd_error_set(err, KD_ERR_PARSE, "%s: not a kdstep trainer state of format %d (missing or wrong fields)",
                            path, KD_CHECKPOINT_FORMAT);
    }
    snprintf(st->config_sha256, sizeof st->config_sha256, "%s", csha ? csha : "");
    if (check_state(dir, path, st, err)) {
        json_decref(js);
        return err->code;
    }
    char want_sha[65];
    snprintf(want_sha, sizeof want_sha, "%s", osha);
    json_decref(js);
    if ((size_t)np != m->n_params)
        return kd_error_set(err, KD_ERR_INVALID, "%s: checkpoint has %lld parameters but the model has %zu", path,
                            (long long)np, m->n_params);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = kd_model_load_safetensors(m, path, err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/optimizer.bin", dir);
    char *data = NULL;
    size_t len = 0;
    if ((rc = kd_read_file(path, &data, &len, err))) return rc;
    size_t nb = m->n_params * sizeof(float);
    char sha[65];
    kd_sha256_hex(data, len, sha);
    if (len != 2 * nb || strcmp(sha, want_sha) != 0) {
        free(data);
        return kd_error_set(err, KD_ERR_INVALID, "%s: optimizer state is damaged (size or SHA-256 does not match trainer_state.json)",
                            path);
    }
    memcpy(m->adam_m, data, nb);
    memcpy(m->adam_v, data + nb, nb);
    free(data);
    return KD_OK;
}
