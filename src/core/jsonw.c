/* Compact JSON writer, byte-identical to jansson 2.14's json_dumps(v, JSON_COMPACT) (see jsonw.h).
 * jansson spends its time in a callback per token, utf8_iterate per character and snprintf per
 * number; here a string's plain runs are found eight bytes at a time, multi-byte UTF-8 is checked
 * inline (the same rules as jansson's utf8_check_full, so what json_dumps refuses is refused here),
 * integers are formatted two digits at a time and bytes go straight into one growing buffer. */
#include "kdstep/jsonw.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(json_int_t) == sizeof(long long), "JSON_INTEGER_FORMAT is expected to be lld");

#define JW_MIN_CAP 1024

/* After a failed allocation nothing more is written: the buffer is dropped so that every reserve fails. */
static void set_oom(kd_jsonw *w) {
    free(w->data);
    w->data = NULL;
    w->len = w->cap = 0;
    w->oom = 1;
}

static int grow(kd_jsonw *w, size_t need) {
    if (w->oom) return -1;
    if (need > SIZE_MAX / 2 - w->len) {
        set_oom(w);
        return -1;
    }
    size_t want = w->len + need + 1, cap = w->cap ? w->cap : JW_MIN_CAP;
    while (cap < want) cap *= 2;
    char *d = realloc(w->data, cap);
    if (!d) {
        set_oom(w);
        return -1;
    }
    w->data = d;
    w->cap = cap;
    return 0;
}

/* Room for need more bytes and the closing NUL. */
static inline int reserve(kd_jsonw *w, size_t need) {
    if (w->cap - w->len > need) return 0;
    return grow(w, need);
}

static inline void put_bytes(kd_jsonw *w, const char *s, size_t n) {
    if (reserve(w, n)) return;
    memcpy(w->data + w->len, s, n);
    w->len += n;
}

static inline void put_char(kd_jsonw *w, char c) {
    if (reserve(w, 1)) return;
    w->data[w->len++] = c;
}

static inline void terminate(kd_jsonw *w) {
    if (w->data) w->data[w->len] = '\0';
}

/* 0: copied as is; 1: escaped (below 0x20, '"', '\\'); 2: the first byte of a UTF-8 sequence or a
 * byte that cannot start one (checked by utf8_seq). */
