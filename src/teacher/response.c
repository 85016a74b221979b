/* Fast parser for OpenAI chat-completion responses (declared in include/kdstep/teacher.h).
 *
 * A response with top-k logprobs is mostly a long array of small objects; building a jansson tree for
 * it costs ~100 allocations per token. This scanner walks the bytes once, validates the JSON grammar
 * of everything it reads or skips, and copies token strings into one arena. Rows of logprobs written
 * as servers write them go through a lean reader (lean_row); any other row through the general one. kd_teacher_parse_chat_response_ref (jansson) is the reference it is tested and
 * fuzzed against.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "kdstep/jsonw.h"
#include "kdstep/teacher.h"
#include "common.h"

#include "jscan.h"

typedef struct parse {
    scan s;
    kd_teacher_completion *c;
    kd_error *err;
    int have_message;
    char *error_message;
} parse;

static int bad(parse *P) {
    if (!P->err || P->err->code) return -1;
    kd_error_set(P->err, KD_ERR_PARSE, "teacher response: invalid JSON at byte %ld", (long)(P->s.p - P->s.base));
    return -1;
}

static int fail(parse *P, const char *fmt, size_t i, size_t j) {
    char msg[256];
    snprintf(msg, sizeof msg, fmt, i, j);
    kd_error_set(P->err, KD_ERR_PARSE, "teacher response: %s", msg);
    return -1;
}

/* A string of the teacher's text, decoded; it must be valid UTF-8 without NUL, or it would be cut at
 * the NUL or dropped by the JSON writer downstream (a silently empty answer). 0, or -1 with the reason. */
static int text_dup(parse *P, const sspan *v, char **out, const char *what, size_t i) {
    char *t = malloc((size_t)(v->e - v->b) + 1);
    if (!t) return kd_error_set(P->err, KD_ERR_NOMEM, "out of memory"), -1;
    size_t n = unescape(v, t); /* an escaped \u0000 decodes to a NUL inside the n bytes */
    const char *nul = memchr(t, 0, n);
    size_t ok = kd_utf8_valid_prefix(t, n);
    if (nul || ok < n) {
        char w[64];
        snprintf(w, sizeof w, what, i);
        if (nul) kd_error_set(P->err, KD_ERR_PARSE, "teacher response: %s holds a NUL character (\\u0000) at byte %zu", w, (size_t)(nul - t));
        else kd_error_set(P->err, KD_ERR_PARSE, "teacher response: %s is not valid UTF-8 (byte %zu of %zu)", w, ok, n);
        free(t);
        return -1;
    }
    free(*out);
    *out = t;
    return 0;
}

