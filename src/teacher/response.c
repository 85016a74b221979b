/* Fast parser for OpenAI chat-completion responses (declared in include/kdstep/teacher.h).
 *
 * A response with top-k logprobs is mostly a long array of small objects; building a jansson tree for
 * it costs ~100 allocations per token. This scanner walks the bytes once (twice over the logprobs
 * array: once to size it), validates the JSON grammar of everything it reads or skips, and copies token
 * strings into one arena. kd_teacher_parse_chat_response_ref (jansson) is the reference it is tested and
 * fuzzed against.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "kdstep/teacher.h"

typedef struct scan {
    const char *p, *end, *base;
    int depth;
} scan;

typedef struct sspan {
    const char *b, *e; /* raw bytes between the quotes */
    int esc;           /* has backslash escapes */
} sspan;

static void ws(scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

static int peek(scan *s) {
    ws(s);
    return s->p < s->end ? (unsigned char)*s->p : -1;
}

static int expect(scan *s, char c) {
    if (peek(s) != (unsigned char)c) return -1;
    s->p++;
    return 0;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int str(scan *s, sspan *out) {
    if (expect(s, '"')) return -1;
    const char *b = s->p;
    int esc = 0;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            out->b = b;
            out->e = s->p;
            out->esc = esc;
            s->p++;
            return 0;
        }
        if (c < 0x20) return -1;
        if (c == '\\') {
            esc = 1;
            if (s->p + 1 >= s->end) return -1;
            char e = s->p[1];
            if (e == 'u') {
                if (s->p + 6 > s->end) return -1;
                for (int i = 2; i < 6; i++)
                    if (hexval((unsigned char)s->p[i]) < 0) return -1;
                s->p += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", e)) return -1;
            s->p += 2;
            continue;
        }
        s->p++;
    }
    return -1;
}

/* Decode a string span into out (room for e-b bytes + NUL); returns the length. */
static size_t unescape(const sspan *sp, char *out) {
    if (!sp->esc) {
        size_t n = (size_t)(sp->e - sp->b);
        memcpy(out, sp->b, n);
        out[n] = 0;
        return n;
    }
    size_t n = 0;
    for (const char *p = sp->b; p < sp->e;) {
        if (*p != '\\') {
            out[n++] = *p++;
            continue;
        }
        char e = p[1];
        if (e == 'u') {
            unsigned cp = 0;
            for (int i = 2; i < 6; i++) cp = cp * 16 + (unsigned)hexval((unsigned char)p[i]);
            p += 6;
            if (cp >= 0xD800 && cp < 0xDC00 && p + 6 <= sp->e && p[0] == '\\' && p[1] == 'u') {
                unsigned lo = 0;
                for (int i = 2; i < 6; i++) lo = lo * 16 + (unsigned)hexval((unsigned char)p[i]);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            if (cp < 0x80) out[n++] = (char)cp;
            else if (cp < 0x800) {
                out[n++] = (char)(0xC0 | (cp >> 6));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out[n++] = (char)(0xE0 | (cp >> 12));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[n++] = (char)(0xF0 | (cp >> 18));
                out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            }
            continue;
        }
        char d = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
        out[n++] = d;
        p += 2;
    }
    out[n] = 0;
    return n;
}

static char *str_dup(const sspan *sp) {
    char *o = malloc((size_t)(sp->e - sp->b) + 1);
    if (o) unescape(sp, o);
    return o;
}

static int num(scan *s, double *out) {
    ws(s);
    const char *b = s->p;
    if (s->p < s->end && *s->p == '-') s->p++;
    if (s->p >= s->end || !isdigit((unsigned char)*s->p)) return -1;
    if (*s->p == '0') s->p++;
    else
        while (s->p < s->end && isdigit((unsigned char)*s->p)) s->p++;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (s->p >= s->end || !isdigit((unsigned char)*s->p)) return -1;
        while (s->p < s->end && isdigit((unsigned char)*s->p)) s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        if (s->p >= s->end || !isdigit((unsigned char)*s->p)) return -1;
        while (s->p < s->end && isdigit((unsigned char)*s->p)) s->p++;
    }
    if (out) {
        /* Clinger's fast path: <= 19 digits and a small power of ten are exact in double arithmetic
         * (logprobs are written like -4.77221203); anything else goes to strtod. */
        static const double P10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                     1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
        const char *q = b;
        int neg = *q == '-';
        q += neg;
        uint64_t m = 0;
        int digits = 0, frac = 0, seen_dot = 0, simple = 1;
        for (; q < s->p; q++) {
            if (*q == '.') {
                seen_dot = 1;
                continue;
            }
            if (*q == 'e' || *q == 'E') {
                simple = 0;
                break;
            }
            if (m == 0 && *q == '0' && !seen_dot) continue;
            if (++digits > 19) {
                simple = 0;
                break;
            }
            m = m * 10 + (uint64_t)(*q - '0');
            frac += seen_dot;
        }
        if (simple && m < (1ULL << 53) && frac <= 22) {
            double x = (double)m / P10[frac];
            *out = neg ? -x : x;
            return 0;
        }
        char buf[64];
        size_t n = (size_t)(s->p - b);
        if (n >= sizeof buf) n = sizeof buf - 1;
        memcpy(buf, b, n);
        buf[n] = 0;
        *out = strtod(buf, NULL);
    }
    return 0;
}

static int lit(scan *s, const char *w) {
    size_t n = strlen(w);
    ws(s);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0) return -1;
    s->p += n;
    return 0;
}

