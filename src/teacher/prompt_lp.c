/* Fast parser for vLLM's prompt_logprobs (declared in include/kdstep/teacher.h).
 *
 * The shape (https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html, "Extra Parameters":
 * prompt_logprobs on both /v1/completions and /v1/chat/completions): a list with one entry per prompt
 * token, the first null (nothing predicts the first token), each other an object keyed by token id:
 *   {"151644": {"logprob": -0.01, "rank": 1, "decoded_token": "<|im_start|>"}, "198": {...}, ...}
 * vLLM writes the prompt token's own entry first, then the top-k (a token in both appears once, first);
 * ranks 1..k are the columns. A chat completion has it at the top level, a completion in choices[0].
 * One pass over the bytes with the scanner of jscan.h; token texts go into one arena. The jansson
 * reference, kd_teacher_parse_prompt_logprobs_ref (teacher.c), is what the unit tests hold it to.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"
#include "kdstep/teacher.h"

typedef struct plp {
    scan s;
    kd_error *err;
    int k;
    kd_teacher_logprobs *lp;
    size_t cap;        /* rows allocated */
    char *arena;       /* token texts, NUL-terminated; tokens[] hold offset + 1 until the end */
    size_t alen, acap;
    /* prompt_token_ids of the object holding the list taken (top level, or that choice), if any */
    int32_t *ids[2];   /* [0] the top level's, [1] the choice's being read or taken */
    size_t n_ids[2], cap_ids[2];
    int has_ids[2];
} plp;

static int pbad(plp *P, const char *what) {
    if (P->err && !P->err->code)
        kd_error_set(P->err, KD_ERR_PARSE, "scoring response: %s at byte %ld", what, (long)(P->s.p - P->s.base));
    return -1;
}

static int pnomem(plp *P) { return kd_error_set(P->err, KD_ERR_NOMEM, "out of memory for prompt logprobs"), -1; }

/* "prompt_token_ids": [int, ...] into P->ids[w] (ids outside 0..INT32_MAX are -1). */
static int read_ids(plp *P, int w) {
    scan *s = &P->s;
    int first = 1, r;
    P->n_ids[w] = 0;
    P->has_ids[w] = 1;
    if (arr_begin(s)) return pbad(P, "prompt_token_ids is not a list");
    while ((r = arr_next(s, &first)) == 1) {
        int64_t v;
        if (num_int(s, &v)) return pbad(P, "prompt_token_ids holds something other than a number");
        if (P->n_ids[w] == P->cap_ids[w]) {
            size_t cap = P->cap_ids[w] ? P->cap_ids[w] * 2 : 1024;
            int32_t *a = realloc(P->ids[w], cap * sizeof *a);
            if (!a) return pnomem(P);
            P->ids[w] = a;
            P->cap_ids[w] = cap;
        }
        P->ids[w][P->n_ids[w]++] = v >= 0 && v <= INT32_MAX ? (int32_t)v : -1;
    }
    return r < 0 ? pbad(P, "invalid JSON in prompt_token_ids") : 0;
}

/* Unescape a string into the arena; its offset + 1 (0: out of memory). */
static size_t arena_put(plp *P, const sspan *sp) {
    size_t need = (size_t)(sp->e - sp->b) + 1;
    if (P->alen + need > P->acap) {
        size_t cap = P->acap ? P->acap * 2 : 1 << 16;
        while (cap < P->alen + need) cap *= 2;
        char *a = realloc(P->arena, cap);
        if (!a) return 0;
        P->arena = a;
        P->acap = cap;
    }
    size_t at = P->alen;
    if (sp->esc) P->alen += unescape(sp, P->arena + at) + 1;
    else {
        memcpy(P->arena + at, sp->b, need - 1);
        P->arena[at + need - 1] = 0;
        P->alen += need;
    }
    return at + 1;
}

