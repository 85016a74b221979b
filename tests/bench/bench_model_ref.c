/* Driver for the PyTorch oracle tests (tests/reference/model_*.sh); not a timing benchmark.
 *
 *   bench_model_ref dump CONFIG.json OUTDIR SEED B T   seeded model -> OUTDIR/{config.json,model.safetensors};
 *                                                      a padded batch, its logits, loss, every gradient and
 *                                                      the losses of 10 AdamW steps -> OUTDIR/out.safetensors
 *   bench_model_ref dump-inference PRESET OUTDIR SEED T   (see dump_inference)
 *   bench_model_ref resave INDIR OUTDIR                load a HF folder, save it again
 *   bench_model_ref logits DIR B T OUT.safetensors     load DIR, forward on DIR/batch.safetensors, write logits
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/hash.h"
#include "kdstep/model.h"
#include "kdstep/runtime.h"
#include "kdstep/safetensors.h"

#define CHECK(x)                                                   \
    do {                                                           \
        if ((x) != KD_OK) {                                        \
            fprintf(stderr, "bench_model_ref: %s\n", err.msg);     \
            return 1;                                              \
        }                                                          \
    } while (0)

static const kd_adamw_params HP = {0.9f, 0.95f, 1e-8f, 0.1f};
#define ADAM_STEPS 10
#define ADAM_LR 1e-3f

static void make_batch(int B, int T, int V, uint64_t seed, int32_t *ids, int32_t *len, int32_t *tgt) {
    uint64_t s = seed * 7919u + 1;
    for (int b = 0; b < B; b++) {
        len[b] = b == 0 ? T : 1 + (int)(kd_rand_uniform(&s) * (float)T);
        if (len[b] > T) len[b] = T;
    }
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(kd_rand_uniform(&s) * (float)V) % V;
    for (int i = 0; i < B * T; i++) {
        int b = i / T, t = i % T;
        /* next token as target; the last real position and the padding are ignored; a few -1s too */
        tgt[i] = (t + 1 < len[b] && kd_rand_uniform(&s) > 0.1f) ? ids[i + 1] : -1;
    }
}

static float *to_f(const int32_t *x, int n) {
    float *f = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) f[i] = (float)x[i];
    return f;
}

