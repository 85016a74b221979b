/* A student checkpoint answering prompts: see include/kdstep/student.h. */
#include "kdstep/student.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/chat.h"
#include "kdstep/fsutil.h"

static const char *const CHECKPOINT_FILES[] = {"config.json", "model.safetensors", "tokenizer.json"};

int kd_student_open(const char *dir, kd_student **out, kd_error *err) {
    *out = NULL;
    if (!kd_is_dir(dir))
        return kd_error_set(err, KD_ERR_NOTFOUND,
                            "checkpoint %s is not a folder (give the folder the trainer wrote, holding config.json, "
                            "model.safetensors and tokenizer.json)",
                            dir);
    char path[4096];
    for (size_t i = 0; i < sizeof CHECKPOINT_FILES / sizeof *CHECKPOINT_FILES; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, CHECKPOINT_FILES[i]);
        if (!kd_path_exists(path))
            return kd_error_set(err, KD_ERR_NOTFOUND,
                                "checkpoint %s has no %s (a student checkpoint holds config.json, model.safetensors "
                                "and tokenizer.json; copy the tokenizer the student was trained with next to the weights)",
                                dir, CHECKPOINT_FILES[i]);
    }
    kd_student *s = kd_calloc(1, sizeof *s);
    if (!s) return kd_error_set(err, KD_ERR_NOMEM, "out of memory opening %s", dir);
    int rc = kd_tokenizer_open(&s->tok, path, err);
    if (rc) {
        kd_error_prefix(err, "checkpoint %s: ", dir);
        goto fail;
    }
    /* decode-only: activations for one token are all the batched forward needs to exist */
    if ((rc = kd_model_open_dir(dir, 1, 1, 1, &s->model, err))) {
        kd_error_prefix(err, "checkpoint %s: ", dir);
        goto fail;
    }
    int V = s->model->cfg.vocab_size, tv = kd_tokenizer_vocab_size(s->tok);
    if (tv > V) {
        rc = kd_error_set(err, KD_ERR_INVALID,
                          "checkpoint %s: tokenizer.json has %d ids but the model's vocab_size is %d (config.json); "
                          "the tokenizer is not the one this model was trained with",
                          dir, tv, V);
        goto fail;
    }
    s->decodable = kd_calloc((size_t)V, 1);
    s->logits = kd_calloc((size_t)V, sizeof(float));
    if (!s->decodable || !s->logits) {
        rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory opening %s", dir);
        goto fail;
    }
    for (int32_t i = 0; i < tv; i++) {
        const char *b;
        size_t n;
        s->decodable[i] = kd_tokenizer_token_bytes(s->tok, i, &b, &n) == 0;
    }
    static const char *const STOPS[] = {"<|im_end|>", "<|endoftext|>"};
    for (int i = 0; i < 2; i++) {
        int32_t id = kd_tokenizer_token_to_id(s->tok, STOPS[i]);
        if (id >= 0) s->stop[s->n_stop++] = id;
    }
    if (s->n_stop == 0) {
        rc = kd_error_set(err, KD_ERR_INVALID,
                          "checkpoint %s: tokenizer.json has neither <|im_end|> nor <|endoftext|>, so answers cannot "
                          "end (the student needs a tokenizer with the chat template's special tokens)",
                          dir);
        goto fail;
    }
    *out = s;
    return KD_OK;
fail:
    kd_student_close(s);
    return rc;
}

void kd_student_close(kd_student *s) {
    if (!s) return;
    kd_model_free(s->model);
    kd_tokenizer_close(s->tok);
    kd_kv_cache_free(s->cache);
    kd_encoding_free(&s->enc);
    free(s->cached);
    free(s->decodable);
    free(s->logits);
    free(s);
}

void kd_student_reset(kd_student *s) {
    if (s->cache) kd_kv_cache_reset(s->cache);
}

/* A cache holding at least `need` positions; the cached prefix survives only when the cache does. */
static int ensure_cache(kd_student *s, int need, kd_error *err) {
    if (s->cache && s->cache->max_T >= need) return KD_OK;
    int cap = s->cache ? s->cache->max_T * 2 : 1024;
    if (cap < need) cap = need;
    if (cap > s->model->cfg.max_position_embeddings) cap = s->model->cfg.max_position_embeddings;
    kd_kv_cache_free(s->cache);
    s->cache = NULL;
    free(s->cached);
    s->cached = kd_calloc((size_t)cap, sizeof(int32_t));
    if (!s->cached) return kd_error_set(err, KD_ERR_NOMEM, "out of memory for a %d-token cache", cap);
    return kd_kv_cache_new(s->model, cap, &s->cache, err);
}

