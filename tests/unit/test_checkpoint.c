/* Checkpoints: write/load round trip is bitwise, the latest pointer, damaged or missing state is a
 * clear error; and the model's per-layer backward hook the trainer's bucketed allreduce relies on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/checkpoint.h"
#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "kdstep/model.h"
#include "testutil.h"

static kd_model *tiny(uint64_t seed) {
    kd_model_config c;
    kd_error err = {0};
    kd_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_model_config_preset("tiny", &c, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_model_new(&m, &c, 1, 8, &err), KD_OK);
    kd_model_init_random(m, seed);
    uint64_t s = seed + 7;
    for (size_t i = 0; i < m->n_params; i++) {
        m->adam_m[i] = kd_rand_uniform(&s) - 0.5f;
        m->adam_v[i] = kd_rand_uniform(&s);
    }
    return m;
}

static const char *run_dir(const char *name) {
    static char p[4][1024];
    static int k;
    char *b = p[k++ & 3];
    snprintf(b, 1024, "%s/%s", kd_test_tmpdir(), name);
    return b;
}

static void test_roundtrip(void) {
    kd_error err = {0};
    kd_model *a = tiny(1), *b = tiny(2);
    const char *run = run_dir("run1");
    char dir[2048], path[2048];
    snprintf(dir, sizeof dir, "%s/checkpoints/step-000003", run);
    const char *tj = kd_test_write("tokenizer.json", "{\"fake\": true}");
    kd_test_write("tokenizer_config.json", "{}");
    kd_train_state st = {3, 2, 1, 10, 1234, 24, 2, 4, 1, 128, "abc"};
    CU_ASSERT_EQUAL_FATAL(kd_checkpoint_write(dir, a, tj, &st, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_checkpoint_set_latest(run, "step-000003", &err), KD_OK);
    snprintf(path, sizeof path, "%s.tmp", dir);
    CU_ASSERT_FALSE(kd_path_exists(path));
    const char *files[] = {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "trainer_state.json",
                           "optimizer.bin"};
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        CU_ASSERT_TRUE(kd_path_exists(path));
    }
    char latest[2048];
    CU_ASSERT_EQUAL_FATAL(kd_checkpoint_latest(run, latest, sizeof latest, &err), KD_OK);
    CU_ASSERT_STRING_EQUAL(latest, dir);
    kd_train_state got;
    CU_ASSERT_EQUAL_FATAL(kd_checkpoint_load(latest, b, &got, &err), KD_OK);
    CU_ASSERT_EQUAL(memcmp(a->params, b->params, a->n_params * 4), 0);
    CU_ASSERT_EQUAL(memcmp(a->adam_m, b->adam_m, a->n_params * 4), 0);
    CU_ASSERT_EQUAL(memcmp(a->adam_v, b->adam_v, a->n_params * 4), 0);
    CU_ASSERT_EQUAL(got.step, 3);
    CU_ASSERT_EQUAL(got.adam_t, 2);
    CU_ASSERT_EQUAL(got.bad_steps, 1);
    CU_ASSERT_EQUAL(got.data_cursor, 24);
    CU_ASSERT_EQUAL(got.world, 2);
    CU_ASSERT_EQUAL(got.seq_len, 128);
    CU_ASSERT_STRING_EQUAL(got.config_sha256, "abc");
    /* rewriting the same step replaces it */
    CU_ASSERT_EQUAL(kd_checkpoint_write(dir, b, tj, &st, &err), KD_OK);

    /* damaged optimizer state */
    snprintf(path, sizeof path, "%s/optimizer.bin", dir);
    CU_ASSERT_EQUAL(kd_write_file_atomic(path, "xx", 2, &err), KD_OK);
    CU_ASSERT_EQUAL(kd_checkpoint_load(dir, b, &got, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "optimizer state is damaged");
    /* not a trainer state */
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    CU_ASSERT_EQUAL(kd_write_file_atomic(path, "{\"format\": 1}", 13, &err), KD_OK);
    CU_ASSERT_EQUAL(kd_checkpoint_load(dir, b, &got, &err), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(err.msg, "not a kdstep trainer state of format 1");
    kd_model_free(a);
    kd_model_free(b);
}

static void test_shape_mismatch(void) {
    kd_error err = {0};
    kd_model *a = tiny(1);
    kd_model_config c = a->cfg;
    c.num_layers = 1;
    kd_model *small = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_model_new(&small, &c, 1, 8, &err), KD_OK);
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/checkpoints/step-000001", run_dir("run2"));
    kd_train_state st = {1, 1, 0, 2, 1, 1, 1, 1, 1, 8, ""};
    CU_ASSERT_EQUAL_FATAL(kd_checkpoint_write(dir, a, NULL, &st, &err), KD_OK);
    kd_train_state got;
    CU_ASSERT_EQUAL(kd_checkpoint_load(dir, small, &got, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "parameters but the model has");
    kd_model_free(a);
    kd_model_free(small);
}

static void test_latest_errors(void) {
    kd_error err = {0};
    char p[2048];
    const char *run = run_dir("run3");
    CU_ASSERT_EQUAL(kd_checkpoint_latest(run, p, sizeof p, &err), KD_ERR_NOTFOUND);
    KD_ASSERT_CONTAINS(err.msg, "no checkpoint to resume from");
    snprintf(p, sizeof p, "%s/checkpoints", run);
    CU_ASSERT_EQUAL_FATAL(kd_mkdir_p(p, &err), KD_OK);
    CU_ASSERT_EQUAL(kd_checkpoint_set_latest(run, "step-000009", &err), KD_OK);
    CU_ASSERT_EQUAL(kd_checkpoint_latest(run, p, sizeof p, &err), KD_ERR_NOTFOUND);
    KD_ASSERT_CONTAINS(err.msg, "which is not a folder");
    CU_ASSERT_EQUAL(kd_checkpoint_set_latest(run, "../x", &err), KD_OK);
    CU_ASSERT_EQUAL(kd_checkpoint_latest(run, p, sizeof p, &err), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(err.msg, "expected the name of a checkpoint folder");
}

/* The hook fires once per layer, from the last layer down, and when it fires for layer l the
 * gradients of layer l are final: they equal the gradients after the whole backward. */
typedef struct hook_rec {
    kd_model *m;
    int order[16], n;
    float *snap;
} hook_rec;

static void hook(void *ctx, int l) {
    hook_rec *r = ctx;
    r->order[r->n++] = l;
    size_t lo = r->m->tensors[1 + 11 * l].offset, hi = r->m->tensors[1 + 11 * l + 10].offset + r->m->tensors[1 + 11 * l + 10].numel;
    memcpy(r->snap + lo, r->m->grads + lo, (hi - lo) * 4);
}

static void test_layer_hook(void) {
    kd_error err = {0};
    kd_model *m = tiny(3);
    int32_t ids[8] = {1, 5, 9, 2, 7, 3, 3, 1}, tg[8] = {5, 9, 2, 7, 3, 3, 1, -1};
    hook_rec r = {m, {0}, 0, calloc(m->n_params, 4)};
    m->on_layer_grads = hook;
    m->on_layer_grads_ctx = &r;
    kd_model_zero_grad(m);
    CU_ASSERT_EQUAL_FATAL(kd_model_forward(m, ids, NULL, &err), KD_OK);
    kd_model_ce_loss(m, tg, 1.0f);
    CU_ASSERT_EQUAL_FATAL(kd_model_backward(m, &err), KD_OK);
    int L = m->cfg.num_layers;
    CU_ASSERT_EQUAL(r.n, L);
    for (int i = 0; i < r.n; i++) CU_ASSERT_EQUAL(r.order[i], L - 1 - i);
    size_t lo = m->tensors[1].offset, hi = m->tensors[1 + 11 * L - 1].offset + m->tensors[1 + 11 * L - 1].numel;
    CU_ASSERT_EQUAL(memcmp(r.snap + lo, m->grads + lo, (hi - lo) * 4), 0);
    free(r.snap);
    kd_model_free(m);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("checkpoint", NULL, NULL);
    CU_add_test(s, "roundtrip", test_roundtrip);
    CU_add_test(s, "shape_mismatch", test_shape_mismatch);
    CU_add_test(s, "latest_errors", test_latest_errors);
    CU_add_test(s, "layer_hook", test_layer_hook);
    return kd_test_main();
}