static int dump(const char *cfg_path, const char *dir, uint64_t seed, int B, int T) {
    kd_error err = {0};
    kd_model_config cfg;
    kd_model *m = NULL;
    CHECK(kd_model_config_preset(cfg_path, &cfg, &err));
    CHECK(kd_model_new(&m, &cfg, B, T, &err));
    kd_model_init_random(m, seed);
    /* Norm weights away from 1, so a mixed-up norm shows in the comparison. */
    uint64_t s = seed + 99;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].ndim == 1)
            for (size_t j = 0; j < m->tensors[i].numel; j++) m->params[m->tensors[i].offset + j] = 0.8f + 0.4f * kd_rand_uniform(&s);
    CHECK(kd_model_save(m, dir, &err));
    int BT = B * T, V = cfg.vocab_size;
    int32_t *ids = malloc((size_t)BT * 4), *len = malloc((size_t)B * 4), *tgt = malloc((size_t)BT * 4);
    make_batch(B, T, V, seed, ids, len, tgt);
    CHECK(kd_model_forward(m, ids, len, &err));
    float *logits = malloc((size_t)BT * V * sizeof(float));
    memcpy(logits, m->logits, (size_t)BT * V * sizeof(float));
    kd_model_zero_grad(m);
    float loss = kd_model_ce_loss(m, tgt, 1.0f);
    CHECK(kd_model_backward(m, &err));
    float *grads = malloc(m->n_params * sizeof(float));
    memcpy(grads, m->grads, m->n_params * sizeof(float));
    float chunked = 0.0f;
    CHECK(kd_model_forward_loss(m, ids, len, tgt, &chunked, &err));
    float losses[ADAM_STEPS];
    for (int step = 1; step <= ADAM_STEPS; step++) {
        kd_model_zero_grad(m);
        CHECK(kd_model_forward(m, ids, len, &err));
        losses[step - 1] = kd_model_ce_loss(m, tgt, 1.0f);
        CHECK(kd_model_backward(m, &err));
        kd_model_adamw_step(m, &HP, ADAM_LR, step);
    }
    int n = 0, cap = m->n_tensors + 8;
    kd_st_write_tensor *t = calloc((size_t)cap, sizeof *t);
    char (*names)[96] = calloc((size_t)cap, 96);
    float *fids = to_f(ids, BT), *flen = to_f(len, B), *ftgt = to_f(tgt, BT);
    float scalars[3] = {loss, chunked, (float)ADAM_LR};
    t[n++] = (kd_st_write_tensor){"ids", 2, {B, T}, fids};
    t[n++] = (kd_st_write_tensor){"lengths", 1, {B}, flen};
    t[n++] = (kd_st_write_tensor){"targets", 2, {B, T}, ftgt};
    t[n++] = (kd_st_write_tensor){"logits", 3, {B, T, V}, logits};
    t[n++] = (kd_st_write_tensor){"loss", 1, {3}, scalars};
    t[n++] = (kd_st_write_tensor){"adam_losses", 1, {ADAM_STEPS}, losses};
    for (int i = 0; i < m->n_tensors; i++) {
        snprintf(names[n], 96, "grad.%s", m->tensors[i].name);
        t[n] = (kd_st_write_tensor){names[n], m->tensors[i].ndim, {m->tensors[i].shape[0], m->tensors[i].shape[1]}, grads + m->tensors[i].offset};
        n++;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    CHECK(kd_safetensors_write(path, t, n, &err));
    printf("kdstep: %zu parameters, loss %.6f (chunked %.6f), adam losses %.6f .. %.6f\n", m->n_params, loss, chunked, losses[0],
           losses[ADAM_STEPS - 1]);
    free(t);
    free(names);
    free(fids);
    free(flen);
    free(ftgt);
    free(ids);
    free(len);
    free(tgt);
    free(logits);
    free(grads);
    kd_model_free(m);
    return 0;
}

/* A big preset, inference only: seeded weights saved as a HF folder, a batch of ids, its logits, and
 * the KV-cache decode agreeing with the batched forward (checked here, rel 1e-4). */
static int dump_inference(const char *preset, const char *dir, uint64_t seed, int T) {
    kd_error err = {0};
    kd_model_config cfg;
    kd_model *m = NULL;
    CHECK(kd_model_config_preset(preset, &cfg, &err));
    CHECK(kd_model_new_inference(&m, &cfg, 1, T, &err));
    kd_model_init_random(m, seed);
    CHECK(kd_model_save(m, dir, &err));
    int32_t *ids = malloc((size_t)T * 4), len = T;
    uint64_t s = seed;
    for (int i = 0; i < T; i++) ids[i] = (int32_t)(kd_splitmix64(&s) % (uint64_t)cfg.vocab_size);
    CHECK(kd_model_forward(m, ids, &len, &err));
    kd_kv_cache *kc = NULL;
    CHECK(kd_kv_cache_new(&kc, m, T, &err));
    float worst = 0.0f;
    for (int t = 0; t < T; t++) {
        const float *lg = kd_model_decode_step(m, kc, ids[t]), *ref = m->logits + (size_t)t * cfg.vocab_size;
        float md = 0.0f, mr = 0.0f;
        for (int j = 0; j < cfg.vocab_size; j++) {
            float d = lg[j] - ref[j];
            md = d < 0 ? (-d > md ? -d : md) : (d > md ? d : md);
            mr = ref[j] < 0 ? (-ref[j] > mr ? -ref[j] : mr) : (ref[j] > mr ? ref[j] : mr);
        }
        if (md / mr > worst) worst = md / mr;
    }
    printf("kdstep %s: %zu parameters; KV-cache decode vs forward over %d steps: max rel diff %.2e\n", preset, m->n_params, T, worst);
    float *fids = to_f(ids, T), flen = (float)T;
    kd_st_write_tensor t[2] = {{"ids", 2, {1, T}, fids}, {"lengths", 1, {1}, &flen}};
    char path[4096];
    snprintf(path, sizeof path, "%s/batch.safetensors", dir);
    CHECK(kd_safetensors_write(path, t, 2, &err));
    kd_st_write_tensor lt = {"logits", 3, {1, T, cfg.vocab_size}, m->logits};
    snprintf(path, sizeof path, "%s/c_logits.safetensors", dir);
    CHECK(kd_safetensors_write(path, &lt, 1, &err));
    kd_kv_cache_free(kc);
    kd_model_free(m);
    free(ids);
    free(fids);
    return worst <= 1e-4f ? 0 : 1;
}