static int skip(scan *s);

/* Objects and arrays: call *_next until it returns 0 (end) or -1 (error). */
static int obj_next(scan *s, int *first, sspan *key) {
    int c = peek(s);
    if (c == '}') {
        s->p++;
        s->depth--;
        return 0;
    }
    if (!*first) {
        if (c != ',') return -1;
        s->p++;
    }
    *first = 0;
    if (str(s, key) || expect(s, ':')) return -1;
    return 1;
}

static int obj_begin(scan *s) {
    if (expect(s, '{') || ++s->depth > 64) return -1;
    return 0;
}

static int arr_next(scan *s, int *first) {
    int c = peek(s);
    if (c == ']') {
        s->p++;
        s->depth--;
        return 0;
    }
    if (!*first) {
        if (c != ',') return -1;
        s->p++;
    }
    *first = 0;
    return 1;
}

static int arr_begin(scan *s) {
    if (expect(s, '[') || ++s->depth > 64) return -1;
    return 0;
}

static int skip(scan *s) {
    int c = peek(s), r, first = 1;
    sspan k;
    switch (c) {
    case '{':
        if (obj_begin(s)) return -1;
        while ((r = obj_next(s, &first, &k)) == 1)
            if (skip(s)) return -1;
        return r;
    case '[':
        if (arr_begin(s)) return -1;
        while ((r = arr_next(s, &first)) == 1)
            if (skip(s)) return -1;
        return r;
    case '"': return str(s, &k);
    case 't': return lit(s, "true");
    case 'f': return lit(s, "false");
    case 'n': return lit(s, "null");
    default: return num(s, NULL);
    }
}

