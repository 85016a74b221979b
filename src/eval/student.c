/* A student checkpoint answering prompts: see include/kdstep/student.h. */
#include "kdstep/student.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/chat.h"
#include "kdstep/fsutil.h"

static const char *const CHECKPOINT_FILES[] = {"config.json", "tokenizer.json"};

int kd_student_open(kd_student **out, const char *dir, kd_error *err) {
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
    char wpath[4096];
    snprintf(wpath, sizeof wpath, "%s/model.safetensors", dir);
    if (!kd_path_exists(wpath)) snprintf(wpath, sizeof wpath, "%s/model.safetensors.index.json", dir);
    if (!kd_path_exists(wpath))
        return kd_error_set(err, KD_ERR_NOTFOUND,
                            "checkpoint %s has no model.safetensors (nor a sharded model.safetensors.index.json): give "
                            "the folder the trainer wrote, holding config.json, the weights and tokenizer.json",
                            dir);
    kd_student *s = kd_calloc(1, sizeof *s);
    if (!s) return kd_error_set(err, KD_ERR_NOMEM, "out of memory opening %s", dir);
    int rc = kd_tokenizer_open(&s->tok, path, err);
    if (rc) {
        kd_error_prefix(err, "checkpoint %s: ", dir);
        goto fail;
    }
    /* decode-only: activations for one token are all the batched forward needs to exist */
    if ((rc = kd_model_open_dir(&s->model, dir, 1, 1, 1, err))) {
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
    for (int i = 0; i < s->n_slots; i++) {
        kd_kv_cache_free(s->slot_cache[i]);
        free(s->slot_tokens[i]);
    }
    free(s->slot_cache);
    free(s->slot_tokens);
    kd_batch_scratch_free(s->rows);
    free(s->slot_logits);
    free(s->row_logits);
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
    return kd_kv_cache_new(&s->cache, s->model, cap, err);
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

/* ---- several prompts at once ---- */

#define ROWS_PER_PASS 512 /* prefill rows per forward pass (a long prompt takes several) */

static int ensure_slots(kd_student *s, int n, kd_error *err) {
    if (n <= s->n_slots) return KD_OK;
    size_t V = (size_t)s->model->cfg.vocab_size;
    kd_kv_cache **c = kd_reallocarray(s->slot_cache, (size_t)n, sizeof *c);
    if (c) s->slot_cache = c;
    int32_t **t = kd_reallocarray(s->slot_tokens, (size_t)n, sizeof *t);
    if (t) s->slot_tokens = t;
    float *a = kd_reallocarray(s->slot_logits, (size_t)n * V, sizeof(float));
    if (a) s->slot_logits = a;
    float *b = kd_reallocarray(s->row_logits, (size_t)n * V, sizeof(float));
    if (b) s->row_logits = b;
    if (!c || !t || !a || !b) return kd_error_set(err, KD_ERR_NOMEM, "decode: out of memory for a batch of %d prompts", n);
    for (int i = s->n_slots; i < n; i++) s->slot_cache[i] = NULL, s->slot_tokens[i] = NULL;
    s->n_slots = n;
    kd_batch_scratch_free(s->rows);
    s->rows = NULL;
    int rc = kd_batch_scratch_new(s->model, n > ROWS_PER_PASS ? n : ROWS_PER_PASS, &s->rows, err);
    if (rc) return rc;
    kd_batch_scratch_set_invariant(s->rows, 1);
    return KD_OK;
}

/* Slot i's cache with room for `need` positions (grown as ensure_cache does; a new cache forgets). */
static int ensure_slot_cache(kd_student *s, int i, int need, kd_error *err) {
    kd_kv_cache *c = s->slot_cache[i];
    if (c && c->max_T >= need) return KD_OK;
    int cap = c ? c->max_T * 2 : 1024;
    if (cap < need) cap = need;
    if (cap > s->model->cfg.max_position_embeddings) cap = s->model->cfg.max_position_embeddings;
    kd_kv_cache_free(c);
    s->slot_cache[i] = NULL;
    free(s->slot_tokens[i]);
    s->slot_tokens[i] = kd_calloc((size_t)cap, sizeof(int32_t));
    if (!s->slot_tokens[i]) return kd_error_set(err, KD_ERR_NOMEM, "out of memory for a %d-token cache", cap);
    return kd_kv_cache_new(&s->slot_cache[i], s->model, cap, err);
}

static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb) {
    int k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

/* One forward pass over rows (slot[r], tok[r]); the logits of rows with want[r] land in
 * slot_logits[slot[r]]. */
static int pass_rows(kd_student *s, int n, const int *slot, const int32_t *tok, const int *want, kd_error *err) {
    kd_kv_cache **caches = kd_calloc((size_t)n, sizeof *caches);
    if (!caches) return kd_error_set(err, KD_ERR_NOMEM, "decode: out of memory");
    for (int r = 0; r < n; r++) {
        kd_kv_cache *c = s->slot_cache[slot[r]];
        int p = c->pos;
        for (int q = 0; q < r; q++) p += slot[q] == slot[r];
        if (p < c->max_T) s->slot_tokens[slot[r]][p] = tok[r];
        caches[r] = c;
    }
    int rc = kd_model_step_rows(s->model, s->rows, n, caches, tok, want, s->row_logits, err);
    free(caches);
    if (rc) return rc;
    size_t V = (size_t)s->model->cfg.vocab_size;
    int k = 0;
    for (int r = 0; r < n; r++)
        if (want[r]) memcpy(s->slot_logits + (size_t)slot[r] * V, s->row_logits + (size_t)(k++) * V, V * sizeof(float));
    return KD_OK;
}

/* Prefill jobs[i] for the i with ready[i]: tokens start[i].. of each prompt, in passes of at most
 * the scratch's rows; the last prompt row of each wants logits. */
static int prefill(kd_student *s, kd_student_job *jobs, int n, const int *ready, const int *start, kd_error *err) {
    int cap = ROWS_PER_PASS > s->n_slots ? ROWS_PER_PASS : s->n_slots;
    int *slot = malloc((size_t)cap * sizeof *slot), *want = malloc((size_t)cap * sizeof *want);
    int32_t *tok = malloc((size_t)cap * sizeof *tok);
    int rc = (!slot || !want || !tok) ? kd_error_set(err, KD_ERR_NOMEM, "decode: out of memory") : KD_OK;
    int rows = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (!ready[i]) continue;
        for (int p = start[i]; p < jobs[i].n_prompt && !rc; p++) {
            slot[rows] = i, tok[rows] = jobs[i].prompt[p], want[rows] = p == jobs[i].n_prompt - 1;
            if (++rows == cap) rc = pass_rows(s, rows, slot, tok, want, err), rows = 0;
        }
    }
    if (!rc && rows) rc = pass_rows(s, rows, slot, tok, want, err);
    free(slot);
    free(want);
    free(tok);
    return rc;
}

/* Which cached prefix each job starts from: its slot's own (start = common prefix with the slot's
 * last prompt) or, when longer, an earlier job's of this batch (lead). */
static void plan_prefixes(kd_student *s, kd_student_job *jobs, int n, const int *live, int *start, int *lead) {
    for (int i = 0; i < n; i++) {
        lead[i] = -1;
        start[i] = 0;
        if (!live[i]) continue;
        const kd_kv_cache *c = s->slot_cache[i];
        int limit = jobs[i].n_prompt - 1; /* the last prompt token is fed again for its logits */
        int keep = common_prefix(jobs[i].prompt, limit, s->slot_tokens[i], c->pos);
        for (int j = 0; j < i; j++) {
            if (!live[j]) continue;
            int k = common_prefix(jobs[i].prompt, limit, jobs[j].prompt, jobs[j].n_prompt);
            if (k > keep) keep = k, lead[i] = j;
        }
        start[i] = keep;
    }
}

static int prefill_all(kd_student *s, kd_student_job *jobs, int n, const int *live, kd_error *err) {
    int *start = malloc((size_t)n * sizeof *start), *lead = malloc((size_t)n * sizeof *lead);
    int *done = kd_calloc((size_t)n, sizeof *done), *ready = kd_calloc((size_t)n, sizeof *ready);
    int rc = (!start || !lead || !done || !ready) ? kd_error_set(err, KD_ERR_NOMEM, "decode: out of memory") : KD_OK;
    if (!rc) plan_prefixes(s, jobs, n, live, start, lead);
    /* rounds: a job whose prefix comes from another waits for that one's prefill */
    for (int left = 1; !rc && left;) {
        left = 0;
        int any = 0;
        for (int i = 0; i < n && !rc; i++) {
            ready[i] = live[i] && !done[i] && (lead[i] < 0 || done[lead[i]]);
            if (!ready[i]) continue;
            any = 1;
            if (lead[i] >= 0) rc = kd_kv_cache_copy_prefix(s->model, s->slot_cache[i], s->slot_cache[lead[i]], start[i], err);
            else s->slot_cache[i]->pos = start[i];
            if (!rc && lead[i] >= 0) memcpy(s->slot_tokens[i], jobs[i].prompt, (size_t)start[i] * sizeof(int32_t));
            jobs[i].st.reused_tokens = start[i];
        }
        if (!rc && any) rc = prefill(s, jobs, n, ready, start, err);
        for (int i = 0; i < n; i++) {
            done[i] |= ready[i];
            left |= live[i] && !done[i];
        }
    }
    free(start);
    free(lead);
    free(done);
    free(ready);
    return rc;
}

/* One sampled token per unfinished job; 1 when the job goes on (its token must be fed). */
static int sample_next(kd_student *s, kd_student_job *jb, int i, int max_new) {
    int V = s->model->cfg.vocab_size;
    const float *lg = s->slot_logits + (size_t)i * V;
    for (int k = 0; k < V; k++) s->logits[k] = s->decodable[k] ? lg[k] : -INFINITY;
    if (jb->guide) kd_tool_guide_mask(jb->guide, s->logits, V);
    int32_t tok = kd_sampler_next(jb->sampler, s->logits, V);
    if (jb->guide) kd_tool_guide_push(jb->guide, tok);
    jb->out[jb->n_out++] = tok;
    for (int j = 0; j < s->n_stop; j++)
        if (tok == s->stop[j]) {
            jb->st.stopped = 1;
            return 0;
        }
    const kd_kv_cache *c = s->slot_cache[i];
    return !(jb->n_out == max_new || c->pos >= c->max_T);
}

int kd_student_generate_batch(kd_student *s, kd_student_job *jobs, int n, kd_error *err) {
    int maxpos = s->model->cfg.max_position_embeddings;
    int rc = n > 0 ? ensure_slots(s, n, err) : KD_OK;
    int *live = kd_calloc((size_t)(n > 0 ? n : 1), sizeof *live), *maxn = kd_calloc((size_t)(n > 0 ? n : 1), sizeof *maxn);
    int *slot = kd_calloc((size_t)(n > 0 ? n : 1), sizeof *slot), *want = kd_calloc((size_t)(n > 0 ? n : 1), sizeof *want);
    int32_t *tok = kd_calloc((size_t)(n > 0 ? n : 1), sizeof *tok);
    if (!rc && (!live || !maxn || !slot || !want || !tok)) rc = kd_error_set(err, KD_ERR_NOMEM, "decode: out of memory");
    for (int i = 0; i < n && !rc; i++) {
        kd_student_job *jb = &jobs[i];
        memset(&jb->st, 0, sizeof jb->st);
        jb->n_out = 0;
        jb->st.prompt_tokens = jb->n_prompt;
        if (jb->n_prompt <= 0) rc = kd_error_set(err, KD_ERR_INVALID, "decode: empty prompt (batch job %d)", i);
        else if (jb->n_prompt >= maxpos) jb->st.truncated = 1;
        else {
            maxn[i] = jb->max_new > maxpos - jb->n_prompt ? maxpos - jb->n_prompt : jb->max_new;
            live[i] = maxn[i] > 0;
            if (live[i]) rc = ensure_slot_cache(s, i, jb->n_prompt + maxn[i], err);
        }
    }
    if (!rc) rc = prefill_all(s, jobs, n, live, err);
    while (!rc) {
        int rows = 0;
        for (int i = 0; i < n; i++) {
            if (!live[i]) continue;
            live[i] = sample_next(s, &jobs[i], i, maxn[i]);
            if (live[i]) slot[rows] = i, tok[rows] = jobs[i].out[jobs[i].n_out - 1], want[rows] = 1, rows++;
        }
        if (!rows) break;
        rc = pass_rows(s, rows, slot, tok, want, err);
    }
    for (int i = 0; i < n; i++) jobs[i].st.new_tokens = jobs[i].n_out;
    free(live);
    free(maxn);
    free(slot);
    free(want);
    free(tok);
    return rc;
}

int kd_student_prompt_ids(kd_student *s, const json_t *messages, const json_t *tools, int32_t **ids, int *n, int *cut,
                          kd_error *err) {
    *ids = NULL;
    *n = *cut = 0;
    char *prompt = NULL;
    size_t plen = 0;
    int rc = kd_student_render_prompt(messages, tools, &prompt, &plen, err);
    if (rc) return rc;
    rc = kd_tokenizer_encode(s->tok, prompt, plen, 0, &s->enc, err);
    free(prompt);
    if (rc) return rc;
    /* A student trained on windows of train.seq_len tokens (the trainer keeps each sample's last
     * tokens) sees its prompts the same way: only their last max_prompt_tokens. */
    size_t skip = (s->max_prompt_tokens > 0 && s->enc.count > (size_t)s->max_prompt_tokens)
                      ? s->enc.count - (size_t)s->max_prompt_tokens : 0;
    size_t count = s->enc.count - skip;
    *ids = kd_calloc(count ? count : 1, sizeof(int32_t));
    if (!*ids) return kd_error_set(err, KD_ERR_NOMEM, "out of memory for a %zu-token prompt", count);
    memcpy(*ids, s->enc.ids + skip, count * sizeof(int32_t));
    *n = (int)count;
    *cut = (int)skip;
    return KD_OK;
}

int kd_student_answer_text(kd_student *s, const int32_t *ids, int n, int stopped, char **text, kd_error *err) {
    size_t len;
    if (stopped && n > 0) n--; /* the stop token is the end of the turn, not part of the answer */
    return kd_tokenizer_decode(s->tok, ids, (size_t)n, 0, text, &len, err);
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
    int32_t *prompt = NULL;
    int np = 0, cut = 0;
    int rc = kd_student_prompt_ids(s, messages, tools, &prompt, &np, &cut, err);
    if (rc) return rc;
    if (max_new < 1) max_new = 1;
    int32_t *ids = kd_calloc((size_t)max_new, sizeof(int32_t));
    if (!ids) {
        free(prompt);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory for %d new tokens", max_new);
    }
    int n = 0;
    rc = kd_student_generate(s, prompt, np, max_new, sampler, ids, &n, st, err);
    st->prompt_cut = cut;
    if (rc == KD_OK) rc = kd_student_answer_text(s, ids, n, st->stopped, text, err);
    free(ids);
    free(prompt);
    return rc;
}
