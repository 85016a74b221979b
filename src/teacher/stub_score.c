/* The stub teacher: tokens and top-k log-probabilities (see stub_internal.h). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kdstep/hash.h"
#include "kdstep/teacher.h"
#include "jscan.h"
#include "kdstep/chat.h"
#include "kdstep/sbuf.h"
#include "stub_internal.h"

/* ---- logprobs ---- */

static double jitter(uint64_t seed, size_t pos, int32_t id) {
    uint64_t h = seed ^ (0x9e3779b97f4a7c15ULL * (pos + 1)) ^ ((uint64_t)(uint32_t)id << 17);
    return (kd_splitmix64(&h) >> 11) * (1.0 / 9007199254740992.0);
}

typedef struct cand {
    int32_t id;
    double logit;
} cand;

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

/* Top-k for one position: the written token, the stub's own token `pref` when it differs (>= 0; -1:
 * none) at pref_logit, plus `alts` at descending logits from alt_base. The rest of the vocabulary has
 * logit 0. Softmax at temperature T over all V. */
static void position_topk(const kd_stub_teacher *s, kd_teacher_logprobs *lp, int row, int32_t actual, double actual_logit,
                          int32_t pref, double pref_logit, const int32_t *alts, int nalts, double alt_base, uint64_t seed,
                          size_t pos) {
    double T = s->opt.temperature > 0 ? s->opt.temperature : 1.0;
    int k = lp->k;
    cand c[96];
    int nc = 0;
    c[nc++] = (cand){actual, actual_logit + 0.5 * jitter(seed, pos, actual)};
    if (pref >= 0 && pref != actual && pref < s->vocab) c[nc++] = (cand){pref, pref_logit + 0.5 * jitter(seed, pos, pref)};
    for (int i = 0; i < nalts && nc < 96; i++) {
        int dup = 0;
        for (int j = 0; j < nc && !dup; j++) dup = c[j].id == alts[i];
        if (dup || alts[i] < 0 || alts[i] >= s->vocab) continue;
        c[nc++] = (cand){alts[i], alt_base - 0.35 * i + 0.5 * jitter(seed, pos, alts[i])};
    }
    qsort(c, (size_t)nc, sizeof *c, cmp_cand);
    double nbg = (double)s->vocab - nc; /* background tokens, logit 0 */
    double mx = c[0].logit / T > 0 ? c[0].logit / T : 0;
    double z = nbg * exp(-mx);
    for (int i = 0; i < nc; i++) z += exp(c[i].logit / T - mx);
    double logz = mx + log(z);
    lp->token_logprobs[row] = (float)(actual_logit / T - logz);
    for (int i = 0; i < nc; i++)
        if (c[i].id == actual) lp->token_logprobs[row] = (float)(c[i].logit / T - logz);
    int j = 0;
    for (; j < k && j < nc; j++) {
        lp->topk_ids[(size_t)row * k + j] = c[j].id;
        lp->topk_logprobs[(size_t)row * k + j] = (float)(c[j].logit / T - logz);
        lp->topk_tokens[(size_t)row * k + j] = stub_token_text(s, c[j].id);
    }
    /* pad with background tokens (distinct ids not among the candidates) */
    int used_bg = 0;
    uint64_t h = seed ^ (pos * 0x2545F4914F6CDD1DULL);
    for (; j < k && nbg - used_bg >= 1; j++) {
        int32_t id;
        int clash;
        do {
            id = (int32_t)(kd_splitmix64(&h) % (uint64_t)s->vocab);
            clash = 0;
            for (int q = 0; q < nc && !clash; q++) clash = c[q].id == id;
            for (int q = 0; q < j && !clash; q++) clash = lp->topk_ids[(size_t)row * k + q] == id;
        } while (clash);
        lp->topk_ids[(size_t)row * k + j] = id;
        lp->topk_logprobs[(size_t)row * k + j] = (float)(0.0 - logz);
        lp->topk_tokens[(size_t)row * k + j] = stub_token_text(s, id);
        used_bg++;
    }
    /* tail: candidates beyond k plus the remaining background, in log space */
    double tz = (nbg - used_bg) * exp(-mx);
    for (int i = k; i < nc; i++) tz += exp(c[i].logit / T - mx);
    lp->tail_logprob[row] = tz > 0 ? (float)(mx + log(tz) - logz) : -INFINITY;
}