static int parse_tool_calls(parse *P) {
    scan *s = &P->s;
    if (peek(s) == 'n') return lit(s, "null") ? bad(P) : 0;
    if (peek(s) != '[') return fail(P, "message.tool_calls is not an array", 0, 0);
    /* count first, to allocate once */
    scan probe = *s;
    size_t n = 0;
    int first = 1, r;
    if (arr_begin(&probe)) return bad(P);
    while ((r = arr_next(&probe, &first)) == 1) {
        if (skip(&probe)) return bad(P);
        n++;
    }
    if (r < 0) return bad(P);
    /* a repeated key: the last one wins, as in jansson */
    for (int i = 0; i < P->c->n_tool_calls; i++) {
        free(P->c->tool_calls[i].id);
        free(P->c->tool_calls[i].name);
        free(P->c->tool_calls[i].arguments);
    }
    free(P->c->tool_calls);
    P->c->n_tool_calls = 0;
    P->c->tool_calls = calloc(n ? n : 1, sizeof *P->c->tool_calls);
    if (!P->c->tool_calls) return kd_error_set(P->err, KD_ERR_NOMEM, "out of memory for tool calls"), -1;
    arr_begin(s);
    first = 1;
    for (size_t i = 0; (r = arr_next(s, &first)) == 1; i++) {
        kd_teacher_tool_call *t = &P->c->tool_calls[P->c->n_tool_calls++];
        int f1 = 1, r1;
        sspan k;
        if (peek(s) != '{') {
            if (skip(s)) return bad(P);
            return fail(P, "tool_calls[%zu].function.name is missing", i, 0);
        }
        obj_begin(s);
        while ((r1 = obj_next(s, &f1, &k)) == 1) {
            sspan v;
            if (key_is(&k, "id") && peek(s) == '"') {
                if (str(s, &v)) return bad(P);
                free(t->id);
                t->id = str_dup(&v);
            } else if (key_is(&k, "function") && peek(s) == '{') {
                int f2 = 1, r2;
                sspan k2;
                obj_begin(s);
                while ((r2 = obj_next(s, &f2, &k2)) == 1) {
                    if (key_is(&k2, "name") && peek(s) == '"') {
                        if (str(s, &v)) return bad(P);
                        if (text_dup(P, &v, &t->name, "tool_calls[%zu].function.name", i)) return -1;
                    } else if (key_is(&k2, "arguments") && peek(s) == '"') {
                        if (str(s, &v)) return bad(P);
                        if (text_dup(P, &v, &t->arguments, "tool_calls[%zu].function.arguments", i)) return -1;
                    } else if (key_is(&k2, "arguments") && peek(s) == '{') {
                        /* some servers send the object itself: keep its text */
                        const char *b = s->p;
                        if (skip(s)) return bad(P);
                        free(t->arguments);
                        t->arguments = kd_strndup(b, (size_t)(s->p - b));
                    } else if (skip(s)) return bad(P);
                }
                if (r2 < 0) return bad(P);
            } else if (skip(s)) return bad(P);
        }
        if (r1 < 0) return bad(P);
        if (!t->name) return fail(P, "tool_calls[%zu].function.name is missing", i, 0);
        if (!t->id) t->id = kd_strdup("");
        if (!t->arguments) t->arguments = kd_strdup("{}");
    }
    return r < 0 ? bad(P) : 0;
}

static int parse_message(parse *P) {
    scan *s = &P->s;
    int first = 1, r;
    sspan k, v;
    if (peek(s) != '{') return skip(s) ? bad(P) : 0;
    obj_begin(s);
    P->have_message = 1;
    while ((r = obj_next(s, &first, &k)) == 1) {
        if (key_is(&k, "content")) {
            int c = peek(s);
            if (c == '"') {
                if (str(s, &v)) return bad(P);
                if (text_dup(P, &v, &P->c->text, "choices[0].message.content%.0zu", 0)) return -1;
            } else if (c == 'n') {
                if (lit(s, "null")) return bad(P);
            } else {
                if (skip(s)) return bad(P);
                return fail(P, "choices[0].message.content is neither a string nor null", 0, 0);
            }
        } else if (key_is(&k, "tool_calls")) {
            if (parse_tool_calls(P)) return -1;
        } else if (skip(s)) return bad(P);
    }
    return r < 0 ? bad(P) : 0;
}

/* ---- logprobs.content[]: one pass, rows written straight into growable arrays ---- */

#define LP_MAX_K 1024     /* more top_logprobs per token than this is refused */
#define LP_MAX_BYTES 4096 /* a longer `bytes` array is ignored for the token string, as in the reference */

/* What one entry (a token, or one of its top alternatives) said. */
typedef struct lp_entry {
    sspan token;
    int has_token;
    int nbytes;       /* elements of the last `bytes` array */
    size_t bytes_off; /* where their values were written in the arena */
    double logprob;
    int has_logprob;
} lp_entry;

/* While parsing, token strings live in a growable arena and the arrays hold offsets into it (+1, so
 * that 0 stays "no string"); they become pointers once the arena stops moving. */
typedef struct lp_ctx {
    char *arena;
    size_t alen, acap;
    /* the top alternatives of the token being read */
    int m, mcap;
    int top_err; /* 1 + the index of the first alternative without a logprob, or 0 */
    float *lps;
    int32_t *ids;
    size_t *offs;
} lp_ctx;