/* A key: digits, or "token_id:" and digits; -1 for anything else. */
static int32_t key_id(const sspan *k) {
    char buf[32];
    const char *p = k->b, *e = k->e;
    if (k->esc) { /* "\u0031" is "1", as a tree parser reads it */
        if (e - p >= (long)sizeof buf) return -1;
        size_t n = unescape(k, buf);
        p = buf;
        e = buf + n;
    }
    if (e - p > 9 && memcmp(p, "token_id:", 9) == 0) p += 9;
    if (p == e || e - p > 10) return -1;
    int64_t v = 0;
    for (; p < e; p++) {
        if (!is_digit(*p)) return -1;
        v = v * 10 + (*p - '0');
    }
    return v <= INT32_MAX ? (int32_t)v : -1;
}

static int grow_rows(plp *P) {
    size_t cap = P->cap ? P->cap * 2 : 256;
    if (kd_teacher_logprobs_reshape(P->lp, (size_t)P->lp->n, cap, (size_t)P->k)) return pnomem(P);
    P->cap = cap;
    return 0;
}

/* One entry object {"logprob": L, "rank": R, "decoded_token": "..."}. */
static int read_entry(plp *P, double *logprob, int64_t *rank, sspan *text, int *has_text) {
    scan *s = &P->s;
    int first = 1, r;
    sspan key;
    *logprob = -INFINITY;
    *rank = 0;
    *has_text = 0;
    if (obj_begin(s)) return pbad(P, "an entry is not an object");
    while ((r = obj_next(s, &first, &key)) == 1) {
        if (key_is(&key, "logprob")) {
            if (peek(s) == 'n') {
                if (lit(s, "null")) return pbad(P, "bad logprob");
            } else if (num(s, logprob)) return pbad(P, "bad logprob");
        } else if (key_is(&key, "rank")) {
            if (peek(s) == 'n') {
                if (lit(s, "null")) return pbad(P, "bad rank");
            } else if (num_int(s, rank)) return pbad(P, "bad rank");
        } else if (key_is(&key, "decoded_token")) {
            if (peek(s) == 'n') {
                if (lit(s, "null")) return pbad(P, "bad decoded_token");
            } else {
                if (str(s, text)) return pbad(P, "bad decoded_token");
                *has_text = 1;
            }
        } else if (skip(s)) return pbad(P, "invalid JSON");
    }
    return r < 0 ? pbad(P, "invalid JSON in an entry") : 0;
}

/* The end of a run of plain string bytes (not '"', '\\' or a control byte), eight bytes at a time
 * (SWAR: a byte's high bit marks a match), then byte by byte near the end. */
static inline const char *plain_run(const char *p, const char *e) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (e - p >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
        uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b) | (v - ones * 0x20);
        hit &= ~v & highs; /* bytes >= 0x80 (UTF-8) are plain */
        if (hit) return p + (__builtin_ctzll(hit) >> 3);
        p += 8;
    }
    while (p < e && !STR_STOP[(unsigned char)*p]) p++;
    return p;
}

/* The lean reader: a row as servers write it, compact, keys in vLLM's order,
 *   {"ID":{"logprob":L,"rank":R,"decoded_token":"T"},...}
 * (T's escapes are decoded as the general reader decodes them). Returns 1 with the row read and s->p after it; 0 when the row is not in
 * that form (nothing is kept: the general reader reads it again from the start); -1 out of memory. */