static const uint8_t CLS[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0x80 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Whether any of the eight bytes is not class 0: below 0x20, '"', '\\' or 0x80 and above. A byte's
 * high bit is tested directly, so the subtractions below only see bytes under 0x80, where they are exact. */
static inline int word_special(uint64_t x) {
    uint64_t q = x ^ (ONES * '"'), b = x ^ (ONES * '\\');
    uint64_t t = ((x - ONES * 0x20) & ~x) | ((q - ONES) & ~q) | ((b - ONES) & ~b) | x;
    return (t & HIGHS) != 0;
}

/* Length of the valid UTF-8 sequence at p (2-4), or 0 where jansson's utf8_iterate fails: a
 * continuation or 0xC0/0xC1/0xF5+ lead byte, a truncated sequence, a value above U+10FFFF, a surrogate
 * or an overlong form. */
static inline size_t utf8_seq(const unsigned char *p, const unsigned char *end) {
    unsigned u = p[0];
    size_t n;
    uint32_t v;
    if (u >= 0xC2 && u <= 0xDF) n = 2, v = u & 0x1F;
    else if (u >= 0xE0 && u <= 0xEF) n = 3, v = u & 0x0F;
    else if (u >= 0xF0 && u <= 0xF4) n = 4, v = u & 0x07;
    else return 0;
    if ((size_t)(end - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000)) return 0; /* 2-byte overlongs are C0/C1 */
    return n;
}

static const char HEX[] = "0123456789ABCDEF";

/* The escape jansson writes for a class-1 byte; returns its length. */
static inline size_t escape(unsigned char c, char *o) {
    o[0] = '\\';
    switch (c) {
    case '"': o[1] = '"'; return 2;
    case '\\': o[1] = '\\'; return 2;
    case '\b': o[1] = 'b'; return 2;
    case '\f': o[1] = 'f'; return 2;
    case '\n': o[1] = 'n'; return 2;
    case '\r': o[1] = 'r'; return 2;
    case '\t': o[1] = 't'; return 2;
    default:
        o[1] = 'u', o[2] = '0', o[3] = '0', o[4] = HEX[c >> 4], o[5] = HEX[c & 15];
        return 6;
    }
}

enum { UTF8_ASIS, UTF8_REFUSE, UTF8_KEY };

/* A string literal. utf8: UTF8_ASIS copies bytes of class 2 unchecked; UTF8_REFUSE fails (-1) at
 * invalid UTF-8, leaving a partial literal the caller rolls back; UTF8_KEY does what json_dumps does
 * with such an object key: its dump_string stops at the bad byte, having written the opening quote
 * and everything up to the end of the last escape, and its caller ignores the failure and goes on with
 * ':' (jansson 2.14 writes {"a\n:1} for the key "a\nb\xff"). -1 also when memory runs out. */
static int put_string(kd_jsonw *w, const char *str, size_t n, int utf8) {
    const unsigned char *p = (const unsigned char *)str, *end = p + n;
    if (reserve(w, n + 2)) return -1;
    /* plain bytes are copied as they are scanned, a word at a time: the reserve above holds them all */
    char *o = w->data + w->len;
    *o++ = '"';
    size_t cut = (size_t)(o - w->data); /* where json_dumps would stop an invalid key: after the last escape */
    for (;;) {
        while (end - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            if (word_special(x)) break;
            memcpy(o, &x, 8);
            p += 8, o += 8;
        }
        while (p < end && CLS[*p] == 0) *o++ = (char)*p++;
        if (p == end) break;
        if (CLS[*p] == 2) {
            size_t k = 1;
            if (utf8 != UTF8_ASIS && !(k = utf8_seq(p, end))) {
                if (utf8 == UTF8_REFUSE) return -1;
                w->len = cut;
                return 0;
            }
            while (k--) *o++ = (char)*p++;
            continue;
        }
        /* the escape (up to 6 bytes for 1), the rest of the input and the closing quote */
        w->len = (size_t)(o - w->data);
        if (reserve(w, 6 + (size_t)(end - p))) return -1;
        w->len += escape(*p++, w->data + w->len);
        o = w->data + w->len;
        cut = w->len;
    }
    *o++ = '"';
    w->len = (size_t)(o - w->data);
    return 0;
}

static const char DIGITS2[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                              "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                              "8081828384858687888990919293949596979899";

/* Decimal digits of v written backwards ending at end; returns the first. */
static inline char *utoa_back(char *end, unsigned long long v) {
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        end -= 2;
        memcpy(end, DIGITS2 + 2 * r, 2);
    }
    if (v >= 10) {
        end -= 2;
        memcpy(end, DIGITS2 + 2 * v, 2);
    } else {
        *--end = (char)('0' + v);
    }
    return end;
}

static inline char *itoa_back(char *end, long long v) {
    /* the magnitude in unsigned arithmetic, so LLONG_MIN has one */
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    char *p = utoa_back(end, u);
    if (v < 0) *--p = '-';
    return p;
}

static void put_int(kd_jsonw *w, long long v) {
    char buf[24], *end = buf + sizeof buf, *p = itoa_back(end, v);
    put_bytes(w, p, (size_t)(end - p));
}

/* jansson's jsonp_dtostr with precision 0 (Debian builds it without dtoa): "%.17g", the locale's
 * decimal point back to '.', ".0" when there is neither '.' nor 'e', the exponent without '+' and
 * without leading zeros. A double that is an integer below 1e17 in magnitude prints its integer digits
 * under %.17g (17 significant digits hold it exactly), so that common case skips snprintf. */
static void put_real(kd_jsonw *w, double v) {
    char buf[48];
    if (!isfinite(v)) {
        put_bytes(w, "null", 4);
        return;
    }
    if (fabs(v) < 1e17 && v == (double)(long long)v) {
        char *end = buf + sizeof buf, *p;
        end -= 2;
        memcpy(end, ".0", 2);
        p = itoa_back(end, (long long)v);
        if (v == 0 && signbit(v)) *--p = '-';
        put_bytes(w, p, (size_t)(buf + sizeof buf - p));
        return;
    }
    int n = snprintf(buf, sizeof buf, "%.17g", v);
    if (n < 0 || (size_t)n >= sizeof buf - 3) { /* cannot happen for a finite double */
        put_bytes(w, "null", 4);
        return;
    }
    size_t len = (size_t)n;
    int dot = 0;
    char *e = NULL;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (c == 'e') e = buf + i;
        else if (c != '-' && c != '+' && (c < '0' || c > '9')) buf[i] = '.', dot = 1; /* the locale's point */
    }
    if (!dot && !e) {
        memcpy(buf + len, ".0", 2);
        len += 2;
    }
    if (e) {
        char *start = e + 1, *stop = e + 2;
        if (*start == '-') start++;
        while (*stop == '0') stop++;
        if (stop != start) {
            memmove(start, stop, len - (size_t)(stop - buf));
            len -= (size_t)(stop - start);
        }
    }
    put_bytes(w, buf, len);
}

