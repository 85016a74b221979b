/* JSON prefix automaton and cached vocabulary validity sets (see include/kdstep/jsonprefix.h). */
#include "kdstep/jsonprefix.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdstep/hash.h"
#include "kdstep/utf8.h"

enum {
    M_DEAD = 0,
    M_TOP,       /* expecting the top-level value (leading whitespace allowed) */
    M_DONE,      /* complete document; only whitespace may follow */
    M_OBJ_FIRST, /* after '{': key or '}' */
    M_OBJ_KEY,   /* after ',' in an object: key */
    M_COLON,     /* after a key */
    M_VALUE,     /* after ':' or after ',' in an array */
    M_ARR_FIRST, /* after '[': value or ']' */
    M_AFTER,     /* after a value inside a container: ',' or the closer */
    M_STR,       /* inside a string */
    M_STR_ESC,   /* after '\' */
    M_STR_U,     /* inside \uXXXX; aux = digits seen, aux2 = 1 for the low half of a pair */
    M_STR_LOWBS, /* after a high-surrogate escape: '\' must follow */
    M_STR_LOWU,  /* ... then 'u' */
    M_NUM,       /* aux: number sub-state */
    M_LIT        /* aux: literal index, aux2: bytes matched */
};

enum { N_MINUS = 1, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

static const char *const LITERALS[3] = {"true", "false", "null"};

static int is_ws(unsigned c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(unsigned c) { return c >= '0' && c <= '9'; }

static int top_is_obj(const kd_jsonprefix *s) {
    unsigned d = (unsigned)s->depth - 1u;
    return (int)((s->stack[d / 64] >> (d % 64)) & 1u);
}

static int push(kd_jsonprefix *s, int obj) {
    if (s->depth >= KD_JSONPREFIX_MAX_DEPTH) return 0;
    unsigned d = s->depth++;
    uint64_t bit = (uint64_t)1 << (d % 64);
    if (obj)
        s->stack[d / 64] |= bit;
    else
        s->stack[d / 64] &= ~bit; /* keep unused bits zero so states compare byte-wise */
    return 1;
}

static void pop(kd_jsonprefix *s) {
    unsigned d = --s->depth;
    s->stack[d / 64] &= ~((uint64_t)1 << (d % 64));
}

static void after_value(kd_jsonprefix *s) {
    s->mode = s->depth == 0 ? M_DONE : M_AFTER;
    s->aux = s->aux2 = 0;
}

static int die(kd_jsonprefix *s) {
    memset(s, 0, sizeof *s);
    return 0;
}

/* A byte where a value must start. */
static int value_start(kd_jsonprefix *s, unsigned c) {
    s->aux = s->aux2 = 0;
    switch (c) {
    case '{':
        if (!push(s, 1)) return die(s);
        s->mode = M_OBJ_FIRST;
        return 1;
    case '[':
        if (!push(s, 0)) return die(s);
        s->mode = M_ARR_FIRST;
        return 1;
    case '"': s->mode = M_STR; s->is_key = 0; return 1;
    case '-': s->mode = M_NUM; s->aux = N_MINUS; return 1;
    case '0': s->mode = M_NUM; s->aux = N_ZERO; return 1;
    case 't': s->mode = M_LIT; s->aux = 0; s->aux2 = 1; return 1;
    case 'f': s->mode = M_LIT; s->aux = 1; s->aux2 = 1; return 1;
    case 'n': s->mode = M_LIT; s->aux = 2; s->aux2 = 1; return 1;
    default:
        if (c >= '1' && c <= '9') {
            s->mode = M_NUM;
            s->aux = N_INT;
            return 1;
        }
        return die(s);
    }
}

static int close_container(kd_jsonprefix *s, unsigned c) {
    if (s->depth == 0) return die(s);
    int obj = top_is_obj(s);
    if ((c == '}' && !obj) || (c == ']' && obj)) return die(s);
    pop(s);
    after_value(s);
    return 1;
}

/* Inside a string, outside escapes: UTF-8 validity as jansson checks it. */
static int string_byte(kd_jsonprefix *s, unsigned c) {
    if (s->utf8_need) {
        if (c < s->utf8_lo || c > s->utf8_hi) return die(s);
        s->utf8_need--;
        s->utf8_lo = 0x80;
        s->utf8_hi = 0xBF;
        return 1;
    }
    if (c == '"') {
        if (s->is_key) {
            s->mode = M_COLON;
            s->is_key = 0;
        } else {
            after_value(s);
        }
        return 1;
    }
    if (c == '\\') {
        s->mode = M_STR_ESC;
        return 1;
    }
    if (c < 0x20) return die(s);
    if (c < 0x80) return 1;
    s->utf8_lo = 0x80;
    s->utf8_hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        s->utf8_need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        s->utf8_need = 2;
        if (c == 0xE0) s->utf8_lo = 0xA0;    /* no overlong forms */
        if (c == 0xED) s->utf8_hi = 0x9F;    /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        s->utf8_need = 3;
        if (c == 0xF0) s->utf8_lo = 0x90;
        if (c == 0xF4) s->utf8_hi = 0x8F;    /* nothing past U+10FFFF */
    } else {
        return die(s);
    }
    return 1;
}

static int step(kd_jsonprefix *s, unsigned c) {
    switch (s->mode) {
    case M_DEAD: return 0;
    case M_TOP:
    case M_VALUE:
        if (is_ws(c)) return 1;
        return value_start(s, c);
    case M_ARR_FIRST:
        if (is_ws(c)) return 1;
        if (c == ']') return close_container(s, c);
        return value_start(s, c);
    case M_DONE: return is_ws(c) ? 1 : die(s);
    case M_OBJ_FIRST:
    case M_OBJ_KEY:
        if (is_ws(c)) return 1;
        if (c == '"') {
            s->mode = M_STR;
            s->is_key = 1;
            return 1;
        }
        if (c == '}' && s->mode == M_OBJ_FIRST) return close_container(s, c);
        return die(s);
    case M_COLON:
        if (is_ws(c)) return 1;
        if (c == ':') {
            s->mode = M_VALUE;
            return 1;
        }
        return die(s);
    case M_AFTER:
        if (is_ws(c)) return 1;
        if (c == ',') {
            s->mode = top_is_obj(s) ? M_OBJ_KEY : M_VALUE;
            return 1;
        }
        if (c == '}' || c == ']') return close_container(s, c);
        return die(s);
    case M_STR: return string_byte(s, c);
    case M_STR_ESC:
        switch (c) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            s->mode = M_STR;
            return 1;
        case 'u':
            s->mode = M_STR_U;
            s->aux = 0;
            s->aux2 = 0;
            s->uval = 0;
            return 1;
        default: return die(s);
        }
    case M_STR_LOWBS:
        if (c != '\\') return die(s);
        s->mode = M_STR_LOWU;
        return 1;
    case M_STR_LOWU:
        if (c != 'u') return die(s);
        s->mode = M_STR_U;
        s->aux = 0;
        s->aux2 = 1;
        s->uval = 0;
        return 1;
    case M_STR_U: {
        int h = kd_hex_digit((int)c);
        if (h < 0) return die(s);
        s->uval = (uint16_t)((s->uval << 4) | (unsigned)h);
        s->aux++;
        if (s->aux2) { /* low half of a surrogate pair: must be DC00..DFFF */
            if (s->aux == 1 && s->uval != 0xD) return die(s);
            if (s->aux == 2 && (s->uval < 0xDC || s->uval > 0xDF)) return die(s);
        } else if (s->aux == 2 && s->uval >= 0xDC && s->uval <= 0xDF) {
            return die(s); /* a lone low surrogate can never be completed */
        }
        if (s->aux < 4) return 1;
        if (!s->aux2 && s->uval == 0) return die(s); /* jansson: \u0000 needs JSON_ALLOW_NUL */
        if (!s->aux2 && kd_utf16_is_high(s->uval)) {
            s->mode = M_STR_LOWBS;
        } else {
            s->mode = M_STR;
        }
        s->aux = s->aux2 = 0;
        s->uval = 0;
        return 1;
    }
    case M_NUM:
        switch (s->aux) {
        case N_MINUS:
            if (c == '0') { s->aux = N_ZERO; return 1; }
            if (is_digit(c)) { s->aux = N_INT; return 1; }
            return die(s);
        case N_ZERO:
        case N_INT:
            if (is_digit(c)) {
                if (s->aux == N_ZERO) return die(s); /* no leading zeros */
                return 1;
            }
            if (c == '.') { s->aux = N_DOT; return 1; }
            if (c == 'e' || c == 'E') { s->aux = N_E; return 1; }
            break; /* the number ended: the byte belongs to what follows */
        case N_DOT:
            if (is_digit(c)) { s->aux = N_FRAC; return 1; }
            return die(s);
        case N_FRAC:
            if (is_digit(c)) return 1;
            if (c == 'e' || c == 'E') { s->aux = N_E; return 1; }
            break;
        case N_E:
            if (c == '+' || c == '-') { s->aux = N_ESIGN; return 1; }
            if (is_digit(c)) { s->aux = N_EXP; return 1; }
            return die(s);
        case N_ESIGN:
            if (is_digit(c)) { s->aux = N_EXP; return 1; }
            return die(s);
        case N_EXP:
            if (is_digit(c)) return 1;
            break;
        default: return die(s);
        }
        after_value(s);
        return step(s, c);
    case M_LIT: {
        const char *lit = LITERALS[s->aux];
        if ((unsigned char)lit[s->aux2] != c) return die(s);
        s->aux2++;
        if (lit[s->aux2] == '\0') after_value(s);
        return 1;
    }
    default: return die(s);
    }
}

