/* Checkpoints: write/load round trip is bitwise, the latest pointer, damaged or missing state is a
 * clear error; and the model's per-layer backward hook the trainer's bucketed allreduce relies on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/checkpoint.h"
#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "kdstep/model.h"
#include "kdstep/safetensors.h"
#define KD_FIXTURE_NO_MODEL
#include "student_fixture.h"
#include "testutil.h"
#include <dirent.h>

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

/* The names in a folder, sorted, joined by spaces. */
static void list_dir(const char *dir, char *out, size_t cap) {
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    size_t u = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (ents[i]->d_name[0] != '.') u += (size_t)snprintf(out + u, u < cap ? cap - u : 0, "%s%s", u ? " " : "", ents[i]->d_name);
        free(ents[i]);
    }
    free(ents);
}

static kd_model *tiny_for_tokenizer(uint64_t seed) {
    kd_model_config c;
    kd_error err = {0};
    kd_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_model_config_preset("tiny", &c, &err), KD_OK);
    c.vocab_size = fx_tokenizer_ids();
    CU_ASSERT_EQUAL_FATAL(kd_model_new(&m, &c, 1, 8, &err), KD_OK);
    kd_model_init_random(m, seed);
    return m;
}

static const char *fx_tokenizer_json(void) {
    static char p[4200];
    snprintf(p, sizeof p, "%s/tokenizer.json", fx_tokenizer_dir());
    return p;
}

/* final/ is a Hugging Face model folder: exactly these files; generation_config.json names the
 * chat template's end-of-turn and end-of-text ids; tokenizer_config.json has the chat template. */
static void test_final_folder(void) {
    kd_error err = {0};
    kd_model *a = tiny_for_tokenizer(5), *b = tiny_for_tokenizer(6);
    const char *dir = run_dir("final1");
    kd_final_options fo;
    CU_ASSERT_EQUAL_FATAL(kd_final_options_parse("float32", "5GB", &fo, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_checkpoint_write_final(dir, a, fx_tokenizer_json(), &fo, &err), KD_OK);
    char names[1024];
    list_dir(dir, names, sizeof names);
    CU_ASSERT_STRING_EQUAL(names, "config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json");
    char path[2048];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    json_t *g = json_load_file(path, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    kd_tokenizer *tok = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_open(&tok, fx_tokenizer_json(), &err), KD_OK);
    json_t *eos = json_object_get(g, "eos_token_id");
    CU_ASSERT_EQUAL(json_array_size(eos), 2);
    CU_ASSERT_EQUAL(json_integer_value(json_array_get(eos, 0)), kd_tokenizer_token_to_id(tok, "<|im_end|>"));
    CU_ASSERT_EQUAL(json_integer_value(json_array_get(eos, 1)), kd_tokenizer_token_to_id(tok, "<|endoftext|>"));
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(g, "pad_token_id")), kd_tokenizer_token_to_id(tok, "<|endoftext|>"));
    kd_tokenizer_close(tok);
    json_decref(g);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    json_t *tc = json_load_file(path, 0, NULL);
    KD_ASSERT_CONTAINS(json_string_value(json_object_get(tc, "chat_template")), "<tool_call>");
    json_decref(tc);
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *cj = json_load_file(path, 0, NULL);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(cj, "torch_dtype")), "float32");
    json_decref(cj);
    /* float32 weights: the same bytes as the checkpoint writer's, and they load back exactly */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const char *ck = run_dir("final1-ck");
    CU_ASSERT_EQUAL_FATAL(kd_model_save(a, ck, &err), KD_OK);
    char p2[2048], *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    snprintf(p2, sizeof p2, "%s/model.safetensors", ck);
    CU_ASSERT_EQUAL_FATAL(kd_read_file(path, &x, &nx, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_read_file(p2, &y, &ny, &err), KD_OK);
    CU_ASSERT_TRUE(nx == ny && memcmp(x, y, nx) == 0);
    free(x);
    free(y);
    CU_ASSERT_EQUAL_FATAL(kd_model_load_weights_dir(b, dir, &err), KD_OK);
    CU_ASSERT_EQUAL(memcmp(a->params, b->params, a->n_params * 4), 0);
    /* a bad option names the key */
    CU_ASSERT_NOT_EQUAL(kd_final_options_parse("fp8", "5GB", &fo, &err), KD_OK);
    KD_ASSERT_CONTAINS(err.msg, "train.save_dtype");
    CU_ASSERT_NOT_EQUAL(kd_final_options_parse("float32", "lots", &fo, &err), KD_OK);
    KD_ASSERT_CONTAINS(err.msg, "train.max_shard_size");
    kd_model_free(a);
    kd_model_free(b);
}