static int resave(const char *in, const char *out) {
    kd_error err = {0};
    kd_model *m = NULL;
    CHECK(kd_model_open_dir(&m, in, 1, 1, 1, &err));
    CHECK(kd_model_save(m, out, &err));
    kd_model_free(m);
    return 0;
}

/* Forward on ids/lengths stored in DIR/batch.safetensors (written by the Python side). */
static int logits_cmd(const char *dir, const char *outp) {
    kd_error err = {0};
    char path[4096];
    kd_safetensors *st = NULL;
    snprintf(path, sizeof path, "%s/batch.safetensors", dir);
    CHECK(kd_safetensors_open(&st, path, &err));
    const kd_st_tensor *ti = kd_safetensors_find(st, "ids"), *tl = kd_safetensors_find(st, "lengths");
    if (!ti || !tl || ti->ndim != 2) {
        fprintf(stderr, "batch.safetensors needs ids [B, T] and lengths [B]\n");
        return 1;
    }
    int B = (int)ti->shape[0], T = (int)ti->shape[1];
    float *fi = malloc((size_t)B * T * 4), *fl = malloc((size_t)B * 4);
    CHECK(kd_st_tensor_to_f32(ti, fi, (size_t)B * T, &err));
    CHECK(kd_st_tensor_to_f32(tl, fl, (size_t)B, &err));
    int32_t *ids = malloc((size_t)B * T * 4), *len = malloc((size_t)B * 4);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)fi[i];
    for (int i = 0; i < B; i++) len[i] = (int32_t)fl[i];
    kd_model *m = NULL;
    CHECK(kd_model_open_dir(&m, dir, B, T, 1, &err));
    CHECK(kd_model_forward(m, ids, len, &err));
    kd_st_write_tensor t = {"logits", 3, {B, T, m->cfg.vocab_size}, m->logits};
    CHECK(kd_safetensors_write(outp, &t, 1, &err));
    kd_model_free(m);
    kd_safetensors_close(st);
    free(fi);
    free(fl);
    free(ids);
    free(len);
    return 0;
}

int main(int argc, char **argv) {
    kd_runtime_set_threads(1, 0);
    if (argc == 7 && strcmp(argv[1], "dump") == 0) return dump(argv[2], argv[3], strtoull(argv[4], NULL, 10), atoi(argv[5]), atoi(argv[6]));
    if (argc == 6 && strcmp(argv[1], "dump-inference") == 0) return dump_inference(argv[2], argv[3], strtoull(argv[4], NULL, 10), atoi(argv[5]));
    if (argc == 4 && strcmp(argv[1], "resave") == 0) return resave(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "logits") == 0) return logits_cmd(argv[2], argv[3]);
    fprintf(stderr, "usage: bench_model_ref dump CONFIG.json OUTDIR SEED B T | resave INDIR OUTDIR | logits DIR OUT.safetensors\n");
    return 2;
}