void kd_jsonprefix_init(kd_jsonprefix *s) {
    memset(s, 0, sizeof *s);
    s->mode = M_TOP;
}

int kd_jsonprefix_feed(kd_jsonprefix *s, const char *bytes, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!step(s, (unsigned char)bytes[i])) return 0;
    return s->mode != M_DEAD;
}

int kd_jsonprefix_accepts(const kd_jsonprefix *s, const char *bytes, size_t n) {
    kd_jsonprefix t = *s;
    return kd_jsonprefix_feed(&t, bytes, n);
}

int kd_jsonprefix_valid(const kd_jsonprefix *s) { return s->mode != M_DEAD; }

int kd_jsonprefix_complete(const kd_jsonprefix *s) {
    if (s->mode == M_DONE) return 1;
    /* a top-level number needs no terminator */
    return s->mode == M_NUM && s->depth == 0 &&
           (s->aux == N_ZERO || s->aux == N_INT || s->aux == N_FRAC || s->aux == N_EXP);
}

long kd_jsonprefix_completion(const kd_jsonprefix *s, char *buf, size_t cap) {
    if (s->mode == M_DEAD || cap < (size_t)2 * s->depth + 32) return -1;
    size_t n = 0;
#define PUT(str) (memcpy(buf + n, (str), strlen(str)), n += strlen(str))
    int is_key = s->is_key;
    switch (s->mode) {
    case M_TOP:
    case M_VALUE: PUT("0"); break;
    case M_OBJ_KEY: PUT("\"\":0"); break;
    case M_COLON: PUT(":0"); break;
    case M_STR_U:
    case M_STR_ESC:
    case M_STR_LOWBS:
    case M_STR_LOWU:
    case M_STR:
        if (s->mode == M_STR_ESC) PUT("n");
        if (s->mode == M_STR_LOWBS) PUT("\\uDC00");
        if (s->mode == M_STR_LOWU) PUT("uDC00");
        if (s->mode == M_STR_U && s->aux2) {
            PUT(&"DC00"[s->aux]);
        } else if (s->mode == M_STR_U) {
            unsigned v = s->uval;
            for (int i = s->aux; i < 4; i++) {
                buf[n++] = '0';
                v <<= 4;
            }
            if (v == 0) buf[n - 1] = '1';
            if (kd_utf16_is_high(v)) PUT("\\uDC00");
        }
        if (s->mode == M_STR && s->utf8_need) {
            buf[n++] = (char)s->utf8_lo;
            for (int i = 1; i < s->utf8_need; i++) buf[n++] = (char)0x80;
        }
        PUT("\"");
        if (is_key) PUT(":0");
        break;
    case M_NUM:
        if (s->aux == N_MINUS || s->aux == N_DOT || s->aux == N_E || s->aux == N_ESIGN) PUT("0");
        break;
    case M_LIT: PUT(LITERALS[s->aux] + s->aux2); break;
    default: break; /* M_DONE, M_OBJ_FIRST, M_ARR_FIRST, M_AFTER: only closers are due */
    }
#undef PUT
    for (int d = (int)s->depth - 1; d >= 0; d--) buf[n++] = ((s->stack[d / 64] >> (d % 64)) & 1u) ? '}' : ']';
    buf[n] = '\0';
    return (long)n;
}