static int name_alternatives(const kd_stub_teacher *s, const tool_view *tv, int n, int actual_tool, size_t tok_index,
                             int32_t *out, int cap) {
    (void)s;
    int m = 0;
    for (int i = 0; i < n && m < cap; i++) {
        if (i == actual_tool || tv[i].n_name_ids == 0) continue;
        size_t j = tok_index < (size_t)tv[i].n_name_ids ? tok_index : (size_t)tv[i].n_name_ids - 1;
        m = add_unique(out, m, cap, tv[i].name_ids[j]);
    }
    return m;
}

int stub_build_logprobs(const kd_stub_teacher *s, const char *text, size_t len, size_t response_start,
                          const kspan *spans, int nspans, const tool_view *tv, int ntools, int k, uint64_t seed,
                          int keep_prompt, kd_teacher_logprobs *lp, int64_t *ntokens, kd_error *err) {
    kd_encoding enc = {0};
    int rc = stub_encode(s, text, len, &enc, err);
    if (rc) return rc;
    /* tokens that begin in the response part */
    size_t first = 0;
    while (first < enc.count && (size_t)enc.offsets[first][0] < response_start) first++;
    int n = (int)(enc.count - first);
    *ntokens = n;
    if (k <= 0) {
        stub_encoding_free(s, &enc);
        return KD_OK;
    }
    if (kd_teacher_logprobs_alloc(lp, (int)enc.count, k)) {
        stub_encoding_free(s, &enc);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory for logprobs");
    }
    double L = log((double)s->vocab);
    for (size_t t = 0; t < enc.count; t++) {
        int row = (int)t;
        int32_t id = enc.ids[t];
        lp->token_ids[row] = id;
        lp->tokens[row] = stub_token_text(s, id);
        if (t < first) { /* prompt: likely, no boosted alternatives */
            position_topk(s, lp, row, id, L + 1.0, -1, 0, NULL, 0, 0, seed, t);
            continue;
        }
        size_t off = (size_t)enc.offsets[t][0] - response_start;
        int kind = SPAN_TEXT, tool = -1;
        size_t span_b = 0;
        for (int i = 0; i < nspans; i++)
            if (off >= spans[i].b && off < spans[i].e) {
                kind = spans[i].kind;
                tool = spans[i].tool;
                span_b = spans[i].b;
            }
        int32_t alts[48];
        int na = 0;
        double base;
        if (kind == SPAN_NAME) {
            size_t idx = 0; /* which token of the name this is */
            for (size_t q = t; q > first && (size_t)enc.offsets[q - 1][0] - response_start >= span_b; q--) idx++;
            na = name_alternatives(s, tv, ntools, tool, idx, alts, 48);
            base = L + 3.5;
        } else if (kind == SPAN_ARGS) {
            memcpy(alts, s->json_alts, sizeof(int32_t) * (size_t)s->n_json_alts);
            na = s->n_json_alts;
            base = L + 2.0;
        } else {
            memcpy(alts, s->text_alts, sizeof(int32_t) * (size_t)s->n_text_alts);
            na = s->n_text_alts;
            base = L + 1.0;
        }
        position_topk(s, lp, row, id, L + 6.0, -1, 0, alts, na, base, seed, t);
    }
    /* keep only the response rows */
    if (first > 0 && !keep_prompt) {
        kd_teacher_logprobs r;
        if (kd_teacher_logprobs_alloc(&r, n, k)) {
            stub_encoding_free(s, &enc);
            kd_teacher_logprobs_free(lp);
            return kd_error_set(err, KD_ERR_NOMEM, "out of memory for logprobs");
        }
        for (int i = 0; i < n; i++) {
            size_t from = first + (size_t)i;
            r.token_ids[i] = lp->token_ids[from];
            r.tokens[i] = lp->tokens[from];
            lp->tokens[from] = NULL;
            r.token_logprobs[i] = lp->token_logprobs[from];
            r.tail_logprob[i] = lp->tail_logprob[from];
            for (int j = 0; j < k; j++) {
                r.topk_ids[(size_t)i * k + j] = lp->topk_ids[from * k + j];
                r.topk_logprobs[(size_t)i * k + j] = lp->topk_logprobs[from * k + j];
                r.topk_tokens[(size_t)i * k + j] = lp->topk_tokens[from * k + j];
                lp->topk_tokens[from * k + j] = NULL;
            }
        }
        kd_teacher_logprobs_free(lp);
        *lp = r;
    }
    stub_encoding_free(s, &enc);
    return KD_OK;
}