static int arena_room(lp_ctx *X, size_t n) {
    if (X->acap - X->alen >= n) return 0;
    size_t cap = X->acap ? X->acap : 1024;
    while (cap - X->alen < n) cap *= 2;
    char *a = realloc(X->arena, cap);
    if (!a) return -1;
    X->arena = a;
    X->acap = cap;
    return 0;
}

/* The values go straight to the arena: the token's text when they are used, wasted bytes when not.
 * Returns 0, -1 (bad JSON) or -2 (out of memory). */
static int bytes_array(scan *s, lp_ctx *X, lp_entry *f) {
    int first = 1, r, n = 0;
    if (arena_room(X, 16)) return -2;
    f->bytes_off = X->alen;
    if (arr_begin(s)) return -1;
    while ((r = arr_next(s, &first)) == 1) {
        unsigned v;
        if (num_byte(s, &v)) return -1;
        if (n < LP_MAX_BYTES) {
            if (arena_room(X, 2)) return -2;
            X->arena[X->alen++] = (char)v;
        }
        if (n < INT32_MAX) n++;
    }
    f->nbytes = n;
    if (r == 0) X->arena[X->alen++] = 0; /* room: arena_room(2) kept one byte, or 16 for an empty array */
    return r;
}

/* The arena offset (+1) of an entry's text: the `bytes` when there are some (tokens may split UTF-8),
 * else the unescaped `token`; 0 when out of memory. */
static size_t entry_text(lp_ctx *X, const lp_entry *f) {
    if (f->nbytes > 0 && f->nbytes < LP_MAX_BYTES) return f->bytes_off + 1;
    size_t need = f->has_token ? (size_t)(f->token.e - f->token.b) : 0;
    if (arena_room(X, need + 1)) return 0;
    size_t at = X->alen;
    if (f->has_token) X->alen += unescape(&f->token, X->arena + at) + 1;
    else X->arena[X->alen++] = 0;
    return at + 1;
}

/* vLLM's return_tokens_as_token_ids writes tokens as "token_id:123". */
static int32_t entry_id(const lp_entry *f) {
    if (!f->has_token || f->token.esc) return -1;
    size_t n = (size_t)(f->token.e - f->token.b);
    if (n > 9 && n < 24 && memcmp(f->token.b, "token_id:", 9) == 0) {
        long v = 0;
        for (const char *p = f->token.b + 9; p < f->token.e; p++) {
            if (!is_digit(*p)) return -1;
            v = v * 10 + (*p - '0');
            if (v >= INT32_MAX) return -1;
        }
        return (int32_t)v;
    }
    return -1;
}

static int key_eq(const sspan *k, const char *w, size_t n) {
    return (size_t)(k->e - k->b) == n && !k->esc && memcmp(k->b, w, n) == 0;
}

static int top_row(parse *P, lp_ctx *X);

static int alt_grow(lp_ctx *X) {
    int cap = X->mcap ? 2 * X->mcap : 16;
    float *a = realloc(X->lps, (size_t)cap * sizeof *a);
    if (a) X->lps = a;
    int32_t *b = realloc(X->ids, (size_t)cap * sizeof *b);
    if (b) X->ids = b;
    size_t *o = realloc(X->offs, (size_t)cap * sizeof *o);
    if (o) X->offs = o;
    if (!a || !b || !o) return -1;
    X->mcap = cap;
    return 0;
}

/* Append an alternative (its text, id and logprob) to the row being read. -1: out of memory. */
static inline int alt_push(lp_ctx *X, const lp_entry *t) {
    if (X->m == X->mcap && alt_grow(X)) return -1;
    size_t off = entry_text(X, t);
    if (!off) return -1;
    X->offs[X->m] = off;
    X->ids[X->m] = entry_id(t);
    X->lps[X->m] = t->logprob < -1e30 ? -INFINITY : (float)t->logprob;
    X->m++;
    return 0;
}

enum { K_END = 0, K_TOKEN, K_LOGPROB, K_BYTES, K_TOP, K_OTHER };

/* The next key of an entry object, matched with its quotes and colon in one comparison where the JSON
 * is compact (as every server writes it); anything else goes through the general scanner. */
