/* Test helper: a small student checkpoint made in-process (a BPE trained on the synthetic tool-use
 * corpus over three tools of configs/tools.json, the tiny preset sized to it, random weights), and a
 * three-tool registry file. Shared by test_student.c, test_evaluate.c and test_evaluate_dataset.c
 * (which defines KD_FIXTURE_NO_MODEL: it needs no checkpoint). */
#ifndef KD_STUDENT_FIXTURE_H
#define KD_STUDENT_FIXTURE_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/bpe_train.h"
#include "kdstep/fsutil.h"
#include "kdstep/registry.h"
#include "kdstep/synth.h"
#include "kdstep/tokenizer.h"
#include "kdstep/tokenizer_corpus.h"
#include "testutil.h"

/* configs/tools.json's first three tools, written to the temp dir once. */
static inline const char *fx_tools_path(void) {
    static char path[4096];
    if (path[0]) return path;
    json_t *all = json_load_file(kd_test_src("configs/tools.json"), 0, NULL);
    if (!all) abort();
    json_t *three = json_array();
    for (size_t i = 0; i < 3; i++) json_array_append(three, json_array_get(all, i));
    snprintf(path, sizeof path, "%s/tools3.json", kd_test_tmpdir());
    if (json_dump_file(three, path, 0)) abort();
    json_decref(three);
    json_decref(all);
    return path;
}

/* A tokenizer folder trained once per process. */
static inline const char *fx_tokenizer_dir(void) {
    static char dir[4096];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s/tok", kd_test_tmpdir());
    json_t *tools = json_load_file(fx_tools_path(), 0, NULL);
    char *corpus = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&corpus, &len);
    kd_error err;
    if (!f || kd_tokenizer_corpus_write(f, tools, 300000, 7, &err)) abort();
    fclose(f);
    json_decref(tools);
    kd_bpe_trainer *t = NULL;
    kd_bpe_train_options o = {.vocab_size = 700};
    if (kd_bpe_trainer_new(&t, &o, &err) || kd_bpe_trainer_add_text(t, corpus, len, &err) ||
        kd_bpe_trainer_train(t, &err) || kd_bpe_trainer_save(t, dir, &err)) {
        fprintf(stderr, "fixture tokenizer: %s\n", err.msg);
        abort();
    }
    kd_bpe_trainer_free(t);
    free(corpus);
    return dir;
}

static inline int fx_tokenizer_ids(void) {
    kd_tokenizer *tok = NULL;
    if (kd_tokenizer_open(&tok, fx_tokenizer_dir(), NULL)) abort();
    int n = kd_tokenizer_vocab_size(tok);
    kd_tokenizer_close(tok);
    return n;
}

static inline void fx_copy(const char *from, const char *to) {
    char *data = NULL;
    size_t len = 0;
    if (kd_read_file(from, &data, &len, NULL) || kd_write_file_atomic(to, data, len, NULL)) abort();
    free(data);
}

/* n synthesized prompts over the three fixture tools (seed 9), written to the temp dir. */
static inline const char *prompts_file(const char *name, int n) {
    static char bufs[4][4096];
    static int k;
    char *p = bufs[k++ & 3];
    snprintf(p, 4096, "%s/%s", kd_test_tmpdir(), name);
    kd_registry *reg = NULL;
    kd_error err;
    if (kd_registry_open(&reg, &err) || kd_registry_load_file(reg, fx_tools_path(), &err)) abort();
    FILE *f = fopen(p, "w");
    if (!f || kd_synth_write(reg, 9, n, f, &err)) abort();
    fclose(f);
    kd_registry_close(reg);
    return p;
}

/* A path in the temp dir. */
static inline const char *out_dir(const char *name) {
    static char bufs[4][4096];
    static int k;
    char *p = bufs[k++ & 3];
    snprintf(p, 4096, "%s/%s", kd_test_tmpdir(), name);
    return p;
}

#ifndef KD_FIXTURE_NO_MODEL /* suites that need no checkpoint leave the model out */
#include "kdstep/model.h"

/* A checkpoint folder `name` under the temp dir: vocab = tokenizer ids + extra_vocab; which files
 * to write is a mask (1 config.json, 2 model.safetensors, 4 tokenizer.json). */
static const char *fx_checkpoint(const char *name, int extra_vocab, uint64_t seed, int files) {
    static char bufs[4][4096];
    static int k;
    char *dir = bufs[k++ & 3];
    snprintf(dir, 4096, "%s/%s", kd_test_tmpdir(), name);
    kd_model_config cfg;
    kd_error err;
    if (kd_model_config_preset(kd_test_src("configs/models/tiny.json"), &cfg, &err)) abort();
    cfg.vocab_size = fx_tokenizer_ids() + extra_vocab;
    cfg.initializer_range = 0.3f; /* peaked logits: greedy choices are far from ties */
    kd_model *m = NULL;
    if (kd_model_new(&m, &cfg, 1, 1, &err)) abort();
    kd_model_init_random(m, seed);
    if (kd_model_save(m, dir, &err)) abort();
    kd_model_free(m);
    char p[4200], q[4200];
    if (files & 4) {
        snprintf(p, sizeof p, "%s/tokenizer.json", fx_tokenizer_dir());
        snprintf(q, sizeof q, "%s/tokenizer.json", dir);
        fx_copy(p, q);
    }
    if (!(files & 1)) {
        snprintf(q, sizeof q, "%s/config.json", dir);
        remove(q);
    }
    if (!(files & 2)) {
        snprintf(q, sizeof q, "%s/model.safetensors", dir);
        remove(q);
    }
    return dir;
}
#endif

#endif