/* The assistant turns of a rendered conversation (ChatML, as kdstep and Qwen3 render it): from after
 * each "<|im_start|>assistant\n" through its "<|im_end|>". Their tool calls: the name and the
 * arguments of every {"name": "...", "arguments": ...} inside them. Spans are absolute offsets. */
static int find_regions(const char *text, size_t len, const tool_view *tv, int ntools, kspan *reg, int *nreg, int capr,
                        kspan *spans, int *ns, int caps) {
    static const char HEAD[] = "<|im_start|>assistant\n", END[] = "<|im_end|>";
    *nreg = *ns = 0;
    for (const char *p = text; (p = strstr(p, HEAD)) != NULL;) {
        const char *b = p + sizeof HEAD - 1, *e = strstr(b, END);
        e = e ? e + sizeof END - 1 : text + len;
        if (*nreg == capr) return -1;
        reg[(*nreg)++] = (kspan){(size_t)(b - text), (size_t)(e - text), SPAN_TEXT, -1};
        for (const char *q = b; (q = strstr(q, "{\"name\": \"")) != NULL && q < e && *ns + 2 <= caps;) {
            const char *nb = q + 10, *ne = strchr(nb, '"');
            if (!ne || ne >= e) break;
            int tool = -1;
            for (int i = 0; i < ntools; i++)
                if (strlen(tv[i].name) == (size_t)(ne - nb) && strncmp(tv[i].name, nb, (size_t)(ne - nb)) == 0) tool = i;
            spans[(*ns)++] = (kspan){(size_t)(nb - text), (size_t)(ne - text), SPAN_NAME, tool};
            const char *ab = strstr(ne, "\"arguments\": ");
            if (ab && ab < e) {
                ab += 13;
                const char *ae = strstr(ab, "}\n</tool_call>");
                if (!ae || ae > e) ae = e;
                spans[(*ns)++] = (kspan){(size_t)(ab - text), (size_t)(ae - text), SPAN_ARGS, tool};
                q = ae;
            } else q = ne;
        }
        p = e;
    }
    return 0;
}

/* The stub's own reply in one assistant turn: its token ids, as they stand in the conversation. */
typedef struct own_turn {
    int32_t *ids;
    size_t n;
} own_turn;

static void own_turns_free(own_turn *o, int n) {
    for (int i = 0; o && i < n; i++) free(o[i].ids);
    free(o);
}

/* For each assistant turn of a rendered conversation (regions, from find_regions) that answers a user
 * turn, what the stub would have written there: kd_stub_complete on that user turn's text (its
 * decision, tool and arguments read from the last user message, as when it writes), rendered back into
 * a conversation, and the tokens of that assistant turn through its <|im_end|>. Turns that answer a
 * tool result get none. The text alone decides, so every way of asking (in process, chat scoring,
 * completions scoring) gets the same bits. */