static int entry_key(scan *s, int *first) {
    int r = list_next(s, first, '}');
    if (r <= 0) return r; /* K_END or -1 */
    if (s->end - s->p >= 16 && s->p[0] == '"') {
        const char *p = s->p;
        if (memcmp(p, "\"token\":", 8) == 0) return s->p += 8, K_TOKEN;
        if (memcmp(p, "\"logprob\":", 10) == 0) return s->p += 10, K_LOGPROB;
        if (memcmp(p, "\"bytes\":", 8) == 0) return s->p += 8, K_BYTES;
        if (memcmp(p, "\"top_logprobs\":", 15) == 0) return s->p += 15, K_TOP;
    }
    sspan k;
    if (str(s, &k) || expect(s, ':')) return -1;
    return key_eq(&k, "token", 5) ? K_TOKEN : key_eq(&k, "logprob", 7) ? K_LOGPROB : key_eq(&k, "bytes", 5) ? K_BYTES
           : key_eq(&k, "top_logprobs", 12) ? K_TOP : K_OTHER;
}

static int nomem(parse *P) { return kd_error_set(P->err, KD_ERR_NOMEM, "out of memory for logprobs"), -1; }

/* One entry object; level 0 (a response token) also reads its top_logprobs into X. */
static int read_entry(parse *P, lp_ctx *X, int level, lp_entry *f) {
    scan *s = &P->s;
    memset(f, 0, sizeof *f);
    int first = 1, key;
    if (obj_begin(s)) return bad(P);
    while ((key = entry_key(s, &first)) > 0) {
        int c = peek(s);
        if (key == K_TOKEN && c == '"') {
            if (str(s, &f->token)) return bad(P);
            f->has_token = 1;
        } else if (key == K_LOGPROB && (c == '-' || (c >= '0' && c <= '9'))) {
            if (num(s, &f->logprob)) return bad(P);
            f->has_logprob = 1;
        } else if (key == K_BYTES && c == '[') {
            int br = bytes_array(s, X, f);
            if (br) return br == -2 ? nomem(P) : bad(P);
        } else if (level == 0 && key == K_TOP && c == '[') {
            if (top_row(P, X)) return -1;
        } else if (skip(s)) return bad(P);
    }
    return key < 0 ? bad(P) : 0;
}

static int top_row(parse *P, lp_ctx *X) {
    scan *s = &P->s;
    int first = 1, r;
    X->m = 0; /* a repeated key: the last one wins */
    X->top_err = 0;
    arr_begin(s);
    for (int j = 0; (r = arr_next(s, &first)) == 1; j++) {
        if (j >= LP_MAX_K)
            return kd_error_set(P->err, KD_ERR_PARSE, "teacher response: more than %d top_logprobs per token is too many", LP_MAX_K), -1;
        lp_entry t;
        t.nbytes = 0;
        t.bytes_off = 0;
        if (peek(s) != '{') {
            if (skip(s)) return bad(P);
            t.has_logprob = 0;
        } else if (read_entry(P, X, 1, &t)) return -1;
        if (!t.has_logprob) {
            if (!X->top_err) X->top_err = j + 1;
            continue;
        }
        if (alt_push(X, &t)) return nomem(P);
    }
    return r < 0 ? bad(P) : 0;
}

/* ---- the lean reader: rows as servers write them ----
 * Every server we know writes a row compact and in one key order:
 *   {"token":"<",  "logprob":-0.0218,"bytes":[60],"top_logprobs":[{"token":"<","logprob":-0.0218,"bytes":[60]},...]}
 * (without the blanks; bytes may be missing). The reader below takes that and nothing else, with
 * fixed-string compares and plain loops instead of the general scanner's per-value dispatch: a
 * third of the time on a logprobs answer, which is nothing but rows. Anything else in a row (other
 * keys, another order, blanks, long numbers, a short body) sends that row to read_entry. */

/* b,b,...] after the '[': integers of one to three digits, kept modulo 256 in the arena (which has room
 * for 80 bytes). NULL for anything else. */