void kd_jsonw_raw(kd_jsonw *w, const char *s, size_t n) {
    put_bytes(w, s, n);
    terminate(w);
}

void kd_jsonw_string(kd_jsonw *w, const char *s, size_t n) {
    put_string(w, s, n, UTF8_ASIS);
    terminate(w);
}

void kd_jsonw_int(kd_jsonw *w, long long v) {
    put_int(w, v);
    terminate(w);
}

void kd_jsonw_real(kd_jsonw *w, double v) {
    put_real(w, v);
    terminate(w);
}

/* A container being written: the object's current iterator, or the array's index and size. */
typedef struct {
    const json_t *c;
    void *iter;
    size_t i, n;
} jw_frame;

static int put_key(kd_jsonw *w, void *iter) {
    if (put_string(w, json_object_iter_key(iter), json_object_iter_key_len(iter), UTF8_KEY)) return -1;
    put_char(w, ':');
    return w->oom ? -1 : 0;
}

/* jansson refuses a container that contains itself. Checking each new container against every
 * ancestor costs the depth; comparing it with the ancestor at the largest power of two below its
 * depth (Brent) is enough to stop: the descent through a cycle repeats with some period L from some
 * depth M on, and at depth d = P + L, where P is a power of two >= max(M, L), that ancestor is the
 * same container. A repeated ancestor is always a cycle, so nothing jansson writes is refused. */
static inline int cycle_at(const jw_frame *st, size_t d) {
    size_t p = d == 1 ? 0 : (size_t)1 << (63 - __builtin_clzll((unsigned long long)(d - 1)));
    return st[p].c == st[d].c;
}