static int feed(kd_student *s, int32_t tok, kd_error *err) {
    kd_kv_cache *c = s->cache;
    int pos = c->pos;
    if (!kd_model_decode_step(s->model, c, tok))
        return kd_error_set(err, KD_ERR_INVALID, "decode: token %d at position %d does not fit (cache %d, vocab %d)", tok,
                            pos, c->max_T, s->model->cfg.vocab_size);
    s->cached[pos] = tok;
    return KD_OK;
}

int kd_student_generate(kd_student *s, const int32_t *prompt, int n_prompt, int max_new, kd_sampler *sampler,
                        int32_t *out, int *n_out, kd_student_stats *st, kd_error *err) {
    memset(st, 0, sizeof *st);
    *n_out = 0;
    st->prompt_tokens = n_prompt;
    int maxpos = s->model->cfg.max_position_embeddings, V = s->model->cfg.vocab_size;
    if (n_prompt <= 0) return kd_error_set(err, KD_ERR_INVALID, "decode: empty prompt");
    if (n_prompt >= maxpos) {
        st->truncated = 1;
        return KD_OK;
    }
    if (max_new > maxpos - n_prompt) max_new = maxpos - n_prompt;
    /* the last generated token is never fed, so n_prompt + max_new - 1 positions suffice */
    int rc = ensure_cache(s, n_prompt + max_new, err);
    if (rc) return rc;
    kd_kv_cache *c = s->cache;
    int keep = 0;
    while (keep < c->pos && keep < n_prompt && s->cached[keep] == prompt[keep]) keep++;
    if (keep == n_prompt) keep--; /* the last prompt token is fed again for its logits */
    c->pos = keep;
    st->reused_tokens = keep;
    for (int i = keep; i < n_prompt; i++)
        if ((rc = feed(s, prompt[i], err))) return rc;
    int n = 0;
    while (n < max_new) {
        for (int i = 0; i < V; i++) s->logits[i] = s->decodable[i] ? c->logits[i] : -INFINITY;
        int32_t tok = kd_sampler_next(sampler, s->logits, V);
        out[n++] = tok;
        int stop = 0;
        for (int j = 0; j < s->n_stop; j++) stop |= tok == s->stop[j];
        if (stop) {
            st->stopped = 1;
            break;
        }
        if (n == max_new || c->pos >= c->max_T) break;
        if ((rc = feed(s, tok, err))) return rc;
    }
    st->new_tokens = n;
    *n_out = n;
    return KD_OK;
}

int kd_student_render_prompt(const json_t *messages, const json_t *tools, char **text, size_t *len, kd_error *err) {
    kd_chat_options o = {.add_generation_prompt = 1};
    kd_chat_result r;
    int rc = kd_chat_render_json(messages, tools && json_array_size(tools) > 0 ? tools : NULL, &o, &r, err);
    if (rc) return rc;
    *text = r.text;
    *len = r.len;
    r.text = NULL;
    kd_chat_render_free(&r);
    return KD_OK;
}

int kd_student_answer(kd_student *s, const json_t *messages, const json_t *tools, int max_new, kd_sampler *sampler,
                      char **text, kd_student_stats *st, kd_error *err) {
    *text = NULL;
    memset(st, 0, sizeof *st);
    char *prompt = NULL;
    size_t plen = 0;
    int rc = kd_student_render_prompt(messages, tools, &prompt, &plen, err);
    if (rc) return rc;
    rc = kd_tokenizer_encode(s->tok, prompt, plen, 0, &s->enc, err);
    free(prompt);
    if (rc) return rc;
    if (max_new < 1) max_new = 1;
    int32_t *ids = kd_calloc((size_t)max_new, sizeof(int32_t));
    if (!ids) return kd_error_set(err, KD_ERR_NOMEM, "out of memory for %d new tokens", max_new);
    int n = 0;
    /* A student trained on windows of train.seq_len tokens (the trainer keeps each sample's last
     * tokens) sees its prompts the same way: only their last max_prompt_tokens. */
    size_t skip = (s->max_prompt_tokens > 0 && s->enc.count > (size_t)s->max_prompt_tokens)
                      ? s->enc.count - (size_t)s->max_prompt_tokens : 0;
    rc = kd_student_generate(s, s->enc.ids + skip, (int)(s->enc.count - skip), max_new, sampler, ids, &n, st, err);
    if (rc == KD_OK) {
        if (st->stopped) n--; /* the stop token is the end of the turn, not part of the answer */
        size_t len;
        rc = kd_tokenizer_decode(s->tok, ids, (size_t)n, 0, text, &len, err);
    }
    free(ids);
    return rc;
}