static inline const char *lean_bytes(const char *p, const char *e, lp_ctx *X, lp_entry *f) {
    char *o0 = X->arena + X->alen, *o = o0;
    for (;;) {
        if (e - p < 8 || o - o0 >= 64) return NULL;
        unsigned v = (unsigned)(unsigned char)*p - '0';
        if (v > 9) return NULL;
        p++;
        if (v && is_digit(*p)) {
            v = v * 10 + (unsigned)(*p++ - '0');
            if (is_digit(*p)) v = v * 10 + (unsigned)(*p++ - '0');
        }
        *o++ = (char)(unsigned char)(v & 0xff);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p != ']') return NULL;
        break;
    }
    f->bytes_off = X->alen;
    f->nbytes = (int)(o - o0);
    *o++ = 0;
    X->alen = (size_t)(o - X->arena);
    return p + 1;
}

/* {"token":"..","logprob":L,"bytes":[..] up to the entry's next key or its end (f filled, f zeroed by
 * the caller). NULL when the entry starts any other way. */
static inline const char *lean_head(const char *p, const char *e, lp_ctx *X, lp_entry *f) {
    if (e - p < 96 || memcmp(p, "{\"token\":\"", 10) != 0) return NULL;
    p += 10;
    const char *b = p;
    while (p < e && !STR_STOP[(unsigned char)*p]) p++;
    if (p < e && *p == '"') {
        f->token = (sspan){b, p, 0};
        p++;
    } else { /* escapes: the general string reader, from the opening quote */
        scan t = {b - 1, e, b - 1, 0};
        if (str(&t, &f->token)) return NULL;
        p = t.p;
    }
    f->has_token = 1;
    if (e - p < 64 || memcmp(p, ",\"logprob\":", 11) != 0) return NULL;
    p += 11;
    const char *q = lean_number(p, &f->logprob);
    if (!q) {
        scan t = {p, e, p, 0};
        if (num(&t, &f->logprob)) return NULL;
        q = t.p;
    }
    p = q;
    f->has_logprob = 1;
    if (e - p >= 10 && memcmp(p, ",\"bytes\":[", 10) == 0) p = lean_bytes(p + 10, e, X, f);
    return p;
}

/* One row. Returns 1 with f and X's alternatives filled and s->p after the row; 0 when the row is
 * written some other way (X as it was: read_entry reads the row again); -1 out of memory. */
static int lean_row(scan *s, lp_ctx *X, lp_entry *f) {
    const char *p = s->p, *e = s->end;
    size_t alen0 = X->alen;
    memset(f, 0, sizeof *f);
    X->m = 0;
    if (arena_room(X, 128)) return -1;
    if (!(p = lean_head(p, e, X, f))) goto back;
    if (e - p >= 18 && memcmp(p, ",\"top_logprobs\":[", 17) == 0) {
        p += 17;
        if (*p == ']') p++;
        else
            for (;;) {
                if (X->m >= LP_MAX_K) goto back; /* read_entry says what is wrong */
                if (arena_room(X, 128)) return -1;
                lp_entry t;
                t.nbytes = 0; /* lean_head sets the rest */
                t.bytes_off = 0;
                if (!(p = lean_head(p, e, X, &t)) || e - p < 2 || *p != '}') goto back;
                p++;
                if (alt_push(X, &t)) return -1;
                if (*p == ',') {
                    p++;
                    continue;
                }
                if (*p != ']') goto back;
                p++;
                break;
            }
    }
    if (p >= e || *p != '}') goto back;
    s->p = p + 1;
    return 1;
back:
    X->alen = alen0;
    X->m = 0;
    return 0;
}

