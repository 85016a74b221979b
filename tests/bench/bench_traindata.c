/* A training dataset for the trainer's tests and benchmark, made the way the generation job makes one
 * but in one process: N synthesized prompts (kd_synth_record over the registry) answered by the stub
 * teacher, rendered in the student's chat template, tokenized, with aligned span masks
 * (kd_targets_*) and the stub's teacher-forced top-k for every token, written with kd_shard_* and
 * finalized. The tools block is left out of the rendered system turn (it is thousands of tokens for
 * the shipped registry), so samples are ~100 tokens and CPU tests stay fast.
 *
 *   bench_traindata TOKENIZER_DIR TOOLS_JSON N OUT_DIR [K] [--no-json-mask]
 *
 * --no-json-mask writes samples without json/tool-name masks (and process_supervision 0), to
 * exercise the trainer's seed fallback (spans extracted from the text).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/chat.h"
#include "kdstep/config.h"
#include "kdstep/hash.h"
#define kd_tool_call kd_teacher_tool_call
#include "kdstep/teacher.h"
#undef kd_tool_call
#include "kdstep/h5data.h"
#include "kdstep/registry.h"
#include "kdstep/synth.h"
#include "kdstep/targets.h"
#include "kdstep/tokenizer.h"

static int die(const char *what, const kd_error *e) {
    fprintf(stderr, "bench_traindata: %s: %s\n", what, e ? e->msg : "");
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: bench_traindata TOKENIZER_DIR TOOLS_JSON N OUT_DIR [K] [--no-json-mask]\n");
        return 2;
    }
    const char *tokdir = argv[1], *tools_path = argv[2], *out = argv[4];
    int64_t N = atoll(argv[3]);
    int K = argc > 5 && argv[5][0] != '-' ? atoi(argv[5]) : 8;
    int no_json = argc > 5 && strcmp(argv[argc - 1], "--no-json-mask") == 0;
    kd_error err = {0};
    kd_tokenizer *tok = NULL;
    kd_registry *reg = NULL;
    kd_stub_teacher *stub = NULL;
    if (kd_tokenizer_open(&tok, tokdir, &err)) return die("tokenizer", &err);
    if (kd_registry_open(&reg, &err) || kd_registry_load_file(reg, tools_path, &err)) return die("registry", &err);
    kd_stub_options so = {KD_TOOL_FORMAT_HERMES, 0.0, 1.0, 0, 0};
    if (kd_stub_open(&stub, &so, reg, tok, &err)) return die("stub", &err);
    json_t *tools = kd_registry_to_openai(reg);
    kd_dataset_info info;
    kd_dataset_info_init(&info);
    info.topk = K;
    info.process_supervision = !no_json;
    snprintf(info.tokenizer_sha256, sizeof info.tokenizer_sha256, "%s", kd_tokenizer_sha256(tok));
    kd_sha256_hex(tools_path, strlen(tools_path), info.registry_sha256);
    kd_sha256_hex("bench_traindata", 15, info.config_sha256);
    if (kd_dataset_prepare(out, &info, &err)) return die("prepare", &err);
    kd_shard *sh = NULL;
    if (kd_shard_open(&sh, out, 0, &info, 64, &err)) return die("shard", &err);
    kd_encoding enc = {0};
    int64_t written = 0, tokens = 0;
    for (int64_t i = 0; i < N; i++) {
        json_t *rec = NULL;
        if (kd_synth_record(reg, 1, i, &rec, &err)) return die("synth", &err);
        const char *prompt = json_string_value(json_object_get(rec, "prompt"));
        json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", prompt);
        kd_teacher_completion c;
        memset(&c, 0, sizeof c);
        if (kd_stub_complete(stub, msgs, tools, 0, 7, &c, &err)) return die("stub complete", &err);
        kd_chat_message cm[2] = {{"user", prompt, NULL}, {"assistant", c.text, NULL}};
        kd_chat_result r;
        memset(&r, 0, sizeof r);
        if (kd_chat_render(cm, 2, NULL, 0, &r, &err)) return die("render", &err);
        size_t rs = r.content_spans[1].start, re = r.message_spans[1].end;
        if (re > rs && r.text[re - 1] == '\n') re--; /* the response ends with <|im_end|> */
        if (kd_tokenizer_encode(tok, r.text, r.len, 0, &enc, &err)) return die("encode", &err);
        kd_target_spans sp;
        memset(&sp, 0, sizeof sp);
        kd_text_span as = {rs, r.content_spans[1].end};
        if (kd_targets_spans_for_conversation(r.text, r.len, &as, 1, NULL, 0, reg, &sp, &err)) return die("spans", &err);
        sp.response.count = 0; /* response = content + <|im_end|> */
        kd_spans_push(&sp.response, rs, re);
        kd_targets tg;
        memset(&tg, 0, sizeof tg);
        if (kd_targets_build((const int32_t(*)[2])enc.offsets, enc.count, r.len, &sp, !no_json, &tg, &err))
            return die("targets", &err);
        kd_teacher_logprobs lp;
        memset(&lp, 0, sizeof lp);
        if (kd_stub_score(stub, r.text, r.len, tools, K, 7, &lp, &err)) return die("score", &err);
        if ((size_t)lp.n != enc.count || lp.k != K) {
            fprintf(stderr, "bench_traindata: stub scored %d tokens (k %d), the tokenizer gave %zu\n", lp.n, lp.k, enc.count);
            return 1;
        }
        int64_t plen = 0;
        while ((size_t)plen < enc.count && (size_t)enc.offsets[plen][1] <= rs) plen++;
        kd_sample s;
        memset(&s, 0, sizeof s);
        s.prompt_id = i;
        s.prompt_len = plen;
        s.n = (int64_t)enc.count;
        s.input_ids = enc.ids;
        s.loss_mask = tg.loss_mask;
        s.tool_name_mask = tg.tool_name_mask;
        s.json_mask = tg.json_mask;
        s.integration_mask = tg.integration_mask;
        s.topk_ids = lp.topk_ids;
        s.topk_logprobs = lp.topk_logprobs;
        s.tail_logprob = lp.tail_logprob;
        s.prompt_key = json_string_value(json_object_get(rec, "id"));
        s.prompt_text = prompt;
        s.teacher_text = c.text;
        if (kd_shard_append(sh, &s, &err)) return die("append", &err);
        written++;
        tokens += s.n;
        kd_teacher_logprobs_free(&lp);
        kd_targets_free(&tg);
        kd_target_spans_free(&sp);
        kd_chat_render_free(&r);
        kd_teacher_completion_free(&c);
        json_decref(msgs);
        json_decref(rec);
    }
    if (kd_shard_close(sh, &err)) return die("close", &err);
    int64_t total = 0;
    if (kd_dataset_finalize(out, &total, &err)) return die("finalize", &err);
    printf("{\"samples\": %lld, \"tokens\": %lld}\n", (long long)total, (long long)tokens);
    kd_encoding_free(&enc);
    json_decref(tools);
    kd_stub_close(stub);
    kd_registry_close(reg);
    kd_tokenizer_close(tok);
    return 0;
}