static int own_replies(kd_stub_teacher *s, const char *text, const kspan *reg, int nreg, const json_t *tools,
                       int64_t seed, own_turn **out, kd_error *err) {
    static const char HEAD[] = "<|im_start|>assistant\n", END[] = "<|im_end|>", USER[] = "<|im_start|>user\n";
    *out = NULL;
    if (!nreg) return KD_OK;
    own_turn *o = calloc((size_t)nreg, sizeof *o);
    if (!o) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    int rc = KD_OK;
    for (int k = 0; k < nreg && !rc; k++) {
        /* the user turn just before this assistant turn */
        const char *head = text + reg[k].b - (sizeof HEAD - 1), *u = NULL;
        for (const char *p = text; (p = strstr(p, USER)) != NULL && p < head; p += sizeof USER - 1) u = p + sizeof USER - 1;
        const char *ue = u ? strstr(u, END) : NULL;
        if (!u || !ue || ue > head || strncmp(u, "<tool_response>", 15) == 0 || strncmp(u, "\n<tool_response>", 16) == 0) continue;
        if (strstr(ue, HEAD) != head) continue; /* another turn in between */
        json_t *conv = json_pack("[{s:s, s:s%}]", "role", "user", "content", u, (size_t)(ue - u));
        kd_teacher_completion c;
        memset(&c, 0, sizeof c);
        /* without a think block: a scored conversation carries none (reasoning is not supervised) */
        rc = conv ? kd_stub_complete_thinking(s, conv, tools, 0, seed, 0, &c, err) : kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        /* the conversation up to this turn, then the stub's reply as its text stands, then the turn's end */
        kd_sbuf cand = {0};
        kd_encoding enc = {0};
        if (!rc) {
            kd_sbuf_add(&cand, text, reg[k].b);
            /* a think block the written turn opens with (the template's empty one, or reasoning) is
             * not the stub's to judge: its reply follows the same block */
            const char *rb = text + reg[k].b, *te = strstr(rb, "</think>");
            if (strncmp(rb, "<think>", 7) == 0 && te && te < text + reg[k].e && (!c.text || strncmp(c.text, "<think>", 7) != 0)) {
                te += 8;
                while (*te == '\n') te++;
                kd_sbuf_add(&cand, rb, (size_t)(te - rb));
            }
            kd_sbuf_puts(&cand, c.text ? c.text : "");
            kd_sbuf_puts(&cand, END);
            if (cand.oom || !cand.data) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        }
        if (!rc && !(rc = stub_encode(s, cand.data, cand.len, &enc, err))) {
            o[k].ids = malloc(sizeof(int32_t) * (enc.count + 1));
            if (!o[k].ids) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
            for (size_t t = 0; !rc && t < enc.count; t++)
                if ((size_t)enc.offsets[t][0] >= reg[k].b) o[k].ids[o[k].n++] = enc.ids[t];
            stub_encoding_free(s, &enc);
        }
        kd_sbuf_free(&cand);
        kd_teacher_completion_free(&c);
        json_decref(conv);
    }
    if (rc) {
        own_turns_free(o, nreg);
        return rc;
    }
    *out = o;
    return KD_OK;
}