/* bf16 / f16 saves reload to exactly the fp32 weights rounded to nearest even. */
static void test_final_dtypes(void) {
    kd_error err = {0};
    kd_model *a = tiny_for_tokenizer(7), *b = tiny_for_tokenizer(8);
    /* values that exercise the rounding: ties to even, carries into the exponent, subnormals (the
     * loader refuses non-finite weights, so values that overflow are checked on the converters) */
    float special[] = {1.00390625f, 1.01171875f, 1.0f + 1.0f / 512, 65519.0f, 65504.0f, 5.9604645e-08f, 2.9802322e-08f, -0.0f};
    memcpy(a->params, special, sizeof special);
    CU_ASSERT_EQUAL(kd_f32_to_f16(65520.0f), 0x7c00);      /* rounds to infinity */
    CU_ASSERT_EQUAL(kd_f32_to_f16(65519.0f), 0x7bff);      /* the largest half */
    CU_ASSERT_EQUAL(kd_f32_to_bf16(3.4028235e38f), 0x7f80); /* FLT_MAX rounds up to infinity in bf16 */
    CU_ASSERT_EQUAL(kd_f32_to_bf16(1.00390625f), 0x3f80);  /* a tie goes to even */
    CU_ASSERT_EQUAL(kd_f32_to_bf16(1.01171875f), 0x3f82);  /* a tie goes to even (up) */
    CU_ASSERT_EQUAL(kd_f32_to_f16(2.9802322e-08f), 0x0000); /* half the smallest subnormal: to even (0) */
    struct { const char *name; int dt; } cases[] = {{"bfloat16", KD_ST_BF16}, {"float16", KD_ST_F16}};
    for (int k = 0; k < 2; k++) {
        char dir[2048], path[2048];
        snprintf(dir, sizeof dir, "%s-%s", run_dir("final-dt"), cases[k].name);
        kd_final_options fo;
        CU_ASSERT_EQUAL_FATAL(kd_final_options_parse(cases[k].name, "5GB", &fo, &err), KD_OK);
        CU_ASSERT_EQUAL_FATAL(kd_checkpoint_write_final(dir, a, fx_tokenizer_json(), &fo, &err), KD_OK);
        snprintf(path, sizeof path, "%s/config.json", dir);
        json_t *cj = json_load_file(path, 0, NULL);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(cj, "torch_dtype")), cases[k].name);
        json_decref(cj);
        CU_ASSERT_EQUAL_FATAL(kd_model_load_weights_dir(b, dir, &err), KD_OK);
        size_t bad = 0;
        for (size_t i = 0; i < a->n_params; i++) {
            float want;
            uint32_t bits;
            if (cases[k].dt == KD_ST_BF16) {
                /* the rounding by integer arithmetic on the bits (RNE), as torch's .to(torch.bfloat16) */
                memcpy(&bits, &a->params[i], 4);
                bits = ((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16) << 16;
                memcpy(&want, &bits, 4);
            } else {
#ifdef __FLT16_MAX__
                want = (float)(_Float16)a->params[i]; /* the compiler's own RNE conversion */
#else
                want = b->params[i]; /* no _Float16 in this compiler (clang 14 on x86): gcc's build checks f16 */
#endif
            }
            if (memcmp(&want, &b->params[i], 4) != 0) bad++;
        }
        if (bad) fprintf(stderr, "\n  %s: %zu weights differ from the rounded fp32\n", cases[k].name, bad);
        CU_ASSERT_EQUAL(bad, 0);
        /* and the file is half the size */
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        kd_safetensors *st = NULL;
        CU_ASSERT_EQUAL_FATAL(kd_safetensors_open(&st, path, &err), KD_OK);
        CU_ASSERT_EQUAL(st->tensors[0].dtype, cases[k].dt);
        kd_safetensors_close(st);
    }
    kd_model_free(a);
    kd_model_free(b);
}

/* Above max_shard_size: three shard files + an index, and they load to the same weights as the
 * single file; a damaged index is a clear error. */
