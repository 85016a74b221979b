/* The JSON scanner of the teacher's response parsers (response.c, prompt_lp.c): one pass over the
 * bytes, the grammar of everything read or skipped checked, numbers computed as they are read
 * (not a public API). */
#ifndef KD_TEACHER_JSCAN_H
#define KD_TEACHER_JSCAN_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common.h"

typedef struct scan {
    const char *p, *end, *base;
    int depth;
} scan;

typedef struct sspan {
    const char *b, *e; /* raw bytes between the quotes */
    int esc;           /* has backslash escapes */
} sspan;

static inline void ws(scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

static inline int peek(scan *s) {
    if (s->p < s->end && (unsigned char)*s->p > ' ') return (unsigned char)*s->p; /* compact JSON: no blanks */
    ws(s);
    return s->p < s->end ? (unsigned char)*s->p : -1;
}

static inline int expect(scan *s, char c) {
    if (peek(s) != (unsigned char)c) return -1;
    s->p++;
    return 0;
}

static inline int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Bytes that end a run of plain string characters: the quote, the backslash, control characters. */
static const unsigned char STR_STOP[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, ['\\'] = 1};

static inline int str(scan *s, sspan *out) {
    if (expect(s, '"')) return -1;
    const char *b = s->p;
    int esc = 0;
    for (;;) {
        while (s->p < s->end && !STR_STOP[(unsigned char)*s->p]) s->p++;
        if (s->p >= s->end) return -1;
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            out->b = b;
            out->e = s->p;
            out->esc = esc;
            s->p++;
            return 0;
        }
        if (c < 0x20) return -1;
        /* a backslash */
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
        if (!strchr("\"\\/bfnrt", e) || !e) return -1;
        s->p += 2;
    }
}