static int lean_row(plp *P, int row, size_t base) {
    kd_teacher_logprobs *lp = P->lp;
    const char *p = P->s.p, *e = P->s.end;
    int k = P->k, own = 1;
    if (p >= e || *p != '{') return 0;
    p++;
    for (;;) {
        if (e - p < 96 || *p != '"') return 0;
        p++;
        int64_t id = 0;
        const char *d = p;
        while (is_digit(*p) && p - d < 10) id = id * 10 + (*p++ - '0');
        if (p == d || id > INT32_MAX || memcmp(p, "\":{\"logprob\":", 13) != 0) return 0;
        p += 13;
        double x;
        const char *q = lean_number(p, &x);
        if (!q) return 0;
        p = q;
        if (memcmp(p, ",\"rank\":", 8) != 0) return 0;
        p += 8;
        int64_t rank = 0;
        d = p;
        while (is_digit(*p) && p - d < 10) rank = rank * 10 + (*p++ - '0');
        if (p == d || memcmp(p, ",\"decoded_token\":\"", 18) != 0) return 0;
        p += 18;
        const char *tb = p;
        int esc = 0;
        for (p = plain_run(p, e); p + 7 < e && *p == '\\'; p = plain_run(p, e)) { /* escapes: \n, \", \u00e9 ... */
            esc = 1;
            if (p[1] == 'u') {
                for (int h = 2; h < 6; h++)
                    if (kd_hex_digit((unsigned char)p[h]) < 0) return 0;
                p += 6;
            } else if (strchr("\"\\/bfnrt", p[1]) && p[1]) p += 2;
            else return 0;
        }
        if (p + 3 > e || *p != '"' || p[1] != '}') return 0; /* a control byte, or the end */
        sspan text = {tb, p, esc};
        p += 2;
        size_t off = arena_put(P, &text);
        if (!off) return -1;
        float f = x < -1e30 ? -INFINITY : (float)x; /* as the general reader and the reference */
        if (own) {
            lp->token_ids[row] = (int32_t)id;
            lp->tokens[row] = (char *)(uintptr_t)off;
            lp->token_logprobs[row] = f;
            own = 0;
        }
        if (rank >= 1 && rank <= k) {
            size_t at = base + (size_t)(rank - 1);
            if (lp->topk_ids[at] < 0 && !lp->topk_tokens[at]) {
                lp->topk_ids[at] = (int32_t)id;
                lp->topk_tokens[at] = (char *)(uintptr_t)off;
                lp->topk_logprobs[at] = f;
            }
        }
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p != '}') return 0;
        P->s.p = p + 1;
        return 1;
    }
}

static int read_row(plp *P) {
    scan *s = &P->s;
    kd_teacher_logprobs *lp = P->lp;
    if ((size_t)lp->n == P->cap && grow_rows(P)) return -1;
    int row = lp->n++, k = P->k;
    size_t base = (size_t)row * (size_t)k;
    lp->token_ids[row] = -1;
    lp->tokens[row] = NULL;
    lp->token_logprobs[row] = 0;
    lp->tail_logprob[row] = 0.0f;
    for (int j = 0; j < k; j++) {
        lp->topk_ids[base + j] = -1;
        lp->topk_tokens[base + j] = NULL;
        lp->topk_logprobs[base + j] = -INFINITY;
    }
    if (peek(s) == 'n') return lit(s, "null") ? pbad(P, "invalid JSON") : 0;
    size_t alen = P->alen;
    int lr = lean_row(P, row, base);
    if (lr < 0) return pnomem(P);
    if (lr == 1) {
        lp->tail_logprob[row] = kd_tail_of(lp->topk_logprobs + base, (size_t)k);
        return 0;
    }
    /* not in the lean form: forget what it wrote, read the row again */
    P->alen = alen;
    lp->token_ids[row] = -1;
    lp->tokens[row] = NULL;
    lp->token_logprobs[row] = 0;
    for (int j = 0; j < k; j++) {
        lp->topk_ids[base + j] = -1;
        lp->topk_tokens[base + j] = NULL;
        lp->topk_logprobs[base + j] = -INFINITY;
    }
    int first = 1, r, own = 1;
    sspan key, text = {NULL, NULL, 0};
    if (obj_begin(s)) return pbad(P, "a prompt_logprobs entry is neither an object nor null");
    while ((r = obj_next(s, &first, &key)) == 1) {
        double x;
        int64_t rank;
        int has_text;
        if (read_entry(P, &x, &rank, &text, &has_text)) return -1;
        float f = x < -1e30 ? -INFINITY : (float)x;
        int32_t id = key_id(&key);
        size_t off = 0;
        if (has_text && !(off = arena_put(P, &text))) return pnomem(P);
        if (own) { /* the prompt token itself */
            lp->token_ids[row] = id;
            lp->tokens[row] = (char *)(uintptr_t)off;
            lp->token_logprobs[row] = f;
            own = 0;
        }
        if (rank < 1 || rank > k) continue;
        size_t at = base + (size_t)(rank - 1);
        if (lp->topk_tokens[at] || lp->topk_ids[at] >= 0) continue; /* a repeated rank: keep the first */
        lp->topk_ids[at] = id;
        lp->topk_tokens[at] = (char *)(uintptr_t)off;
        lp->topk_logprobs[at] = f;
    }
    if (r < 0) return pbad(P, "invalid JSON in prompt_logprobs");
    lp->tail_logprob[row] = kd_tail_of(lp->topk_logprobs + base, (size_t)k);
    return 0;
}