int kd_stub_score(kd_stub_teacher *s, const char *text, size_t len, const json_t *tools, int top_k, int64_t seed,
                  kd_teacher_logprobs *lp, kd_error *err) {
    memset(lp, 0, sizeof *lp);
    if (top_k <= 0) return kd_error_set(err, KD_ERR_INVALID, "stub scoring: top_k must be at least 1 (got %d)", top_k);
    tool_view *tv = NULL;
    int ntools = request_tools(s, tools, &tv);
    if (ntools < 0) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    enum { CAPR = 256, CAPS = 512 };
    kspan *reg = malloc(sizeof(kspan) * (CAPR + CAPS)), *spans = reg + CAPR;
    int nreg = 0, ns = 0, rc = KD_OK;
    kd_encoding enc = {0};
    if (!reg) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    else if (find_regions(text, len, tv, ntools, reg, &nreg, CAPR, spans, &ns, CAPS))
        rc = kd_error_set(err, KD_ERR_INVALID, "stub scoring: more than %d assistant turns in one conversation", CAPR);
    /* each turn that answers a user turn is scored against the stub's own reply there: while the written
     * tokens follow it nothing changes; at the first token that leaves it, the stub's token takes the top
     * (the teacher's view of the writer's prefix: what it would have written) and the written one drops
     * to a plausible alternative; after that the turn is scored as written */
    own_turn *own = NULL;
    int nown = nreg;
    if (!rc) rc = own_replies(s, text, reg, nreg, tools, seed, &own, err);
    if (!rc) rc = stub_encode(s, text, len, &enc, err);
    if (!rc && kd_teacher_logprobs_alloc(lp, (int)enc.count, top_k)) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory for logprobs");
    double L = log((double)s->vocab);
    int r = 0, q = 0; /* the region and span a token may be in: both advance with the tokens */
    int cur = -1, left = 0;
    size_t ti = 0; /* the token's index in its region; left: 1 once the region left the stub's own reply */
    for (size_t t = 0; !rc && t < enc.count; t++) {
        int32_t id = enc.ids[t];
        size_t off = (size_t)enc.offsets[t][0];
        lp->token_ids[t] = id;
        lp->tokens[t] = stub_token_text(s, id);
        while (r < nreg && reg[r].e <= off) r++;
        if (r == nreg || off < reg[r].b) { /* not the assistant's: likely, no boosted alternatives */
            position_topk(s, lp, (int)t, id, L + 1.0, -1, 0, NULL, 0, 0, (uint64_t)seed, t);
            continue;
        }
        while (q < ns && spans[q].e <= off) q++;
        if (r != cur) cur = r, ti = 0, left = 0;
        int32_t want = -1;
        if (own && r < nown && own[r].n && !left) {
            if (ti >= own[r].n) left = 1; /* longer than the stub's reply: it would have ended before */
            else if (own[r].ids[ti] != id) want = own[r].ids[ti], left = 1;
        }
        ti++;
        int32_t alts[48];
        int na;
        double base;
        if (q < ns && off >= spans[q].b && spans[q].kind == SPAN_NAME) {
            size_t idx = 0; /* which token of the name this is */
            for (size_t u = t; u > 0 && (size_t)enc.offsets[u - 1][0] >= spans[q].b; u--) idx++;
            na = name_alternatives(s, tv, ntools, spans[q].tool, idx, alts, 48);
            base = L + 3.5;
        } else if (q < ns && off >= spans[q].b) {
            memcpy(alts, s->json_alts, sizeof(int32_t) * (size_t)s->n_json_alts);
            na = s->n_json_alts;
            base = L + 2.0;
        } else {
            memcpy(alts, s->text_alts, sizeof(int32_t) * (size_t)s->n_text_alts);
            na = s->n_text_alts;
            base = L + 1.0;
        }
        if (want >= 0) /* the stub's own token on top; the written one still plausible */
            position_topk(s, lp, (int)t, id, L + 2.5, want, L + 6.0, alts, na, base, (uint64_t)seed, t);
        else
            position_topk(s, lp, (int)t, id, L + 6.0, -1, 0, alts, na, base, (uint64_t)seed, t);
    }
    /* as vLLM's prompt_logprobs: nothing predicts the first token; the tail as a client computes it
     * from the top-k (kd_tail_of), so that every backend gives the same bits */
    for (size_t t = 0; !rc && t < enc.count; t++) {
        float *row = lp->topk_logprobs + t * (size_t)top_k;
        if (t == 0) {
            for (int j = 0; j < top_k; j++) {
                free(lp->topk_tokens[j]);
                lp->topk_tokens[j] = NULL;
                lp->topk_ids[j] = -1;
                row[j] = -INFINITY;
            }
            lp->tail_logprob[0] = 0.0f;
        } else lp->tail_logprob[t] = kd_tail_of(row, (size_t)top_k);
    }
    if (rc) kd_teacher_logprobs_free(lp);
    stub_encoding_free(s, &enc);
    own_turns_free(own, nown);
    free(reg);
    release_tools(s, tv, ntools);
    return rc;
}

int kd_stub_score_conversation(kd_stub_teacher *s, const json_t *messages, const json_t *tools, int top_k, int64_t seed,
                               kd_teacher_logprobs *lp, kd_error *err) {
    kd_chat_result r;
    int rc = kd_chat_render_json(messages, tools, NULL, &r, err);
    if (rc) return rc;
    rc = kd_stub_score(s, r.text, r.len, tools, top_k, seed, lp, err);
    kd_chat_render_free(&r);
    return rc;
}
