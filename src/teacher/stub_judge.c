/* The stub teacher scoring a whole conversation, as vLLM's prompt_logprobs do: kd_stub_score and
 * kd_stub_score_conversation (see stub_internal.h). It stands above stub_answer.c (the stub's own
 * replies, which each turn is held against) and stub_score.c (the top-k of one position). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kdstep/chat.h"
#include "kdstep/sbuf.h"
#include "jscan.h"
#include "kdstep/teacher.h"
#include "stub_internal.h"

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
            stub_position_topk(s, lp, (int)t, id, L + 1.0, -1, 0, NULL, 0, 0, (uint64_t)seed, t);
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
        int in_span = q < ns && off >= spans[q].b, kind = in_span ? spans[q].kind : SPAN_TEXT;
        size_t idx = 0; /* which token of the name this is */
        if (kind == SPAN_NAME)
            for (size_t u = t; u > 0 && (size_t)enc.offsets[u - 1][0] >= spans[q].b; u--) idx++;
        int32_t alts[48];
        double base;
        int na = stub_span_alternatives(s, tv, ntools, kind, in_span ? spans[q].tool : -1, idx, L, alts, &base);
        if (want >= 0) /* the stub's own token on top; the written one still plausible */
            stub_position_topk(s, lp, (int)t, id, L + 2.5, want, L + 6.0, alts, na, base, (uint64_t)seed, t);
        else
            stub_position_topk(s, lp, (int)t, id, L + 6.0, -1, 0, alts, na, base, (uint64_t)seed, t);
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