/* Decode a string span into out (room for e-b bytes + NUL); returns the length. */
static inline size_t unescape(const sspan *sp, char *out) {
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

static inline char *str_dup(const sspan *sp) {
    char *o = malloc((size_t)(sp->e - sp->b) + 1);
    if (o) unescape(sp, o);
    return o;
}

static inline int is_digit(char c) { return (unsigned)(c - '0') < 10; }

/* Eight ASCII digits at p as one number, or -1 when they are not all digits (SWAR, little-endian). */
static inline int64_t digits8(const char *p) {
    uint64_t x;
    memcpy(&x, p, 8);
    if (((x & 0xF0F0F0F0F0F0F0F0ULL) | (((x + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4)) != 0x3333333333333333ULL)
        return -1;
    x -= 0x3030303030303030ULL;
    x = x * 10 + (x >> 8);
    x = (((x & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32))) + (((x >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >> 32;
    return (int64_t)x;
}

/* A JSON number: grammar checked and value computed in the same pass. Clinger's fast path: a mantissa
 * below 2^53 divided by an exact power of ten (<= 1e22) is correctly rounded by one IEEE division, and
 * logprobs are written like -4.77221203; anything else (exponents, long mantissas) goes to strtod. */
static const double P10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                             1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline int num(scan *s, double *out) {
    ws(s);
    const char *b = s->p, *p = s->p, *e = s->end;
    int neg = 0, frac = 0, simple = 1;
    uint64_t m = 0;
    if (p < e && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= e || !is_digit(*p)) return -1;
    if (*p == '0') p++;
    else
        for (; p < e && is_digit(*p); p++) {
            if (m >= (1ULL << 53) / 10) simple = 0;
            else m = m * 10 + (uint64_t)(*p - '0');
        }
    if (p < e && *p == '.') {
        p++;
        if (p >= e || !is_digit(*p)) return -1;
        int64_t d8;
        while (e - p >= 8 && m < (1ULL << 53) / 100000000 && frac <= 14 && (d8 = digits8(p)) >= 0) {
            m = m * 100000000 + (uint64_t)d8;
            frac += 8;
            p += 8;
        }
        for (; p < e && is_digit(*p); p++) {
            if (m >= (1ULL << 53) / 10 || frac >= 22) simple = 0;
            else {
                m = m * 10 + (uint64_t)(*p - '0');
                frac++;
            }
        }
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        simple = 0;
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || !is_digit(*p)) return -1;
        while (p < e && is_digit(*p)) p++;
    }
    s->p = p;
    if (!out) return 0;
    if (simple) {
        double x = (double)m / P10[frac];
        *out = neg ? -x : x;
        return 0;
    }
    char buf[64];
    size_t n = (size_t)(p - b);
    if (n >= sizeof buf) {
        /* a long literal: strtod on a copy big enough (the body is not NUL-terminated) */
        char *big = malloc(n + 1);
        if (!big) return -1;
        memcpy(big, b, n);
        big[n] = 0;
        *out = strtod(big, NULL);
        free(big);
        return 0;
    }
    memcpy(buf, b, n);
    buf[n] = 0;
    *out = strtod(buf, NULL);
    return 0;
}

/* A count: a JSON number read as jansson's json_integer_value reads it, 0 for a real (9.0 included). */
static inline int num_int(scan *s, int64_t *out) {
    ws(s);
    const char *b = s->p;
    if (num(s, NULL)) return -1;
    *out = 0;
    for (const char *p = b; p < s->p; p++)
        if (*p == '.' || *p == 'e' || *p == 'E') return 0;
    uint64_t v = 0;
    for (const char *p = b + (*b == '-'); p < s->p; p++) v = v * 10 + (uint64_t)(*p - '0'); /* jansson refuses what overflows */
    *out = *b == '-' ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* One element of a `bytes` array: a JSON number whose value as jansson reads it (an integer, or 0 for a
 * real) is kept modulo 256, which is all a byte needs. */
static inline int num_byte(scan *s, unsigned *out) {
    ws(s);
    const char *p = s->p, *e = s->end;
    int neg = 0, real = 0;
    unsigned v = 0;
    if (p < e && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= e || !is_digit(*p)) return -1;
    if (*p == '0') p++;
    else
        for (; p < e && is_digit(*p); p++) v = (v * 10 + (unsigned)(*p - '0')) & 0xff;
    if (p < e && *p == '.') {
        real = 1;
        p++;
        if (p >= e || !is_digit(*p)) return -1;
        while (p < e && is_digit(*p)) p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        real = 1;
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || !is_digit(*p)) return -1;
        while (p < e && is_digit(*p)) p++;
    }
    s->p = p;
    *out = real ? 0 : neg ? (0u - v) & 0xff : v;
    return 0;
}

static inline int lit(scan *s, const char *w) {
    size_t n = strlen(w);
    ws(s);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0) return -1;
    s->p += n;
    return 0;
}

static inline int skip(scan *s);

/* The next element of an object or array closed by `close`: 0 at the end, -1 on a missing comma. */
static inline int list_next(scan *s, int *first, char close) {
    int c = peek(s);
    if (c == close) {
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

/* Objects and arrays: call *_next until it returns 0 (end) or -1 (error). */
static inline int obj_next(scan *s, int *first, sspan *key) {
    int r = list_next(s, first, '}');
    if (r <= 0) return r;
    if (str(s, key) || expect(s, ':')) return -1;
    return 1;
}

static inline int obj_begin(scan *s) {
    if (expect(s, '{') || ++s->depth > 64) return -1;
    return 0;
}

static inline int arr_next(scan *s, int *first) { return list_next(s, first, ']'); }

static inline int arr_begin(scan *s) {
    if (expect(s, '[') || ++s->depth > 64) return -1;
    return 0;
}

static inline int skip(scan *s) {
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

static inline int key_is(const sspan *k, const char *w) {
    size_t n = strlen(w);
    return !k->esc && (size_t)(k->e - k->b) == n && memcmp(k->b, w, n) == 0;
}

/* e^x for x < 0, for the tail's sum; relative error below 4e-16 (checked against libm over [-700, 0]).
 * x = (32n + j) ln2/32 + r with |r| <= ln2/64: e^x = 2^n * 2^(j/32) * e^r, e^r by a degree-6 Taylor
 * polynomial (remainder below 4e-18), 2^(j/32) from a table (correctly rounded), 2^n from its bits.
 * x is clamped at -700, beyond which no sum of probabilities notices. libm's exp, one call per
 * alternative, was a quarter of the parse; this one is a short chain of multiply-adds. */
static const double EXP2_J32[32] = {
    0x1.0000000000000p+0, 0x1.059b0d3158574p+0, 0x1.0b5586cf9890fp+0, 0x1.11301d0125b51p+0,
    0x1.172b83c7d517bp+0, 0x1.1d4873168b9aap+0, 0x1.2387a6e756238p+0, 0x1.29e9df51fdee1p+0,
    0x1.306fe0a31b715p+0, 0x1.371a7373aa9cbp+0, 0x1.3dea64c123422p+0, 0x1.44e086061892dp+0,
    0x1.4bfdad5362a27p+0, 0x1.5342b569d4f82p+0, 0x1.5ab07dd485429p+0, 0x1.6247eb03a5585p+0,
    0x1.6a09e667f3bcdp+0, 0x1.71f75e8ec5f74p+0, 0x1.7a11473eb0187p+0, 0x1.82589994cce13p+0,
    0x1.8ace5422aa0dbp+0, 0x1.93737b0cdc5e5p+0, 0x1.9c49182a3f090p+0, 0x1.a5503b23e255dp+0,
    0x1.ae89f995ad3adp+0, 0x1.b7f76f2fb5e47p+0, 0x1.c199bdd85529cp+0, 0x1.cb720dcef9069p+0,
    0x1.d5818dcfba487p+0, 0x1.dfc97337b9b5fp+0, 0x1.ea4afa2a490dap+0, 0x1.f50765b6e4540p+0,
};

static inline double exp_neg(double x) {
    x = x < -700 ? -700 : x;
    double t = x * 0x1.71547652b82fep+5 + 0x1.8p52, kf = t - 0x1.8p52; /* round(x * 32 / ln2) */
    double r = (x - kf * 0x1.62e42feep-6) - kf * 0x1.a39ef35793c76p-38; /* ln2/32 split: the first product is exact */
    double p = 1 + r * (1 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720))))));
    int64_t k = (int64_t)kf + 32768; /* kept positive, so that >> and & split it into n and j */
    uint64_t bits = (uint64_t)((k >> 5) - 1024 + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return EXP2_J32[k & 31] * p * scale;
}

/* log of the mass outside a row's top alternatives: 1 - the sum of their probabilities, summed in
 * order. A logprob >= 0 alone makes the mass 1 or more: no tail. */
static inline float kd_tail_of(const float *lps, size_t m) {
    double mass = 0;
    int whole = 0;
    for (size_t j = 0; j < m; j++) {
        if (!isfinite(lps[j])) continue;
        if (lps[j] >= 0) whole = 1;
        else mass += exp_neg((double)lps[j]);
    }
    /* log1p keeps a small mass exact; above one half, 1 - mass is exact and log is cheaper */
    return whole || mass >= 1.0 ? -INFINITY : mass < 0.5 ? (float)log1p(-mass) : (float)log(1.0 - mass);
}

/* -?D+.D+ with at most 15 digits, as logprobs are written (-4.77221203): the value num() computes for
 * it (m / 10^frac, exact since m < 2^53). NULL for anything else, which num() then reads. Reads at
 * most 36 bytes from p. (Counting and converting the digits a word at a time, SWAR, measured slower
 * here than these loops.) */
static inline const char *lean_number(const char *p, double *out) {
    int neg = *p == '-', nd = 0, frac = 0;
    uint64_t m = 0;
    p += neg;
    if (*p == '0') {
        p++;
        nd = 1;
    } else
        while (is_digit(*p) && nd < 16) {
            m = m * 10 + (uint64_t)(*p++ - '0');
            nd++;
        }
    if (nd == 0 || *p != '.') return NULL;
    p++;
    while (is_digit(*p) && nd < 16) {
        m = m * 10 + (uint64_t)(*p++ - '0');
        nd++;
        frac++;
    }
    if (frac == 0 || nd > 15 || is_digit(*p) || (*p | 0x20) == 'e') return NULL;
    double x = (double)m / P10[frac];
    *out = neg ? -x : x;
    return p;
}

#endif