static int parse_lp_content(parse *P) {
    scan *s = &P->s;
    if (peek(s) == 'n') return lit(s, "null") ? bad(P) : 0;
    if (peek(s) != '[') return skip(s) ? bad(P) : 0;
    kd_teacher_logprobs *lp = &P->c->lp;
    kd_teacher_logprobs_free(lp); /* a repeated key: the last one wins */
    lp_ctx X;
    memset(&X, 0, sizeof X);
    /* token texts are about one byte in fifteen of a body: an eighth, allocated once, instead of doubling */
    if (arena_room(&X, (size_t)(s->end - s->p) / 8 + 256)) return nomem(P);
    int first = 1, r, rc = -1;
    size_t n = 0, ncap = 0, k = 0;
    arr_begin(s);
    while ((r = arr_next(s, &first)) == 1) {
        const char *b = s->p;
        lp_entry f;
        if (peek(s) != '{') {
            fail(P, "logprobs.content[%zu] is not an object", n, 0);
            goto out;
        }
        X.m = 0;
        X.top_err = 0;
        int lean = lean_row(s, &X, &f);
        if (lean < 0) {
            nomem(P);
            goto out;
        }
        if (!lean && read_entry(P, &X, 0, &f)) goto out;
        if (!f.has_logprob) {
            fail(P, "logprobs.content[%zu].logprob is missing", n, 0);
            goto out;
        }
        if (X.top_err) {
            fail(P, "logprobs.content[%zu].top_logprobs[%zu].logprob is missing", n, (size_t)X.top_err - 1);
            goto out;
        }
        size_t off = entry_text(&X, &f);
        if (!off) {
            nomem(P);
            goto out;
        }
        size_t m = (size_t)X.m;
        if (n == ncap || m > k) {
            /* one allocation for the arrays; the first row's size says about how many rows the rest of
             * the body holds. A wider row moves the rows to the wider stride. */
            size_t want = n < ncap ? ncap : ncap ? 2 * ncap : 2 + (size_t)(s->end - s->p) / (size_t)(s->p - b + 1);
            if (kd_teacher_logprobs_reshape(lp, n, want, m > k ? m : k ? k : 1)) {
                nomem(P);
                goto out;
            }
            ncap = want;
            if (m > k) k = m;
            lp->k = (int)k;
        }
        lp->tokens[n] = (char *)(uintptr_t)off;
        lp->token_ids[n] = entry_id(&f);
        lp->token_logprobs[n] = (float)f.logprob;
        size_t at = n * k;
        for (size_t j = 0; j < m; j++) {
            lp->topk_tokens[at + j] = (char *)(uintptr_t)X.offs[j];
            lp->topk_ids[at + j] = X.ids[j];
            lp->topk_logprobs[at + j] = X.lps[j];
        }
        for (size_t j = m; j < k; j++) {
            lp->topk_tokens[at + j] = NULL;
            lp->topk_ids[at + j] = -1;
            lp->topk_logprobs[at + j] = -INFINITY;
        }
        lp->tail_logprob[n] = kd_tail_of(X.lps, m);
        lp->n = (int)++n;
    }
    if (r < 0) {
        bad(P);
        goto out;
    }
    if (n == 0) { /* the same empty arrays the reference makes */
        kd_teacher_logprobs_free(lp);
        if (kd_teacher_logprobs_alloc(lp, 0, 0)) {
            nomem(P);
            goto out;
        }
    } else {
        char *a = realloc(X.arena, X.alen); /* give back what the strings do not use */
        if (a) X.arena = a;
        lp->arena = X.arena;
        X.arena = NULL;
        for (size_t i = 0; i < n; i++) lp->tokens[i] = lp->arena + ((uintptr_t)lp->tokens[i] - 1);
        for (size_t i = 0; i < n * k; i++)
            if (lp->topk_tokens[i]) lp->topk_tokens[i] = lp->arena + ((uintptr_t)lp->topk_tokens[i] - 1);
    }
    rc = 0;
out:
    if (rc) { /* the arrays hold offsets, not strings: drop them */
        if (lp->tokens) memset(lp->tokens, 0, n * sizeof *lp->tokens);
        if (lp->topk_tokens) memset(lp->topk_tokens, 0, n * k * sizeof *lp->topk_tokens);
        kd_teacher_logprobs_free(lp);
    }
    free(X.arena);
    free(X.lps);
    free(X.ids);
    free(X.offs);
    return rc;
}