/* ---------------------------------------------------------------- vocabulary validity sets */

typedef struct gentry {
    kd_jsonprefix key;
    uint64_t *set; /* NULL: empty slot */
} gentry;

struct kd_jsongrammar {
    int32_t V;
    size_t words;       /* uint64 words per set */
    char **tok;         /* token bytes */
    size_t *len;
    int32_t *by_first;  /* token ids grouped by first byte (empty tokens first) */
    int32_t first_off[258]; /* by_first[first_off[b+1] .. first_off[b+2]) start with byte b; [0,1): empty */
    gentry *table;
    size_t cap;         /* slots, a power of two, >= 2 * max_cached */
    int max_cached;
    kd_jsongrammar_stats st;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int kd_jsongrammar_new(kd_jsongrammar **out, const char **bytes, const size_t *lens, int32_t V, int max_cached,
                       kd_error *err) {
    *out = NULL;
    if (V <= 0) return kd_error_set(err, KD_ERR_INVALID, "json grammar: vocabulary size %d must be positive", V);
    kd_jsongrammar *g = kd_calloc(1, sizeof *g);
    if (!g) return kd_error_set(err, KD_ERR_NOMEM, "json grammar: out of memory");
    g->V = V;
    g->words = ((size_t)V + 63) / 64;
    g->max_cached = max_cached > 0 ? max_cached : 4096;
    g->cap = 16;
    while (g->cap < (size_t)g->max_cached * 2) g->cap <<= 1;
    g->tok = kd_calloc((size_t)V, sizeof *g->tok);
    g->len = kd_calloc((size_t)V, sizeof *g->len);
    g->by_first = kd_calloc((size_t)V, sizeof *g->by_first);
    g->table = kd_calloc(g->cap, sizeof *g->table);
    if (!g->tok || !g->len || !g->by_first || !g->table) goto oom;
    int32_t count[257] = {0};
    for (int32_t v = 0; v < V; v++) {
        if (!bytes[v] && lens[v] > 0) {
            kd_jsongrammar_free(g);
            return kd_error_set(err, KD_ERR_INVALID, "json grammar: token %d has no bytes but length %zu", v,
                                lens[v]);
        }
        g->len[v] = lens[v];
        g->tok[v] = kd_calloc(lens[v] + 1, 1);
        if (!g->tok[v]) goto oom;
        if (lens[v]) memcpy(g->tok[v], bytes[v], lens[v]);
        count[lens[v] ? 1 + (unsigned char)bytes[v][0] : 0]++;
    }
    g->first_off[0] = 0;
    for (int b = 0; b < 257; b++) g->first_off[b + 1] = g->first_off[b] + count[b];
    int32_t fill[257];
    memcpy(fill, g->first_off, sizeof fill);
    for (int32_t v = 0; v < V; v++) g->by_first[fill[g->len[v] ? 1 + (unsigned char)g->tok[v][0] : 0]++] = v;
    *out = g;
    return KD_OK;
oom:
    kd_jsongrammar_free(g);
    return kd_error_set(err, KD_ERR_NOMEM, "json grammar: out of memory for a vocabulary of %d tokens", V);
}

static void clear_cache(kd_jsongrammar *g) {
    for (size_t i = 0; i < g->cap; i++) {
        free(g->table[i].set);
        g->table[i].set = NULL;
    }
    g->st.cached = 0;
}

void kd_jsongrammar_free(kd_jsongrammar *g) {
    if (!g) return;
    if (g->table) clear_cache(g);
    free(g->table);
    if (g->tok)
        for (int32_t v = 0; v < g->V; v++) free(g->tok[v]);
    free(g->tok);
    free(g->len);
    free(g->by_first);
    free(g);
}

int32_t kd_jsongrammar_vocab_size(const kd_jsongrammar *g) { return g->V; }

static void compute_set(const kd_jsongrammar *g, const kd_jsonprefix *s, uint64_t *set) {
    memset(set, 0, g->words * sizeof *set);
    /* empty tokens change nothing */
    for (int32_t i = g->first_off[0]; i < g->first_off[1]; i++) set[g->by_first[i] / 64] |= (uint64_t)1 << (g->by_first[i] % 64);
    for (int b = 0; b < 256; b++) {
        int32_t lo = g->first_off[b + 1], hi = g->first_off[b + 2];
        if (lo == hi) continue;
        kd_jsonprefix t = *s;
        char c = (char)b;
        if (!kd_jsonprefix_feed(&t, &c, 1)) continue; /* the whole group dies on its first byte */
        for (int32_t i = lo; i < hi; i++) {
            int32_t v = g->by_first[i];
            kd_jsonprefix u = t;
            if (kd_jsonprefix_feed(&u, g->tok[v] + 1, g->len[v] - 1)) set[v / 64] |= (uint64_t)1 << (v % 64);
        }
    }
}

const uint64_t *kd_jsongrammar_valid_set(kd_jsongrammar *g, const kd_jsonprefix *s) {
    if (s->mode == M_DEAD) return NULL;
    g->st.lookups++;
    /* only the live words of the stack matter, and those are kept zero above depth */
    size_t keylen = offsetof(kd_jsonprefix, stack) + 8 * (((size_t)s->depth + 63) / 64);
    size_t mask = g->cap - 1;
    size_t i = (size_t)kd_hash64(s, keylen) & mask;
    while (g->table[i].set) {
        if (memcmp(&g->table[i].key, s, sizeof *s) == 0) return g->table[i].set;
        i = (i + 1) & mask;
    }
    if (g->st.cached >= g->max_cached) {
        clear_cache(g);
        i = (size_t)kd_hash64(s, keylen) & mask;
    }
    uint64_t *set = malloc(g->words * sizeof *set);
    if (!set) return NULL;
    double t0 = now_s();
    compute_set(g, s, set);
    g->st.build_s += now_s() - t0;
    g->st.misses++;
    g->st.cached++;
    g->table[i].key = *s;
    g->table[i].set = set;
    return set;
}

int kd_jsongrammar_feed_token(const kd_jsongrammar *g, kd_jsonprefix *s, int32_t v) {
    if (v < 0 || v >= g->V) {
        memset(s, 0, sizeof *s);
        return 0;
    }
    return kd_jsonprefix_feed(s, g->tok[v], g->len[v]);
}

void kd_jsongrammar_get_stats(const kd_jsongrammar *g, kd_jsongrammar_stats *st) { *st = g->st; }

void kd_jsongrammar_token_bytes(const kd_jsongrammar *g, int32_t v, const char **bytes, size_t *len) {
    *bytes = g->tok[v];
    *len = g->len[v];
}