int kd_jsonw_value(kd_jsonw *w, const json_t *v) {
    if (w->oom) return -1;
    size_t start = w->len;
    jw_frame local[64], *st = local;
    size_t cap = sizeof local / sizeof local[0], depth = 0;
    const json_t *cur = v;
    for (;;) {
        if (!cur) goto fail;
        switch (json_typeof(cur)) {
        case JSON_OBJECT:
        case JSON_ARRAY: {
            int obj = json_typeof(cur) == JSON_OBJECT;
            void *it = obj ? json_object_iter((json_t *)cur) : NULL;
            size_t n = obj ? 0 : json_array_size(cur);
            if (obj ? !it : !n) {
                put_bytes(w, obj ? "{}" : "[]", 2);
                break;
            }
            if (depth == cap) {
                jw_frame *ns = st == local ? malloc(2 * cap * sizeof *ns) : realloc(st, 2 * cap * sizeof *ns);
                if (!ns) {
                    set_oom(w);
                    goto fail;
                }
                if (st == local) memcpy(ns, local, sizeof local);
                st = ns;
                cap *= 2;
            }
            st[depth] = (jw_frame){cur, it, 0, n};
            if (depth && cycle_at(st, depth)) goto fail;
            depth++;
            if (obj) {
                put_char(w, '{');
                if (put_key(w, it)) goto fail;
                cur = json_object_iter_value(it);
            } else {
                put_char(w, '[');
                cur = json_array_get(cur, 0);
            }
            continue;
        }
        case JSON_STRING:
            if (put_string(w, json_string_value(cur), json_string_length(cur), UTF8_REFUSE)) goto fail;
            break;
        case JSON_INTEGER: put_int(w, json_integer_value(cur)); break;
        case JSON_REAL: put_real(w, json_real_value(cur)); break;
        case JSON_TRUE: put_bytes(w, "true", 4); break;
        case JSON_FALSE: put_bytes(w, "false", 5); break;
        case JSON_NULL: put_bytes(w, "null", 4); break;
        default: goto fail;
        }
        /* cur is written: close finished containers up to the next sibling */
        for (;;) {
            if (depth == 0) goto done;
            jw_frame *f = &st[depth - 1];
            if (f->iter) {
                f->iter = json_object_iter_next((json_t *)f->c, f->iter);
                if (f->iter) {
                    put_char(w, ',');
                    if (put_key(w, f->iter)) goto fail;
                    cur = json_object_iter_value(f->iter);
                    break;
                }
                put_char(w, '}');
            } else {
                if (++f->i < f->n) {
                    put_char(w, ',');
                    cur = json_array_get(f->c, f->i);
                    break;
                }
                put_char(w, ']');
            }
            depth--;
        }
    }
done:
    if (st != local) free(st);
    if (w->oom) return -1;
    terminate(w);
    return 0;
fail:
    if (st != local) free(st);
    if (!w->oom) {
        w->len = start;
        terminate(w);
    }
    return -1;
}

char *kd_jsonw_take(kd_jsonw *w) {
    if (w->oom) {
        kd_jsonw_free(w);
        return NULL;
    }
    char *s = w->data;
    if (!s) s = calloc(1, 1);
    w->data = NULL;
    w->len = w->cap = 0;
    return s;
}

void kd_jsonw_free(kd_jsonw *w) {
    free(w->data);
    w->data = NULL;
    w->len = w->cap = 0;
    w->oom = 0;
}

char *kd_json_dumps_compact(const json_t *v) {
    if (!json_is_array(v) && !json_is_object(v)) return NULL;
    kd_jsonw w = {0};
    if (kd_jsonw_value(&w, v)) {
        kd_jsonw_free(&w);
        return NULL;
    }
    return kd_jsonw_take(&w);
}

size_t kd_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t k = utf8_seq(p, end);
        if (!k) break;
        p += k;
    }
    return (size_t)(p - (const unsigned char *)s);
}

char *kd_utf8_escape(const char *s, size_t n) {
    kd_jsonw w = {0};
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        size_t ok = kd_utf8_valid_prefix((const char *)p, (size_t)(end - p));
        const unsigned char *q = p;
        /* the valid run, with NUL bytes written as \x00 too (a C string would end there) */
        for (size_t i = 0; i < ok; i++)
            if (q[i] == 0) {
                if (i) kd_jsonw_raw(&w, (const char *)q, i);
                kd_jsonw_raw(&w, "\\x00", 4);
                q += i + 1;
                ok -= i + 1;
                i = (size_t)-1;
            }
        if (ok) kd_jsonw_raw(&w, (const char *)q, ok);
        p = q + ok;
        if (p < end) {
            char hx[5] = {'\\', 'x', HEX[*p >> 4], HEX[*p & 15], 0};
            kd_jsonw_raw(&w, hx, 4);
            p++;
        }
    }
    return kd_jsonw_take(&w);
}