static int read_list(plp *P) {
    scan *s = &P->s;
    int first = 1, r;
    if (arr_begin(s)) return pbad(P, "prompt_logprobs is not a list");
    while ((r = arr_next(s, &first)) == 1)
        if (read_row(P)) return -1;
    return r < 0 ? pbad(P, "invalid JSON in prompt_logprobs") : 0;
}

/* choices: the first choice's prompt_logprobs (a completion's). */
static int read_choices(plp *P, int *found) {
    scan *s = &P->s;
    int first = 1, r;
    if (peek(s) != '[') return skip(s) ? pbad(P, "invalid JSON") : 0;
    arr_begin(s);
    while ((r = arr_next(s, &first)) == 1) {
        if (peek(s) != '{' || *found) {
            if (skip(s)) return pbad(P, "invalid JSON");
            continue;
        }
        int f2 = 1, r2, here = 0, ids_seen = 0;
        sspan key;
        obj_begin(s);
        P->has_ids[1] = 0;
        while ((r2 = obj_next(s, &f2, &key)) == 1) {
            if (!*found && key_is(&key, "prompt_logprobs") && peek(s) == '[') {
                if (read_list(P)) return -1;
                *found = here = 1;
            } else if (!ids_seen && key_is(&key, "prompt_token_ids") && peek(s) == '[') {
                if (read_ids(P, 1)) return -1;
                ids_seen = 1;
            } else if (skip(s)) return pbad(P, "invalid JSON");
        }
        if (r2 < 0) return pbad(P, "invalid JSON in choices");
        if (!here) P->has_ids[1] = 0; /* ids of a choice whose list was not taken */
    }
    return r < 0 ? pbad(P, "invalid JSON in choices") : 0;
}

/* Each row's prompt token is the id of prompt_token_ids (when the response has them, one per row):
 * its text and logprob from the row's entry with that id among the top-k, or none when it is not one of
 * them and was not written first. */
void kd_teacher_logprobs_use_prompt_ids(kd_teacher_logprobs *lp, const int32_t *ids, size_t n, int dup_texts) {
    if (!ids || n != (size_t)lp->n) return;
    for (int i = 1; i < lp->n; i++) {
        if (lp->token_ids[i] == ids[i]) continue;
        if (dup_texts) free(lp->tokens[i]);
        lp->token_ids[i] = ids[i];
        lp->tokens[i] = NULL;
        lp->token_logprobs[i] = -INFINITY;
        for (int j = 0; j < lp->k; j++) {
            size_t at = (size_t)i * (size_t)lp->k + (size_t)j;
            if (lp->topk_ids[at] != ids[i] || ids[i] < 0) continue;
            lp->tokens[i] = lp->topk_tokens[at] && dup_texts ? kd_strdup(lp->topk_tokens[at]) : lp->topk_tokens[at];
            lp->token_logprobs[i] = lp->topk_logprobs[at];
            break;
        }
    }
}