static int key_is(const sspan *k, const char *w) {
    size_t n = strlen(w);
    return !k->esc && (size_t)(k->e - k->b) == n && memcmp(k->b, w, n) == 0;
}

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
                        free(t->name);
                        t->name = str_dup(&v);
                    } else if (key_is(&k2, "arguments") && peek(s) == '"') {
                        if (str(s, &v)) return bad(P);
                        free(t->arguments);
                        t->arguments = str_dup(&v);
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
                free(P->c->text);
                P->c->text = str_dup(&v);
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

/* One token entry's text: "bytes" when present and non-empty, else the unescaped "token". */
typedef struct tok_fields {
    sspan token;
    int has_token;
    const char *bytes_b; /* the '[' of the bytes array */
    int nbytes;
    double logprob;
    int has_logprob;
    const char *top_b; /* the '[' of top_logprobs */
} tok_fields;

static int read_entry(parse *P, tok_fields *f) {
    scan *s = &P->s;
    memset(f, 0, sizeof *f);
    int first = 1, r;
    sspan k;
    if (obj_begin(s)) return bad(P);
    while ((r = obj_next(s, &first, &k)) == 1) {
        int c = peek(s);
        if (key_is(&k, "token") && c == '"') {
            if (str(s, &f->token)) return bad(P);
            f->has_token = 1;
        } else if (key_is(&k, "logprob") && c != 'n' && c != '"' && c != '[' && c != '{' && c != 't' && c != 'f') {
            if (num(s, &f->logprob)) return bad(P);
            f->has_logprob = 1;
        } else if (key_is(&k, "bytes") && c == '[') {
            f->bytes_b = s->p;
            int f2 = 1, r2;
            arr_begin(s);
            while ((r2 = arr_next(s, &f2)) == 1) {
                if (num(s, NULL)) return bad(P);
                f->nbytes++;
            }
            if (r2 < 0) return bad(P);
        } else if (key_is(&k, "top_logprobs") && c == '[') {
            f->top_b = s->p;
            if (skip(s)) return bad(P);
        } else if (skip(s)) return bad(P);
    }
    return r < 0 ? bad(P) : 0;
}

static char *entry_text(const tok_fields *f, char **arena) {
    char *o = *arena;
    if (f->bytes_b && f->nbytes > 0 && f->nbytes < 4096) {
        scan b = {f->bytes_b, f->bytes_b + 1 + 8 * (size_t)f->nbytes + 4096, f->bytes_b, 0};
        /* the array was validated: read its integers directly */
        const char *p = f->bytes_b + 1;
        for (int i = 0; i < f->nbytes; i++) {
            while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t' || *p == '\r') p++;
            long v = strtol(p, (char **)&p, 10);
            o[i] = (char)(unsigned char)(v & 0xff);
        }
        (void)b;
        o[f->nbytes] = 0;
        *arena += f->nbytes + 1;
        return o;
    }
    size_t n = f->has_token ? unescape(&f->token, o) : (o[0] = 0, 0);
    *arena += n + 1;
    return o;
}

static int32_t entry_id(const tok_fields *f) {
    if (!f->has_token || f->token.esc) return -1;
    size_t n = (size_t)(f->token.e - f->token.b);
    if (n > 9 && n < 24 && memcmp(f->token.b, "token_id:", 9) == 0) {
        long v = 0;
        for (const char *p = f->token.b + 9; p < f->token.e; p++) {
            if (!isdigit((unsigned char)*p)) return -1;
            v = v * 10 + (*p - '0');
            if (v >= INT32_MAX) return -1;
        }
        return (int32_t)v;
    }
    return -1;
}

static int parse_lp_content(parse *P) {
    scan *s = &P->s;
    if (peek(s) == 'n') return lit(s, "null") ? bad(P) : 0;
    if (peek(s) != '[') return skip(s) ? bad(P) : 0;
    /* pass 1: how many tokens, how many columns; every entry validated */
    scan start = *s;
    int first = 1, r;
    size_t n = 0, k = 0;
    if (arr_begin(s)) return bad(P);
    while ((r = arr_next(s, &first)) == 1) {
        if (peek(s) != '{') return fail(P, "logprobs.content[%zu] is not an object", n, 0);
        tok_fields f;
        if (read_entry(P, &f)) return -1;
        if (!f.has_logprob) return fail(P, "logprobs.content[%zu].logprob is missing", n, 0);
        if (f.top_b) {
            scan t = {f.top_b, s->end, s->base, 0};
            int f2 = 1, r2;
            size_t m = 0;
            arr_begin(&t);
            while ((r2 = arr_next(&t, &f2)) == 1) {
                if (skip(&t)) return bad(P);
                m++;
            }
            if (m > k) k = m;
        }
        n++;
    }
    if (r < 0) return bad(P);
    if (k > 1024) return kd_error_set(P->err, KD_ERR_PARSE, "teacher response: %zu top_logprobs per token is too many", k), -1;
    kd_teacher_logprobs *lp = &P->c->lp;
    kd_teacher_logprobs_free(lp); /* a repeated key: the last one wins */
    if (kd_teacher_logprobs_alloc(lp, (int)n, (int)k)) return kd_error_set(P->err, KD_ERR_NOMEM, "out of memory for logprobs"), -1;
    /* decoded text is never longer than its JSON; one NUL per string */
    lp->arena = malloc((size_t)(s->p - start.p) + n * (k + 1) + 16);
    if (!lp->arena) return kd_error_set(P->err, KD_ERR_NOMEM, "out of memory for logprobs"), -1;
    char *arena = lp->arena;
    /* pass 2: fill */
    scan *saved = s;
    scan w = start;
    first = 1;
    arr_begin(&w);
    P->s = w;
    for (size_t i = 0; (r = arr_next(&P->s, &first)) == 1; i++) {
        tok_fields f;
        read_entry(P, &f);
        lp->tokens[i] = entry_text(&f, &arena);
        lp->token_ids[i] = entry_id(&f);
        lp->token_logprobs[i] = (float)f.logprob;
        double mass = 0;
        if (f.top_b) {
            scan keep = P->s;
            P->s.p = f.top_b;
            int f2 = 1;
            arr_begin(&P->s);
            for (size_t j = 0; arr_next(&P->s, &f2) == 1; j++) {
                tok_fields t;
                if (peek(&P->s) != '{' || read_entry(P, &t) || !t.has_logprob) {
                    P->s = keep;
                    *saved = P->s;
                    return fail(P, "logprobs.content[%zu].top_logprobs[%zu].logprob is missing", i, j);
                }
                size_t at = i * k + j;
                lp->topk_tokens[at] = entry_text(&t, &arena);
                lp->topk_ids[at] = entry_id(&t);
                lp->topk_logprobs[at] = t.logprob < -1e30 ? -INFINITY : (float)t.logprob;
                if (isfinite(lp->topk_logprobs[at])) mass += exp((double)lp->topk_logprobs[at]);
            }
            P->s = keep;
        }
        lp->tail_logprob[i] = mass < 1.0 ? (float)log1p(-mass) : -INFINITY;
    }
    return 0;
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
                double x;
                int c2 = peek(s);
                if ((key_is(&k2, "prompt_tokens") || key_is(&k2, "completion_tokens")) && (c2 == '-' || isdigit(c2))) {
                    if (num(s, &x)) {
                        bad(&P);
                        goto out;
                    }
                    if (key_is(&k2, "prompt_tokens")) c->prompt_tokens = (int64_t)x;
                    else c->completion_tokens = (int64_t)x;
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