static void test_final_sharded(void) {
    kd_error err = {0};
    kd_model *a = tiny_for_tokenizer(9), *b = tiny_for_tokenizer(10), *c = tiny_for_tokenizer(11);
    size_t total = a->n_params * 4;
    char size[64];
    snprintf(size, sizeof size, "%zu", total / 3 + total / 20); /* a little over a third: three shards */
    kd_final_options fo;
    CU_ASSERT_EQUAL_FATAL(kd_final_options_parse("float32", size, &fo, &err), KD_OK);
    const char *dir = run_dir("final-sharded"), *one = run_dir("final-one");
    CU_ASSERT_EQUAL_FATAL(kd_checkpoint_write_final(dir, a, fx_tokenizer_json(), &fo, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_final_options_parse("float32", "5GB", &fo, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_checkpoint_write_final(one, a, fx_tokenizer_json(), &fo, &err), KD_OK);
    char names[1024];
    list_dir(dir, names, sizeof names);
    CU_ASSERT_STRING_EQUAL(names, "config.json generation_config.json model-00001-of-00003.safetensors "
                                  "model-00002-of-00003.safetensors model-00003-of-00003.safetensors "
                                  "model.safetensors.index.json tokenizer.json tokenizer_config.json");
    CU_ASSERT_EQUAL_FATAL(kd_model_load_weights_dir(b, dir, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_model_load_weights_dir(c, one, &err), KD_OK);
    CU_ASSERT_EQUAL(memcmp(b->params, c->params, a->n_params * 4), 0);
    CU_ASSERT_EQUAL(memcmp(a->params, b->params, a->n_params * 4), 0);
    kd_model *o = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_model_open_dir(&o, dir, 1, 4, 1, &err), KD_OK);
    CU_ASSERT_EQUAL(memcmp(a->params, o->params, a->n_params * 4), 0);
    kd_model_free(o);
    /* the index's total_size is the sum of the tensors' bytes */
    char path[2048];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    json_t *ix = json_load_file(path, 0, NULL);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(ix, "metadata"), "total_size")), (json_int_t)total);
    json_decref(ix);
    /* a shard that escapes the folder, and a tensor missing from the map */
    char bad[2048];
    snprintf(bad, sizeof bad, "%s/bad-index", kd_test_tmpdir());
    kd_mkdir_p(bad, &err);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", bad);
    const char *esc = "{\"weight_map\": {\"model.norm.weight\": \"../model-00001-of-00003.safetensors\"}}";
    CU_ASSERT_EQUAL_FATAL(kd_write_file_atomic(path, esc, strlen(esc), &err), KD_OK);
    CU_ASSERT_NOT_EQUAL(kd_model_load_weights_dir(b, bad, &err), KD_OK);
    KD_ASSERT_CONTAINS(err.msg, "file name in the same folder");
    const char *part = "{\"weight_map\": {\"model.norm.weight\": \"x.safetensors\"}}";
    CU_ASSERT_EQUAL_FATAL(kd_write_file_atomic(path, part, strlen(part), &err), KD_OK);
    CU_ASSERT_NOT_EQUAL(kd_model_load_weights_dir(b, bad, &err), KD_OK);
    KD_ASSERT_CONTAINS(err.msg, "weight_map has no tensor 'model.embed_tokens.weight'");
    kd_model_free(a);
    kd_model_free(b);
    kd_model_free(c);
}

static void test_byte_sizes(void) {
    CU_ASSERT_EQUAL(kd_parse_byte_size("5GB"), 5000000000LL);
    CU_ASSERT_EQUAL(kd_parse_byte_size("2GiB"), 2147483648LL);
    CU_ASSERT_EQUAL(kd_parse_byte_size("500MB"), 500000000LL);
    CU_ASSERT_EQUAL(kd_parse_byte_size("0"), 0);
    CU_ASSERT_EQUAL(kd_parse_byte_size("12 KB"), 12000);
    CU_ASSERT_EQUAL(kd_parse_byte_size("five"), -1);
    CU_ASSERT_EQUAL(kd_parse_byte_size("5XB"), -1);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("checkpoint", NULL, NULL);
    CU_add_test(s, "roundtrip", test_roundtrip);
    CU_add_test(s, "final_folder", test_final_folder);
    CU_add_test(s, "final_bf16_f16", test_final_dtypes);
    CU_add_test(s, "final_sharded", test_final_sharded);
    CU_add_test(s, "byte_sizes", test_byte_sizes);
    CU_add_test(s, "shape_mismatch", test_shape_mismatch);
    CU_add_test(s, "latest_errors", test_latest_errors);
    CU_add_test(s, "layer_hook", test_layer_hook);
    return kd_test_main();
}