int kd_teacher_parse_prompt_logprobs(const char *body, size_t len, int top_k, kd_teacher_logprobs *lp, kd_error *err) {
    memset(lp, 0, sizeof *lp);
    if (top_k < 1) return kd_error_set(err, KD_ERR_INVALID, "prompt_logprobs: top_k must be at least 1");
    plp P;
    memset(&P, 0, sizeof P);
    P.s = (scan){body, body + len, body, 0};
    P.err = err;
    P.k = top_k;
    P.lp = lp;
    if (err) err->code = KD_OK;
    lp->k = top_k;
    /* room for every row from the start: a row takes at least 16 bytes per column, so this is more
     * than enough, and pages never written cost nothing (no copies while growing) */
    size_t cap = len / (16 * (size_t)top_k) + 16;
    if (kd_teacher_logprobs_reshape(lp, 0, cap, (size_t)top_k) || !(P.arena = malloc(len / 4 + 64))) {
        kd_teacher_logprobs_free(lp);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory for prompt logprobs");
    }
    P.cap = cap;
    P.acap = len / 4 + 64;
    int first = 1, r, found = 0, at_top = 0, rc = -1;
    sspan key;
    if (obj_begin(&P.s)) {
        pbad(&P, "not a JSON object");
        goto done;
    }
    while ((r = obj_next(&P.s, &first, &key)) == 1) {
        if (!found && key_is(&key, "prompt_logprobs") && peek(&P.s) == '[') {
            if (read_list(&P)) goto done;
            found = at_top = 1;
        } else if (!P.has_ids[0] && key_is(&key, "prompt_token_ids") && peek(&P.s) == '[') {
            if (read_ids(&P, 0)) goto done;
        } else if (key_is(&key, "choices")) {
            if (read_choices(&P, &found)) goto done;
        } else if (skip(&P.s)) {
            pbad(&P, "invalid JSON");
            goto done;
        }
    }
    if (r < 0 || (peek(&P.s), P.s.p != P.s.end)) {
        pbad(&P, "invalid JSON");
        goto done;
    }
    if (!found) {
        kd_error_set(err, KD_ERR_PARSE,
                     "scoring response: no prompt_logprobs (is the endpoint vLLM, and was prompt_logprobs sent? see docs/teachers.md)");
        goto done;
    }
    rc = 0;
done:
    if (rc) {
        free(P.ids[0]);
        free(P.ids[1]);
        free(P.arena);
        lp->arena = NULL;
        for (int i = 0; lp->tokens && i < lp->n; i++) lp->tokens[i] = NULL;
        for (size_t i = 0; lp->topk_tokens && i < (size_t)lp->n * (size_t)top_k; i++) lp->topk_tokens[i] = NULL;
        kd_teacher_logprobs_free(lp);
        return err && err->code ? err->code : KD_ERR_PARSE;
    }
    if (!lp->tokens && kd_teacher_logprobs_reshape(lp, 0, 1, (size_t)top_k)) {
        free(P.arena);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory for prompt logprobs");
    }
    if (!P.arena && !(P.arena = malloc(1))) {
        kd_teacher_logprobs_free(lp);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory for prompt logprobs");
    }
    lp->arena = P.arena;
    for (int i = 0; i < lp->n; i++) {
        size_t o = (size_t)(uintptr_t)lp->tokens[i];
        lp->tokens[i] = o ? P.arena + o - 1 : NULL;
    }
    for (size_t i = 0; i < (size_t)lp->n * (size_t)top_k; i++) {
        size_t o = (size_t)(uintptr_t)lp->topk_tokens[i];
        lp->topk_tokens[i] = o ? P.arena + o - 1 : NULL;
    }
    int w = at_top ? 0 : 1;
    if (P.has_ids[w]) kd_teacher_logprobs_use_prompt_ids(lp, P.ids[w], P.n_ids[w], 0);
    free(P.ids[0]);
    free(P.ids[1]);
    return KD_OK;
}