static int parse_choice(parse *P) {
    scan *s = &P->s;
    int first = 1, r;
    sspan k, v;
    if (peek(s) != '{') return skip(s) ? bad(P) : 0;
    obj_begin(s);
    while ((r = obj_next(s, &first, &k)) == 1) {
        if (key_is(&k, "message")) {
            if (parse_message(P)) return -1;
        } else if (key_is(&k, "finish_reason") && peek(s) == '"') {
            if (str(s, &v)) return bad(P);
            free(P->c->finish_reason);
            P->c->finish_reason = str_dup(&v);
        } else if (key_is(&k, "logprobs") && peek(s) == '{') {
            int f2 = 1, r2;
            sspan k2;
            obj_begin(s);
            while ((r2 = obj_next(s, &f2, &k2)) == 1) {
                if (key_is(&k2, "content")) {
                    if (parse_lp_content(P)) return -1;
                } else if (skip(s)) return bad(P);
            }
            if (r2 < 0) return bad(P);
        } else if (skip(s)) return bad(P);
    }
    return r < 0 ? bad(P) : 0;
}

int kd_teacher_parse_chat_response(const char *body, size_t len, kd_teacher_completion *c, kd_error *err) {
    kd_error local;
    if (!err) err = &local;
    kd_error_clear(err);
    parse P = {{body, body + len, body, 0}, c, err, 0, NULL};
    scan *s = &P.s;
    int first = 1, r;
    sspan k, v;
    if (obj_begin(s)) return bad(&P), err->code;
    while ((r = obj_next(s, &first, &k)) == 1) {
        if (key_is(&k, "choices") && peek(s) == '[') {
            int f2 = 1;
            arr_begin(s);
            for (int i = 0; (r = arr_next(s, &f2)) == 1; i++) {
                if (i == 0 ? parse_choice(&P) : (skip(s) ? bad(&P) : 0)) goto out;
            }
            if (r < 0) {
                bad(&P);
                goto out;
            }
        } else if (key_is(&k, "usage") && peek(s) == '{') {
            int f2 = 1, r2;
            sspan k2;
            obj_begin(s);
            while ((r2 = obj_next(s, &f2, &k2)) == 1) {
                int64_t x;
                int c2 = peek(s);
                if ((key_is(&k2, "prompt_tokens") || key_is(&k2, "completion_tokens")) && (c2 == '-' || isdigit(c2))) {
                    if (num_int(s, &x)) {
                        bad(&P);
                        goto out;
                    }
                    if (key_is(&k2, "prompt_tokens")) c->prompt_tokens = x;
                    else c->completion_tokens = x;
                } else if (skip(s)) {
                    bad(&P);
                    goto out;
                }
            }
            if (r2 < 0) {
                bad(&P);
                goto out;
            }
        } else if (key_is(&k, "error") && peek(s) == '{') {
            int f2 = 1, r2;
            sspan k2;
            obj_begin(s);
            while ((r2 = obj_next(s, &f2, &k2)) == 1) {
                if (key_is(&k2, "message") && peek(s) == '"') {
                    if (str(s, &v)) {
                        bad(&P);
                        goto out;
                    }
                    free(P.error_message);
                    P.error_message = str_dup(&v);
                } else if (skip(s)) {
                    bad(&P);
                    goto out;
                }
            }
            if (r2 < 0) {
                bad(&P);
                goto out;
            }
        } else if (skip(s)) {
            bad(&P);
            goto out;
        }
    }
    if (r < 0) {
        bad(&P);
        goto out;
    }
    if (peek(s) != -1) {
        bad(&P);
        goto out;
    }
    if (!P.have_message) {
        kd_error_set(err, KD_ERR_PARSE, "teacher response: no choices[0].message%s%.200s", P.error_message ? ": " : "",
                     P.error_message ? P.error_message : "");
        goto out;
    }
    if (!c->text) c->text = kd_strdup("");
    if (!c->finish_reason) c->finish_reason = kd_strdup("");
out:
    free(P.error_message);
    return err->code;
}
