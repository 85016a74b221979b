/* Hugging Face tokenizer.json, byte-level BPE (GPT-2, Llama 3, Qwen2/Qwen3): load, encode with byte
 * offsets, decode. See include/kdstep/tokenizer.h and docs/tokenizer.md.
 *
 * The pipeline mirrors HF's: lossy UTF-8 -> added tokens (raw text, leftmost-longest) -> NFC ->
 * added tokens marked `normalized` -> pre-tokenizer (Split / ByteLevel) -> BPE -> post-processor.
 * Every byte of the text handed to a stage carries the original byte range it came from ("segment"
 * below); when nothing was rewritten the mapping is the identity and costs nothing.
 */
#include "kdstep/tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "tjson.h"

/* ---------------------------------------------------------------- Unicode classes */

enum { K_L = 1, K_N = 2, K_WS = 4, K_NFCU = 8, K_WORD = 16 };
static uint8_t *g_cls; /* one byte per code point, 0..0x10FFFF */
static pthread_once_t g_cls_once = PTHREAD_ONCE_INIT;

static void build_classes(void) {
    uint8_t *t = calloc(0x110000, 1);
    if (!t) return;
    for (int32_t cp = 0; cp < 0x110000; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        /* planes 4-13 are unassigned, 15-16 private use: class 0 (saves most of the start-up) */
        if (cp == 0x40000) cp = 0xE0000;
        if (cp == 0xE1000) break;
        const utf8proc_property_t *p = utf8proc_get_property(cp);
        uint8_t k = 0;
        switch (p->category) {
        case UTF8PROC_CATEGORY_LU:
        case UTF8PROC_CATEGORY_LL:
        case UTF8PROC_CATEGORY_LT:
        case UTF8PROC_CATEGORY_LM:
        case UTF8PROC_CATEGORY_LO: k |= K_L | K_WORD; break;
        case UTF8PROC_CATEGORY_ND: k |= K_N | K_WORD; break;
        case UTF8PROC_CATEGORY_NL: k |= K_N | K_WORD; break;
        case UTF8PROC_CATEGORY_NO: k |= K_N; break;
        case UTF8PROC_CATEGORY_MN:
        case UTF8PROC_CATEGORY_MC:
        case UTF8PROC_CATEGORY_ME:
        case UTF8PROC_CATEGORY_PC: k |= K_WORD; break;
        case UTF8PROC_CATEGORY_ZS:
        case UTF8PROC_CATEGORY_ZL:
        case UTF8PROC_CATEGORY_ZP: k |= K_WS; break;
        default: break;
        }
        if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x85) k |= K_WS;
        if (cp == 0x200C || cp == 0x200D) k |= K_WORD;
        /* NFC-unsafe: may change under NFC or make its neighbours change (a combining mark, a
         * char with a canonical decomposition, a second in a composition, Hangul V/T jamo). */
        if (cp >= 0x300 &&
            (p->combining_class != 0 || (p->decomp_type == 0 && p->decomp_seqindex != UINT16_MAX) ||
             (p->comb_index != UINT16_MAX && p->comb_index >= 0x8000) || (cp >= 0x1161 && cp <= 0x1175) ||
             (cp >= 0x11A8 && cp <= 0x11C2)))
            k |= K_NFCU;
        t[cp] = k;
    }
    g_cls = t;
}

static inline uint8_t cls_of(uint32_t cp) { return cp < 0x110000 ? g_cls[cp] : 0; }

/* Decode one code point of valid UTF-8 at s[i] (i < n). */
static inline uint32_t dec_utf8(const uint8_t *s, size_t i, int *len) {
    uint8_t c = s[i];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    if (c < 0xE0) {
        *len = 2;
        return ((uint32_t)(c & 0x1F) << 6) | (s[i + 1] & 0x3F);
    }
    if (c < 0xF0) {
        *len = 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) | ((uint32_t)(s[i + 2] & 0x3F) << 6) |
           (s[i + 3] & 0x3F);
}

static int enc_utf8(uint32_t cp, uint8_t *o) {
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at s[i], or 0 when invalid; *bad gets the length of the
 * maximal invalid subpart (what one U+FFFD replaces, as in WHATWG / Rust's from_utf8_lossy). */
static size_t utf8_seq(const uint8_t *s, size_t n, size_t i, size_t *bad) {
    uint8_t c = s[i];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) need = 2, lo = 0xA0;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
    else if (c == 0xED) need = 2, hi = 0x9F;
    else if (c == 0xF0) need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) need = 3, hi = 0x8F;
    else {
        *bad = 1;
        return 0;
    }
    for (size_t k = 1; k <= need; k++) {
        if (i + k >= n) {
            *bad = k;
            return 0;
        }
        uint8_t b = s[i + k];
        uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) {
            *bad = k;
            return 0;
        }
    }
    return need + 1;
}

/* ---------------------------------------------------------------- byte-level alphabet */

static uint32_t g_byte_char[256]; /* byte -> code point (GPT-2's bytes_to_unicode) */
static int16_t g_char_byte[512];  /* code point (< 512) -> byte, or -1 */
static pthread_once_t g_bl_once = PTHREAD_ONCE_INIT;

static void build_bytelevel(void) {
    for (int k = 0; k < 512; k++) g_char_byte[k] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = keep ? (uint32_t)b : (uint32_t)(256 + n++);
        g_byte_char[b] = cp;
        g_char_byte[cp] = (int16_t)b;
    }
}

/* Byte-level decode of a vocabulary string: returns the raw length, or -1 if some character is
 * outside the alphabet. out must hold len bytes. */
static long bl_decode(const char *s, size_t len, uint8_t *out) {
    size_t i = 0, w = 0;
    const uint8_t *u = (const uint8_t *)s;
    while (i < len) {
        size_t bad;
        size_t L = utf8_seq(u, len, i, &bad);
        if (!L) return -1;
        int dl;
        uint32_t cp = dec_utf8(u, i, &dl);
        if (cp >= 512 || g_char_byte[cp] < 0) return -1;
        out[w++] = (uint8_t)g_char_byte[cp];
        i += L;
    }
    return (long)w;
}

/* ---------------------------------------------------------------- the tokenizer */

enum { SCAN_NONE, SCAN_GPT2, SCAN_QWEN2, SCAN_LLAMA3 };
enum { BEH_ISOLATED, BEH_REMOVED, BEH_MERGED_PREV, BEH_MERGED_NEXT, BEH_CONTIGUOUS };
enum { STEP_SPLIT, STEP_BYTELEVEL };

typedef struct pretok_step {
    int kind;
    /* Split */
    int scanner;      /* SCAN_* for the known patterns, else PCRE2 */
    pcre2_code *re;
    char *literal;    /* Split with a String pattern */
    size_t literal_len;
    int behavior, invert;
    /* ByteLevel */
    int add_prefix_space, use_regex;
} pretok_step;

typedef struct added_token {
    char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
} added_token;

typedef struct trie_node {
    int32_t term; /* index into added[], or -1 */
    uint32_t child, sibling;
    uint8_t byte;
} trie_node;

typedef struct added_trie {
    trie_node *nodes;
    size_t n, cap;
    uint8_t first[256];
} added_trie;

typedef struct merge_slot {
    uint64_t key; /* (a << 32 | b) + 1; 0 = empty */
    uint32_t rank;
    int32_t id;
} merge_slot;

struct kd_tokenizer {
    char *path;
    char sha256[65];
    uint64_t generation;
    int32_t n_ids;
    /* per id: bytes (raw for byte-level tokens, content for added ones) */
    uint8_t *pool;
    size_t pool_len;
    uint32_t *tok_off, *tok_len; /* tok_len == UINT32_MAX: unused id */
    char **tok_str;               /* the vocabulary string as written (for token_to_id), or NULL */
    uint8_t *special;
    uint8_t *tok_dup; /* ids whose bytes another id also has (non-byte-level strings), or NULL */
    /* raw bytes -> id for byte-level vocabulary tokens */
    int32_t *vhash;
    size_t vmask;
    merge_slot *merges;
    size_t mmask;
    int32_t byte_id[256];
    int32_t unk_id;
    int ignore_merges;
    int nfc;
    pretok_step *steps;
    int nsteps;
    added_token *added;
    size_t nadded;
    added_trie trie_raw, trie_norm;
    /* post-processor */
    int post_trim_offsets, post_trim_prefix;
    int32_t *tmpl_pre, *tmpl_post;
    size_t ntmpl_pre, ntmpl_post;
    int has_template;
};

static atomic_uint_fast64_t g_generation = 1;

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static int32_t vocab_find(const kd_tokenizer *t, const uint8_t *b, size_t n) {
    size_t m = t->vmask, i = hash_bytes(b, n) & m;
    for (;;) {
        int32_t id = t->vhash[i];
        if (id < 0) return -1;
        if (t->tok_len[id] == n && memcmp(t->pool + t->tok_off[id], b, n) == 0) return id;
        i = (i + 1) & m;
    }
}

/* Is id the vocabulary's entry for its own bytes (not a duplicate string shadowed by another)? */
static int vocab_find_is(const kd_tokenizer *t, int32_t id) { return !t->tok_dup || !t->tok_dup[id]; }

static inline uint64_t mix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static inline int merge_get(const kd_tokenizer *t, int32_t a, int32_t b, uint32_t *rank, int32_t *id) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t m = t->mmask, i = mix64(key) & m;
    for (;;) {
        const merge_slot *s = &t->merges[i];
        if (s->key == key) {
            *rank = s->rank;
            *id = s->id;
            return 1;
        }
        if (!s->key) return 0;
        i = (i + 1) & m;
    }
}

/* ---------------------------------------------------------------- added-token trie */

static int trie_add(added_trie *tr, const uint8_t *s, size_t n, int32_t term) {
    if (!tr->nodes) {
        tr->cap = 64;
        tr->nodes = calloc(tr->cap, sizeof(trie_node));
        if (!tr->nodes) return -1;
        tr->nodes[0].term = -1;
        tr->n = 1;
    }
    uint32_t cur = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t c = tr->nodes[cur].child;
        while (c && tr->nodes[c].byte != s[k]) c = tr->nodes[c].sibling;
        if (!c) {
            if (tr->n == tr->cap) {
                trie_node *nn = realloc(tr->nodes, tr->cap * 2 * sizeof(trie_node));
                if (!nn) return -1;
                tr->nodes = nn;
                tr->cap *= 2;
            }
            c = (uint32_t)tr->n++;
            tr->nodes[c] = (trie_node){.term = -1, .child = 0, .sibling = tr->nodes[cur].child, .byte = s[k]};
            tr->nodes[cur].child = c;
        }
        cur = c;
    }
    tr->nodes[cur].term = term;
    tr->first[s[0]] = 1;
    return 0;
}

/* Longest added token starting at s[i]; returns its length (0 if none) and *term. */
static size_t trie_longest(const added_trie *tr, const uint8_t *s, size_t n, size_t i, int32_t *term) {
    uint32_t cur = 0;
    size_t best = 0;
    for (size_t k = i; k < n; k++) {
        uint32_t c = tr->nodes[cur].child;
        while (c && tr->nodes[c].byte != s[k]) c = tr->nodes[c].sibling;
        if (!c) break;
        cur = c;
        if (tr->nodes[cur].term >= 0) {
            best = k + 1 - i;
            *term = tr->nodes[cur].term;
        }
    }
    return best;
}

/* ---------------------------------------------------------------- loading */

typedef struct load_ctx {
    const char *path;
    tj_doc doc;
    kd_error *err;
} load_ctx;

static int unsupported(load_ctx *c, const char *what, const tj_val *v) {
    size_t line = 0, col = 0;
    if (v) tj_linecol(&c->doc, v->pos, &line, &col);
    return kd_error_set(c->err, KD_ERR_UNSUPPORTED,
                        "%s:%zu:%zu: unsupported %s (kdstep loads byte-level BPE tokenizers: GPT-2, Llama 3, Qwen2/Qwen3)",
                        c->path, line, col, what);
}

static int invalid(load_ctx *c, const char *what, const tj_val *v) {
    size_t line = 0, col = 0;
    if (v) tj_linecol(&c->doc, v->pos, &line, &col);
    return kd_error_set(c->err, KD_ERR_INVALID, "%s:%zu:%zu: %s", c->path, line, col, what);
}

static const char *type_of(const tj_val *v) {
    const tj_val *t = tj_get(v, "type");
    return t && t->type == TJ_STR ? t->u.str : NULL;
}

static int get_bool(const tj_val *obj, const char *key, int dflt) {
    const tj_val *v = tj_get(obj, key);
    if (!v) return dflt;
    if (v->type == TJ_TRUE) return 1;
    if (v->type == TJ_FALSE) return 0;
    return dflt;
}

static const char RE_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                               "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Oniguruma's \s (what HF uses) is [\t-\r\x85\p{Z}]; PCRE2's also has U+180E. Rewrite \s and \S. */
static char *rewrite_regex(const char *re) {
    size_t n = strlen(re);
    char *o = malloc(n * 24 + 1);
    if (!o) return NULL;
    size_t w = 0;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = re[i];
        if (c == '\\' && i + 1 < n) {
            char e = re[i + 1];
            if (e == 's') {
                const char *r = in_class ? "\\t-\\r\\x{85}\\p{Z}" : "[\\t-\\r\\x{85}\\p{Z}]";
                memcpy(o + w, r, strlen(r));
                w += strlen(r);
            } else if (e == 'S' && !in_class) {
                const char *r = "[^\\t-\\r\\x{85}\\p{Z}]";
                memcpy(o + w, r, strlen(r));
                w += strlen(r);
            } else {
                o[w++] = c;
                o[w++] = e;
            }
            i++;
            continue;
        }
        if (c == '[' && !in_class) in_class = 1;
        else if (c == ']' && in_class) in_class = 0;
        o[w++] = c;
    }
    o[w] = 0;
    return o;
}

static int force_pcre2(void) {
    const char *e = getenv("KD_TOKENIZER_REGEX");
    return e && strcmp(e, "pcre2") == 0;
}

static int compile_regex(load_ctx *c, pretok_step *st, const char *re, const tj_val *where) {
    if (!force_pcre2()) {
        if (strcmp(re, RE_GPT2) == 0) st->scanner = SCAN_GPT2;
        else if (strcmp(re, RE_QWEN2) == 0) st->scanner = SCAN_QWEN2;
        else if (strcmp(re, RE_LLAMA3) == 0) st->scanner = SCAN_LLAMA3;
        if (st->scanner != SCAN_NONE) return 0;
    }
    char *rw = rewrite_regex(re);
    if (!rw) return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
    int ec;
    PCRE2_SIZE eo;
    st->re = pcre2_compile((PCRE2_SPTR)rw, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    free(rw);
    if (!st->re) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(ec, buf, sizeof buf);
        char msg[512];
        snprintf(msg, sizeof msg, "pre-tokenizer regex does not compile: %s", (char *)buf);
        return unsupported(c, msg, where);
    }
    pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE);
    return 0;
}

static int add_step(kd_tokenizer *t, pretok_step **out) {
    pretok_step *ns = realloc(t->steps, (size_t)(t->nsteps + 1) * sizeof(pretok_step));
    if (!ns) return -1;
    t->steps = ns;
    *out = &ns[t->nsteps++];
    memset(*out, 0, sizeof **out);
    return 0;
}

static int load_pretok(load_ctx *c, kd_tokenizer *t, const tj_val *v, int depth) {
    if (!v || v->type == TJ_NULL)
        return unsupported(c, "tokenizer without a pre_tokenizer (byte-level BPE needs ByteLevel)", v);
    const char *ty = type_of(v);
    if (!ty) return invalid(c, "pre_tokenizer without a \"type\"", v);
    if (strcmp(ty, "Sequence") == 0) {
        const tj_val *arr = tj_get(v, "pretokenizers");
        if (!arr || arr->type != TJ_ARR || depth > 4) return invalid(c, "Sequence pre_tokenizer without pretokenizers", v);
        for (uint32_t k = 0; k < arr->len; k++)
            if (load_pretok(c, t, &arr->u.items[k], depth + 1)) return c->err ? c->err->code : KD_ERR_INVALID;
        return 0;
    }
    pretok_step *st;
    if (add_step(t, &st)) return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
    if (strcmp(ty, "ByteLevel") == 0) {
        st->kind = STEP_BYTELEVEL;
        st->add_prefix_space = get_bool(v, "add_prefix_space", 1);
        st->use_regex = get_bool(v, "use_regex", 1);
        if (st->use_regex) return compile_regex(c, st, RE_GPT2, v);
        return 0;
    }
    if (strcmp(ty, "Split") == 0) {
        st->kind = STEP_SPLIT;
        const tj_val *pat = tj_get(v, "pattern");
        const tj_val *re = pat ? tj_get(pat, "Regex") : NULL;
        const tj_val *lit = pat ? tj_get(pat, "String") : NULL;
        if (re && re->type == TJ_STR) {
            if (compile_regex(c, st, re->u.str, re)) return c->err ? c->err->code : KD_ERR_INVALID;
        } else if (lit && lit->type == TJ_STR && lit->len > 0) {
            st->literal = kd_strndup(lit->u.str, lit->len);
            st->literal_len = lit->len;
            if (!st->literal) return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
        } else {
            return invalid(c, "Split pre_tokenizer needs a pattern {\"Regex\": ...} or {\"String\": ...}", v);
        }
        const tj_val *b = tj_get(v, "behavior");
        const char *bs = b && b->type == TJ_STR ? b->u.str : "";
        if (!strcmp(bs, "Isolated")) st->behavior = BEH_ISOLATED;
        else if (!strcmp(bs, "Removed")) st->behavior = BEH_REMOVED;
        else if (!strcmp(bs, "MergedWithPrevious")) st->behavior = BEH_MERGED_PREV;
        else if (!strcmp(bs, "MergedWithNext")) st->behavior = BEH_MERGED_NEXT;
        else if (!strcmp(bs, "Contiguous")) st->behavior = BEH_CONTIGUOUS;
        else {
            char msg[256];
            snprintf(msg, sizeof msg, "Split behavior '%s'", bs);
            return unsupported(c, msg, b ? b : v);
        }
        st->invert = get_bool(v, "invert", 0);
        return 0;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "pre_tokenizer '%s'", ty);
    return unsupported(c, msg, v);
}

static int load_normalizer(load_ctx *c, kd_tokenizer *t, const tj_val *v, int depth) {
    if (!v || v->type == TJ_NULL) return 0;
    const char *ty = type_of(v);
    if (!ty) return invalid(c, "normalizer without a \"type\"", v);
    if (!strcmp(ty, "NFC")) {
        t->nfc = 1;
        return 0;
    }
    if (!strcmp(ty, "Sequence") && depth < 4) {
        const tj_val *arr = tj_get(v, "normalizers");
        if (!arr || arr->type != TJ_ARR) return invalid(c, "Sequence normalizer without normalizers", v);
        for (uint32_t k = 0; k < arr->len; k++)
            if (load_normalizer(c, t, &arr->u.items[k], depth + 1)) return c->err ? c->err->code : KD_ERR_INVALID;
        return 0;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "normalizer '%s'", ty);
    return unsupported(c, msg, v);
}

static int32_t *append_ids(int32_t *arr, size_t *n, const tj_val *ids) {
    int32_t *na = realloc(arr, (*n + ids->len + 1) * sizeof(int32_t));
    if (!na) return NULL;
    for (uint32_t k = 0; k < ids->len; k++) na[(*n)++] = (int32_t)ids->u.items[k].u.num;
    return na;
}

static int load_post(load_ctx *c, kd_tokenizer *t, const tj_val *v, int depth) {
    if (!v || v->type == TJ_NULL) return 0;
    const char *ty = type_of(v);
    if (!ty) return invalid(c, "post_processor without a \"type\"", v);
    if (!strcmp(ty, "ByteLevel")) {
        t->post_trim_offsets = get_bool(v, "trim_offsets", 1);
        t->post_trim_prefix = get_bool(v, "add_prefix_space", 1);
        return 0;
    }
    if (!strcmp(ty, "Sequence") && depth < 4) {
        const tj_val *arr = tj_get(v, "processors");
        if (!arr || arr->type != TJ_ARR) return invalid(c, "Sequence post_processor without processors", v);
        for (uint32_t k = 0; k < arr->len; k++)
            if (load_post(c, t, &arr->u.items[k], depth + 1)) return c->err ? c->err->code : KD_ERR_INVALID;
        return 0;
    }
    if (!strcmp(ty, "TemplateProcessing")) {
        const tj_val *single = tj_get(v, "single");
        const tj_val *specials = tj_get(v, "special_tokens");
        if (!single || single->type != TJ_ARR) return invalid(c, "TemplateProcessing without \"single\"", v);
        int seen_seq = 0;
        t->has_template = 1;
        for (uint32_t k = 0; k < single->len; k++) {
            const tj_val *it = &single->u.items[k];
            const tj_val *sp = tj_get(it, "SpecialToken");
            const tj_val *sq = tj_get(it, "Sequence");
            if (sq) {
                const tj_val *id = tj_get(sq, "id");
                if (seen_seq || !id || id->type != TJ_STR || strcmp(id->u.str, "A") != 0)
                    return unsupported(c, "TemplateProcessing single template other than one $A sequence", it);
                seen_seq = 1;
            } else if (sp) {
                const tj_val *id = tj_get(sp, "id");
                const tj_val *entry = id && id->type == TJ_STR ? tj_get(specials, id->u.str) : NULL;
                const tj_val *ids = entry ? tj_get(entry, "ids") : NULL;
                if (!ids || ids->type != TJ_ARR)
                    return invalid(c, "TemplateProcessing special token missing from \"special_tokens\"", it);
                for (uint32_t q = 0; q < ids->len; q++)
                    if (ids->u.items[q].type != TJ_NUM) return invalid(c, "special token ids must be numbers", ids);
                int32_t **arr = seen_seq ? &t->tmpl_post : &t->tmpl_pre;
                size_t *cnt = seen_seq ? &t->ntmpl_post : &t->ntmpl_pre;
                int32_t *na = append_ids(*arr, cnt, ids);
                if (!na) return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
                *arr = na;
            } else {
                return invalid(c, "TemplateProcessing item is neither SpecialToken nor Sequence", it);
            }
        }
        return 0;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "post_processor '%s'", ty);
    return unsupported(c, msg, v);
}

static int load_decoder(load_ctx *c, const tj_val *v) {
    if (!v || v->type == TJ_NULL) return unsupported(c, "tokenizer without a decoder (ByteLevel expected)", v);
    const char *ty = type_of(v);
    if (ty && !strcmp(ty, "ByteLevel")) return 0;
    char msg[256];
    snprintf(msg, sizeof msg, "decoder '%s'", ty ? ty : "?");
    return unsupported(c, msg, v);
}

static int set_token(kd_tokenizer *t, int32_t id, const uint8_t *b, size_t n, size_t *pool_cap) {
    if (t->pool_len + n > *pool_cap) {
        size_t nc = (*pool_cap ? *pool_cap * 2 : 1 << 20) + n;
        uint8_t *np = realloc(t->pool, nc);
        if (!np) return -1;
        t->pool = np;
        *pool_cap = nc;
    }
    memcpy(t->pool + t->pool_len, b, n);
    t->tok_off[id] = (uint32_t)t->pool_len;
    t->tok_len[id] = (uint32_t)n;
    t->pool_len += n;
    return 0;
}

static size_t pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

static int load_model(load_ctx *c, kd_tokenizer *t, const tj_val *root) {
    const tj_val *m = tj_get(root, "model");
    if (!m || m->type != TJ_OBJ) return invalid(c, "no \"model\" object", root);
    const char *ty = type_of(m);
    if (ty && strcmp(ty, "BPE") != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "model type '%s'", ty);
        return unsupported(c, msg, m);
    }
    if (get_bool(m, "byte_fallback", 0)) return unsupported(c, "BPE with byte_fallback (SentencePiece-style)", m);
    const tj_val *dr = tj_get(m, "dropout");
    if (dr && dr->type == TJ_NUM && dr->u.num > 0) return unsupported(c, "BPE dropout", dr);
    const tj_val *csp = tj_get(m, "continuing_subword_prefix"), *ews = tj_get(m, "end_of_word_suffix");
    if ((csp && csp->type == TJ_STR && csp->len) || (ews && ews->type == TJ_STR && ews->len))
        return unsupported(c, "BPE with continuing_subword_prefix/end_of_word_suffix", csp && csp->len ? csp : ews);
    t->ignore_merges = get_bool(m, "ignore_merges", 0);
    const tj_val *vocab = tj_get(m, "vocab");
    const tj_val *merges = tj_get(m, "merges");
    if (!vocab || vocab->type != TJ_OBJ) return invalid(c, "model has no \"vocab\" object", m);
    if (vocab->len == 0) return invalid(c, "model.vocab is empty (a BPE model needs its vocabulary: a truncated or edited file?)", vocab);
    if (!merges || merges->type != TJ_ARR) return invalid(c, "model has no \"merges\" array", m);
    const tj_val *added = tj_get(root, "added_tokens");
    int64_t maxid = -1;
    for (uint32_t k = 0; k < vocab->len; k++) {
        const tj_val *idv = &vocab->u.items[2 * k + 1];
        if (idv->type != TJ_NUM || idv->u.num < 0 || idv->u.num > 1e8 || idv->u.num != (double)(int64_t)idv->u.num)
            return invalid(c, "vocabulary ids must be non-negative integers", idv);
        if ((int64_t)idv->u.num > maxid) maxid = (int64_t)idv->u.num;
    }
    if (added && added->type == TJ_ARR) {
        for (uint32_t k = 0; k < added->len; k++) {
            const tj_val *idv = tj_get(&added->u.items[k], "id");
            if (!idv || idv->type != TJ_NUM || idv->u.num < 0 || idv->u.num > 1e8)
                return invalid(c, "added token without a valid \"id\"", &added->u.items[k]);
        }
    }
    /* HF assigns added-token ids itself (the file's ids only draw a warning there): the vocabulary
     * id when the content is a vocabulary string, else the next id after the vocabulary. */
    size_t N = (size_t)(maxid + 1);
    size_t nadd = added && added->type == TJ_ARR ? added->len : 0;
    if (vocab->len + nadd > N) N = vocab->len + nadd;
    t->n_ids = (int32_t)N;
    t->tok_off = calloc(N + 1, sizeof(uint32_t));
    t->tok_len = malloc((N + 1) * sizeof(uint32_t));
    t->tok_str = calloc(N + 1, sizeof(char *));
    t->special = calloc(N + 1, 1);
    if (!t->tok_off || !t->tok_len || !t->tok_str || !t->special) return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k <= N; k++) t->tok_len[k] = UINT32_MAX;
    /* every token's bytes are no longer than its string in the file: one allocation suffices */
    size_t pool_cap = c->doc.n + 1024;
    t->pool = malloc(pool_cap);
    if (!t->pool) return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
    uint8_t *tmp = malloc(65536);
    if (!tmp) return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
    t->vmask = pow2_at_least(vocab->len * 2 + 16) - 1;
    t->vhash = malloc((t->vmask + 1) * sizeof(int32_t));
    if (!t->vhash) {
        free(tmp);
        return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
    }
    memset(t->vhash, 0xff, (t->vmask + 1) * sizeof(int32_t));
    for (uint32_t k = 0; k < vocab->len; k++) {
        const tj_val *key = &vocab->u.items[2 * k];
        int32_t id = (int32_t)vocab->u.items[2 * k + 1].u.num;
        t->tok_str[id] = (char *)key->u.str; /* lives in the document, which we keep */
        long rl = key->len < 65536 ? bl_decode(key->u.str, key->len, tmp) : -1;
        int ok = rl >= 0 ? set_token(t, id, tmp, (size_t)rl, &pool_cap)
                         : set_token(t, id, (const uint8_t *)key->u.str, key->len, &pool_cap);
        if (ok) {
            free(tmp);
            return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
        }
        if (rl < 0) { /* not byte-level: reachable only as an exact string */
            if (!t->tok_dup && !(t->tok_dup = calloc(N + 1, 1))) {
                free(tmp);
                return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
            }
            t->tok_dup[id] = 1;
            continue;
        }
        size_t i = hash_bytes(t->pool + t->tok_off[id], (size_t)rl) & t->vmask;
        while (t->vhash[i] >= 0) {
            int32_t o = t->vhash[i];
            if (t->tok_len[o] == (uint32_t)rl && !memcmp(t->pool + t->tok_off[o], t->pool + t->tok_off[id], (size_t)rl)) break;
            i = (i + 1) & t->vmask;
        }
        t->vhash[i] = id;
    }
    for (int b = 0; b < 256; b++) {
        uint8_t bb = (uint8_t)b;
        t->byte_id[b] = vocab_find(t, &bb, 1);
    }
    t->unk_id = -1;
    const tj_val *unk = tj_get(m, "unk_token");
    if (unk && unk->type == TJ_STR) {
        long rl = bl_decode(unk->u.str, unk->len, tmp);
        if (rl >= 0) t->unk_id = vocab_find(t, tmp, (size_t)rl);
    }
    /* merges */
    int32_t merge_base = 0;
    t->mmask = pow2_at_least(merges->len + merges->len / 2 + 16) - 1;
    t->merges = calloc(t->mmask + 1, sizeof(merge_slot));
    if (!t->merges) {
        free(tmp);
        return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
    }
    for (uint32_t k = 0; k < merges->len; k++) {
        const tj_val *mv = &merges->u.items[k];
        const char *a, *b;
        size_t al, bl;
        if (mv->type == TJ_STR) {
            const char *sp = memchr(mv->u.str, ' ', mv->len);
            if (!sp || memchr(sp + 1, ' ', mv->len - (size_t)(sp + 1 - mv->u.str))) {
                free(tmp);
                return invalid(c, "merge is not \"a b\" (exactly one space)", mv);
            }
            a = mv->u.str;
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = mv->len - al - 1;
        } else if (mv->type == TJ_ARR && mv->len == 2 && mv->u.items[0].type == TJ_STR && mv->u.items[1].type == TJ_STR) {
            a = mv->u.items[0].u.str;
            al = mv->u.items[0].len;
            b = mv->u.items[1].u.str;
            bl = mv->u.items[1].len;
        } else {
            free(tmp);
            return invalid(c, "merge is neither \"a b\" nor [\"a\", \"b\"]", mv);
        }
        if (al + bl >= 32768) continue;
        long ra = bl_decode(a, al, tmp);
        long rb = ra >= 0 ? bl_decode(b, bl, tmp + ra) : -1;
        if (ra < 0 || rb < 0) continue; /* merges of non-byte-level strings never apply */
        int32_t ia = vocab_find(t, tmp, (size_t)ra), ib = vocab_find(t, tmp + ra, (size_t)rb);
        /* BPE vocabularies number merged tokens in merge order: try that id before hashing */
        int32_t in = -1, guess = (int32_t)k + merge_base;
        if (guess >= 0 && guess < t->n_ids && t->tok_len[guess] == (uint32_t)(ra + rb) &&
            !memcmp(t->pool + t->tok_off[guess], tmp, (size_t)(ra + rb)) && vocab_find_is(t, guess))
            in = guess;
        if (in < 0) {
            in = vocab_find(t, tmp, (size_t)(ra + rb));
            if (in >= 0) merge_base = in - (int32_t)k;
        }
        if (ia < 0 || ib < 0 || in < 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "merge #%u (\"%.*s\" + \"%.*s\") uses a token that is not in the vocabulary", k,
                     (int)(al > 100 ? 100 : al), a, (int)(bl > 100 ? 100 : bl), b);
            free(tmp);
            return invalid(c, msg, mv);
        }
        uint64_t key = (((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib) + 1;
        size_t i = mix64(key) & t->mmask;
        while (t->merges[i].key && t->merges[i].key != key) i = (i + 1) & t->mmask;
        t->merges[i] = (merge_slot){key, k, in}; /* a repeated merge keeps the last rank, as HF */
    }
    /* added tokens */
    int32_t max_used = (int32_t)(maxid + 1);
    if (added && added->type == TJ_ARR) {
        t->added = calloc(added->len + 1, sizeof(added_token));
        if (!t->added) {
            free(tmp);
            return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
        }
        for (uint32_t k = 0; k < added->len; k++) {
            const tj_val *a = &added->u.items[k];
            const tj_val *cv = tj_get(a, "content");
            if (!cv || cv->type != TJ_STR) {
                free(tmp);
                return invalid(c, "added token without \"content\"", a);
            }
            added_token *at = &t->added[t->nadded++];
            at->content = (char *)cv->u.str;
            at->len = cv->len;
            at->id = -1;
            for (size_t q = 0; q + 1 < t->nadded; q++)
                if (t->added[q].len == at->len && !memcmp(t->added[q].content, at->content, at->len)) at->id = t->added[q].id;
            if (at->id < 0) {
                long rl0 = cv->len < 65536 ? bl_decode(cv->u.str, cv->len, tmp) : -1;
                int32_t vid = rl0 >= 0 ? vocab_find(t, tmp, (size_t)rl0) : -1;
                if (vid >= 0 && t->tok_str[vid] && strlen(t->tok_str[vid]) == cv->len && !memcmp(t->tok_str[vid], cv->u.str, cv->len))
                    at->id = vid;
            }
            if (at->id < 0) {
                int32_t mx = -1;
                for (size_t q = 0; q + 1 < t->nadded; q++)
                    if (t->added[q].id > mx) mx = t->added[q].id;
                at->id = mx >= (int32_t)vocab->len ? mx + 1 : (int32_t)vocab->len;
            }
            if (at->id >= (int32_t)N) {
                free(tmp);
                return invalid(c, "added token ids overflow the vocabulary", a);
            }
            if (at->id + 1 > max_used) max_used = at->id + 1;
            at->special = get_bool(a, "special", 0);
            at->lstrip = get_bool(a, "lstrip", 0);
            at->rstrip = get_bool(a, "rstrip", 0);
            at->single_word = get_bool(a, "single_word", 0);
            at->normalized = get_bool(a, "normalized", !at->special);
            t->special[at->id] = (uint8_t)at->special;
            t->tok_str[at->id] = at->content;
            /* the ByteLevel decoder maps a token through the alphabet when it can, else keeps it */
            long rl = cv->len < 65536 ? bl_decode(cv->u.str, cv->len, tmp) : -1;
            int ok = rl >= 0 ? set_token(t, at->id, tmp, (size_t)rl, &pool_cap)
                             : set_token(t, at->id, (const uint8_t *)cv->u.str, cv->len, &pool_cap);
            if (ok) {
                free(tmp);
                return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
            }
            if (at->len == 0) continue;
            if (trie_add(at->normalized && t->nfc ? &t->trie_norm : &t->trie_raw, (const uint8_t *)at->content, at->len,
                         (int32_t)(t->nadded - 1))) {
                free(tmp);
                return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
            }
        }
    }
    t->n_ids = max_used;
    free(tmp);
    return 0;
}

static int load_all(load_ctx *c, kd_tokenizer *t) {
    const tj_val *root = c->doc.root;
    if (root->type != TJ_OBJ) return invalid(c, "tokenizer.json must be a JSON object", root);
    const tj_val *tr = tj_get(root, "truncation"), *pd = tj_get(root, "padding");
    if (tr && tr->type != TJ_NULL) return unsupported(c, "truncation settings", tr);
    if (pd && pd->type != TJ_NULL) return unsupported(c, "padding settings", pd);
    if (load_normalizer(c, t, tj_get(root, "normalizer"), 0)) return c->err ? c->err->code : KD_ERR_INVALID;
    if (load_pretok(c, t, tj_get(root, "pre_tokenizer"), 0)) return c->err ? c->err->code : KD_ERR_INVALID;
    int has_bl = 0;
    for (int k = 0; k < t->nsteps; k++) has_bl |= t->steps[k].kind == STEP_BYTELEVEL;
    if (!has_bl) return unsupported(c, "pre_tokenizer without ByteLevel (not a byte-level BPE)", tj_get(root, "pre_tokenizer"));
    if (load_model(c, t, root)) return c->err ? c->err->code : KD_ERR_INVALID;
    if (load_post(c, t, tj_get(root, "post_processor"), 0)) return c->err ? c->err->code : KD_ERR_INVALID;
    if (load_decoder(c, tj_get(root, "decoder"))) return c->err ? c->err->code : KD_ERR_INVALID;
    return 0;
}

/* One read of the whole file (kd_read_file grows a buffer by doubling, which costs copies). */
static int read_whole(const char *path, char **data, size_t *len, kd_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kd_error_errno(err, errno, "%s: cannot open the tokenizer", path);
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return kd_read_file(path, data, len, err);
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return kd_error_set(err, KD_ERR_NOMEM, "%s: out of memory", path);
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return kd_error_errno(err, e, "%s: read failed", path);
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *data = buf;
    *len = n;
    return KD_OK;
}

typedef struct sha_job {
    const char *path; /* hash this file, read in chunks ... */
    const char *data; /* ... or these bytes */
    size_t len;
    char *hex;
    int failed;
} sha_job;

static void *sha_thread(void *arg) {
    sha_job *j = arg;
    if (!j->path) {
        kd_sha256_hex(j->data, j->len, j->hex);
        return NULL;
    }
    int fd = open(j->path, O_RDONLY | O_CLOEXEC);
    char *buf = fd >= 0 ? malloc(1 << 20) : NULL;
    if (!buf) {
        if (fd >= 0) close(fd);
        j->failed = 1;
        return NULL;
    }
    kd_sha256 h;
    kd_sha256_init(&h);
    for (;;) {
        ssize_t r = read(fd, buf, 1 << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) j->failed = 1;
        if (r <= 0) break;
        kd_sha256_update(&h, buf, (size_t)r);
    }
    close(fd);
    free(buf);
    uint8_t d[32];
    kd_sha256_final(&h, d);
    for (int k = 0; k < 32; k++) snprintf(j->hex + 2 * k, 3, "%02x", d[k]);
    return NULL;
}

/* We keep the parsed document alive: token strings point into it. */
typedef struct kd_tokenizer_full {
    kd_tokenizer t;
    tj_doc doc;
} kd_tokenizer_full;

/* Takes ownership of data (len bytes + 1 spare) and of file (the name used in messages). */
static int open_buffer(kd_tokenizer **out, char *file, const char *hash_path, char *data, size_t len, kd_error *err) {
    *out = NULL;
    pthread_once(&g_cls_once, build_classes);
    pthread_once(&g_bl_once, build_bytelevel);
    if (!g_cls) {
        free(file);
        free(data);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory building Unicode tables");
    }
    kd_tokenizer_full *f = calloc(1, sizeof *f);
    if (!f) {
        free(file);
        free(data);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    }
    kd_tokenizer *t = &f->t;
    t->path = file;
    t->generation = atomic_fetch_add(&g_generation, 1);
    /* SHA-256 is about a third of the work: a second thread reads and hashes the file while we
     * parse (the parser rewrites its own buffer in place). */
    sha_job job = {hash_path, data, len, t->sha256, 0};
    pthread_t th;
    int threaded = hash_path && pthread_create(&th, NULL, sha_thread, &job) == 0;
    if (!threaded) {
        job.path = NULL;
        sha_thread(&job);
    }
    char msg[512];
    load_ctx c = {.path = file, .err = err};
    int rc;
    if (tj_parse(&f->doc, data, len, msg, sizeof msg)) {
        rc = kd_error_set(err, KD_ERR_PARSE, "%s: malformed JSON at %s", file, msg);
    } else {
        c.doc = f->doc;
        rc = load_all(&c, t);
    }
    if (threaded) pthread_join(th, NULL);
    if (!rc && job.failed) rc = kd_error_set(err, KD_ERR_IO, "%s: reading the file again to hash it failed", file);
    if (rc) {
        kd_tokenizer_close(t);
        return rc;
    }
    *out = t;
    return KD_OK;
}

int kd_tokenizer_open(kd_tokenizer **out, const char *path, kd_error *err) {
    *out = NULL;
    char *file = NULL;
    if (kd_is_dir(path)) {
        size_t n = strlen(path) + 32;
        file = malloc(n);
        if (!file) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        snprintf(file, n, "%s/tokenizer.json", path);
    } else {
        file = kd_strdup(path);
        if (!file) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    }
    char *data = NULL;
    size_t len = 0;
    int rc = read_whole(file, &data, &len, err);
    if (rc) {
        free(file);
        return rc;
    }
    return open_buffer(out, file, file, data, len, err);
}

int kd_tokenizer_open_memory(kd_tokenizer **out, const char *json, size_t len, const char *name, kd_error *err) {
    *out = NULL;
    char *data = malloc(len + 1);
    char *file = kd_strdup(name ? name : "(memory)");
    if (!data || !file) {
        free(data);
        free(file);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    }
    memcpy(data, json, len);
    data[len] = 0;
    return open_buffer(out, file, NULL, data, len, err);
}

void kd_tokenizer_close(kd_tokenizer *t) {
    if (!t) return;
    kd_tokenizer_full *f = (kd_tokenizer_full *)t;
    for (int k = 0; k < t->nsteps; k++) {
        if (t->steps[k].re) pcre2_code_free(t->steps[k].re);
        free(t->steps[k].literal);
    }
    free(t->steps);
    free(t->path);
    free(t->pool);
    free(t->tok_off);
    free(t->tok_len);
    free(t->tok_str);
    free(t->special);
    free(t->tok_dup);
    free(t->vhash);
    free(t->merges);
    free(t->added);
    free(t->trie_raw.nodes);
    free(t->trie_norm.nodes);
    free(t->tmpl_pre);
    free(t->tmpl_post);
    tj_free(&f->doc);
    free(f);
}

/* ---------------------------------------------------------------- per-caller work space */

typedef struct cache_slot {
    uint64_t hash; /* 0 = empty */
    uint32_t boff, roff;
    uint16_t blen, nres;
} cache_slot;

typedef struct bpe_tok {
    int32_t id;
    uint32_t start, len; /* relative to the piece */
} bpe_tok;

#define CACHE_SLOTS (1u << 16)
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_MAX_PIECE 128

typedef struct work {
    uint64_t generation;
    /* lossy-UTF-8 copy with alignment */
    uint8_t *lb;
    uint32_t *la0, *la1;
    size_t lcap;
    /* NFC output with alignment */
    uint8_t *nb;
    uint32_t *na0, *na1;
    size_t ncap;
    /* BPE */
    int32_t *sid;
    uint32_t *sst, *sln, *rank;
    int32_t *prev, *next;
    uint64_t *heap; /* rank << 32 | pos; pos < 2^32 */
    size_t bcap;
    bpe_tok *res;
    size_t rcap;
    /* cache */
    cache_slot *slots;
    size_t centries;
    uint8_t *cbytes;
    size_t cbn, cbcap;
    bpe_tok *cres;
    size_t crn, crcap;
    pcre2_match_data *md;
} work;

static void work_free(work *w) {
    if (!w) return;
    free(w->lb);
    free(w->la0);
    free(w->la1);
    free(w->nb);
    free(w->na0);
    free(w->na1);
    free(w->sid);
    free(w->sst);
    free(w->sln);
    free(w->rank);
    free(w->prev);
    free(w->next);
    free(w->heap);
    free(w->res);
    free(w->slots);
    free(w->cbytes);
    free(w->cres);
    if (w->md) pcre2_match_data_free(w->md);
    free(w);
}

void kd_encoding_free(kd_encoding *enc) {
    if (!enc) return;
    free(enc->ids);
    free(enc->offsets);
    work_free(enc->work);
    memset(enc, 0, sizeof *enc);
}

static int out_reserve(kd_encoding *o, size_t extra) {
    if (o->count + extra <= o->cap) return 0;
    size_t nc = o->cap ? o->cap : 256;
    while (nc < o->count + extra) nc *= 2;
    int32_t *ni = realloc(o->ids, nc * sizeof(int32_t));
    if (!ni) return -1;
    o->ids = ni;
    int32_t(*no)[2] = realloc(o->offsets, nc * sizeof(*no));
    if (!no) return -1;
    o->offsets = no;
    o->cap = nc;
    return 0;
}

/* A stretch of text in the pipeline: bytes plus where each byte came from in the input. */
typedef struct seg {
    const uint8_t *s;
    size_t n;
    const uint32_t *a0, *a1; /* per byte: original [start, end); NULL = identity from base */
    size_t base;
} seg;

static inline seg sub_seg(const seg *g, size_t i, size_t j) {
    seg r = {g->s + i, j - i, g->a0 ? g->a0 + i : NULL, g->a1 ? g->a1 + i : NULL, g->base + i};
    return r;
}

static inline void seg_span(const seg *g, size_t i, size_t j, int32_t *o0, int32_t *o1) {
    if (g->a0) {
        *o0 = (int32_t)g->a0[i];
        *o1 = (int32_t)g->a1[j - 1];
    } else {
        *o0 = (int32_t)(g->base + i);
        *o1 = (int32_t)(g->base + j);
    }
}

typedef struct enc_ctx {
    const kd_tokenizer *t;
    work *w;
    kd_encoding *out;
    kd_error *err;
    kd_tokcache *cache; /* NULL: encode every span */
} enc_ctx;

static int nomem(enc_ctx *c) { return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory while encoding"); }

static int emit(enc_ctx *c, int32_t id, int32_t o0, int32_t o1) {
    kd_encoding *o = c->out;
    if (o->count == o->cap && out_reserve(o, 1)) return nomem(c);
    o->ids[o->count] = id;
    o->offsets[o->count][0] = o0;
    o->offsets[o->count][1] = o1;
    o->count++;
    return 0;
}

/* ---------------------------------------------------------------- BPE */

static int bpe_reserve(work *w, size_t n) {
    if (n <= w->bcap) return 0;
    size_t nc = w->bcap ? w->bcap : 256;
    while (nc < n) nc *= 2;
#define GROW(p)                                                  \
    do {                                                         \
        void *np_ = realloc(p, nc * sizeof(*(p)));               \
        if (!np_) return -1;                                     \
        p = np_;                                                 \
    } while (0)
    GROW(w->sid);
    GROW(w->sst);
    GROW(w->sln);
    GROW(w->rank);
    GROW(w->prev);
    GROW(w->next);
    GROW(w->heap);
    GROW(w->res);
#undef GROW
    w->bcap = nc;
    return 0;
}

static inline void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static inline uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= m) break;
        if (l + 1 < m && h[l + 1] < h[l]) l++;
        if (h[l] >= v) break;
        h[i] = h[l];
        i = l;
    }
    if (m) h[i] = v;
    return top;
}

/* BPE of one pre-token; results in w->res, returns the count (or -1 on OOM). Merges the pair of
 * lowest rank first, leftmost on ties: HF's order. */
static long bpe_word(const kd_tokenizer *t, work *w, const uint8_t *b, size_t n) {
    if (bpe_reserve(w, n + 1)) return -1;
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        int32_t id = t->byte_id[b[k]];
        if (id < 0) {
            if (t->unk_id < 0) continue; /* HF drops a symbol it cannot represent */
            id = t->unk_id;
        }
        w->sid[m] = id;
        w->sst[m] = (uint32_t)k;
        w->sln[m] = 1;
        m++;
    }
    if (m <= 64) {
        int32_t nid = -1;
        uint32_t r = 0;
        for (size_t k = 0; k + 1 < m; k++) w->rank[k] = merge_get(t, w->sid[k], w->sid[k + 1], &r, &nid) ? r : UINT32_MAX;
        while (m > 1) {
            uint32_t best = UINT32_MAX;
            size_t bk = 0;
            for (size_t k = 0; k + 1 < m; k++)
                if (w->rank[k] < best) best = w->rank[k], bk = k;
            if (best == UINT32_MAX) break;
            merge_get(t, w->sid[bk], w->sid[bk + 1], &r, &nid);
            w->sid[bk] = nid;
            w->sln[bk] = w->sst[bk + 1] + w->sln[bk + 1] - w->sst[bk];
            for (size_t k = bk + 1; k + 1 < m; k++) {
                w->sid[k] = w->sid[k + 1];
                w->sst[k] = w->sst[k + 1];
                w->sln[k] = w->sln[k + 1];
                w->rank[k] = w->rank[k + 1];
            }
            m--;
            if (bk > 0) w->rank[bk - 1] = merge_get(t, w->sid[bk - 1], w->sid[bk], &r, &nid) ? r : UINT32_MAX;
            if (bk + 1 < m) w->rank[bk] = merge_get(t, w->sid[bk], w->sid[bk + 1], &r, &nid) ? r : UINT32_MAX;
        }
        for (size_t k = 0; k < m; k++) w->res[k] = (bpe_tok){w->sid[k], w->sst[k], w->sln[k]};
        return (long)m;
    }
    /* long words: linked list + heap, with stale entries skipped as in HF's word.rs */
    size_t hn = 0;
    for (size_t k = 0; k < m; k++) {
        w->prev[k] = (int32_t)k - 1;
        w->next[k] = k + 1 < m ? (int32_t)(k + 1) : -1;
    }
    for (size_t k = 0; k + 1 < m; k++) {
        uint32_t r;
        int32_t nid;
        if (merge_get(t, w->sid[k], w->sid[k + 1], &r, &nid)) heap_push(w->heap, &hn, ((uint64_t)r << 32) | k);
    }
    while (hn) {
        uint64_t top = heap_pop(w->heap, &hn);
        uint32_t rank = (uint32_t)(top >> 32), pos = (uint32_t)top;
        if (w->sln[pos] == 0 || w->next[pos] < 0) continue;
        int32_t nx = w->next[pos];
        uint32_t r;
        int32_t nid;
        if (!merge_get(t, w->sid[pos], w->sid[nx], &r, &nid) || r != rank) continue;
        w->sid[pos] = nid;
        w->sln[pos] = w->sst[nx] + w->sln[nx] - w->sst[pos];
        w->sln[nx] = 0;
        w->next[pos] = w->next[nx];
        if (w->next[nx] >= 0) w->prev[w->next[nx]] = (int32_t)pos;
        if (w->prev[pos] >= 0) {
            int32_t pv = w->prev[pos];
            if (merge_get(t, w->sid[pv], w->sid[pos], &r, &nid)) heap_push(w->heap, &hn, ((uint64_t)r << 32) | (uint32_t)pv);
        }
        if (w->next[pos] >= 0) {
            if (merge_get(t, w->sid[pos], w->sid[w->next[pos]], &r, &nid)) heap_push(w->heap, &hn, ((uint64_t)r << 32) | pos);
        }
    }
    size_t o = 0;
    for (size_t k = 0; k < m; k++)
        if (w->sln[k]) w->res[o++] = (bpe_tok){w->sid[k], w->sst[k], w->sln[k]};
    return (long)o;
}

static void cache_clear(work *w) {
    if (w->slots) memset(w->slots, 0, CACHE_SLOTS * sizeof(cache_slot));
    w->centries = 0;
    w->cbn = 0;
    w->crn = 0;
}

static int bpe_emit(enc_ctx *c, const seg *g, size_t i, size_t j) {
    const kd_tokenizer *t = c->t;
    work *w = c->w;
    size_t n = j - i;
    const uint8_t *b = g->s + i;
    if (n == 0) return 0;
    if (t->ignore_merges) {
        int32_t id = vocab_find(t, b, n);
        if (id >= 0) {
            int32_t o0, o1;
            seg_span(g, i, j, &o0, &o1);
            return emit(c, id, o0, o1);
        }
    }
    const bpe_tok *res;
    long nres;
    cache_slot *slot = NULL;
    uint64_t h = 0;
    if (n <= CACHE_MAX_PIECE) {
        if (!w->slots) {
            w->slots = calloc(CACHE_SLOTS, sizeof(cache_slot));
            if (!w->slots) return nomem(c);
        }
        h = hash_bytes(b, n) | 1;
        size_t s = h & (CACHE_SLOTS - 1);
        for (;;) {
            cache_slot *cs = &w->slots[s];
            if (!cs->hash) {
                slot = cs;
                break;
            }
            if (cs->hash == h && cs->blen == n && (n == 0 || !memcmp(w->cbytes + cs->boff, b, n))) {
                res = cs->nres ? w->cres + cs->roff : NULL; /* an empty result may predate the array */
                nres = cs->nres;
                goto have;
            }
            s = (s + 1) & (CACHE_SLOTS - 1);
        }
    }
    nres = bpe_word(t, w, b, n);
    if (nres < 0) return nomem(c);
    res = w->res;
    if (slot) {
        if (w->centries >= CACHE_MAX_ENTRIES) {
            cache_clear(w);
        } else {
            if (w->cbn + n > w->cbcap) {
                size_t nc = w->cbcap ? w->cbcap * 2 : 1 << 16;
                uint8_t *nb = realloc(w->cbytes, nc);
                if (!nb) return nomem(c);
                w->cbytes = nb;
                w->cbcap = nc;
            }
            if (w->crn + (size_t)nres > w->crcap) {
                size_t nc = w->crcap ? w->crcap * 2 : 1 << 14;
                while (nc < w->crn + (size_t)nres) nc *= 2;
                bpe_tok *nr = realloc(w->cres, nc * sizeof(bpe_tok));
                if (!nr) return nomem(c);
                w->cres = nr;
                w->crcap = nc;
            }
            /* a word can encode to nothing (a byte the vocabulary lacks): no copy, no pointer arithmetic
               on a result array not allocated yet */
            if (n) memcpy(w->cbytes + w->cbn, b, n);
            if (nres) memcpy(w->cres + w->crn, res, (size_t)nres * sizeof(bpe_tok));
            *slot = (cache_slot){h, (uint32_t)w->cbn, (uint32_t)w->crn, (uint16_t)n, (uint16_t)nres};
            w->cbn += n;
            w->crn += (size_t)nres;
            w->centries++;
        }
    }
have:
    if (out_reserve(c->out, (size_t)nres)) return nomem(c);
    for (long k = 0; k < nres; k++) {
        int32_t o0, o1;
        seg_span(g, i + res[k].start, i + res[k].start + res[k].len, &o0, &o1);
        kd_encoding *o = c->out;
        o->ids[o->count] = res[k].id;
        o->offsets[o->count][0] = o0;
        o->offsets[o->count][1] = o1;
        o->count++;
    }
    return 0;
}

/* ---------------------------------------------------------------- pre-tokenizer scanners */

static inline uint8_t cls_at(const uint8_t *s, size_t i, uint32_t *cp, int *len) {
    *cp = dec_utf8(s, i, len);
    return cls_of(*cp);
}

static inline int ascii_lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* End of the match of a known pattern at s[i] (i < n); these patterns match at every position. */
static size_t scan_known(int which, const uint8_t *s, size_t n, size_t i) {
    uint32_t cp;
    int len;
    uint8_t k = cls_at(s, i, &cp, &len);
    /* contractions */
    if (cp == '\'' && i + 1 < n) {
        int ci = which != SCAN_GPT2;
        int c1 = ci ? ascii_lower(s[i + 1]) : s[i + 1];
        int c2 = i + 2 < n ? (ci ? ascii_lower(s[i + 2]) : s[i + 2]) : 0;
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
        if ((c1 == 'r' || c1 == 'v') && c2 == 'e') return i + 3;
        if (c1 == 'l' && c2 == 'l') return i + 3;
        /* (?i:'s) also matches U+017F LATIN SMALL LETTER LONG S (folds to s) */
        if (ci && s[i + 1] == 0xC5 && i + 2 < n && s[i + 2] == 0xBF) return i + 3;
    }
    if (which == SCAN_GPT2) {
        size_t j = i;
        uint8_t kk = k;
        if (cp == ' ' && i + 1 < n) {
            uint32_t c2;
            int l2;
            uint8_t k2 = cls_at(s, i + 1, &c2, &l2);
            if (k2 & (K_L | K_N)) kk = k2, j = i + 1;
            else if (!(k2 & K_WS)) kk = 0, j = i + 1;
        }
        if (j > i || !(k & K_WS)) {
            /* ` ?\p{L}+`, ` ?\p{N}+` or ` ?[^\s\p{L}\p{N}]+` from j */
            uint8_t want = kk & K_L ? K_L : kk & K_N ? K_N : 0;
            while (j < n) {
                uint32_t c3;
                int l3;
                uint8_t k3 = cls_at(s, j, &c3, &l3);
                if (want ? !(k3 & want) : (k3 & (K_L | K_N | K_WS)) != 0) break;
                j += (size_t)l3;
            }
            return j;
        }
    } else {
        /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        size_t j = i;
        if (k & K_L) j = i;
        else if (!(k & K_N) && cp != '\r' && cp != '\n' && i + (size_t)len < n) {
            uint32_t c2;
            int l2;
            if (cls_at(s, i + (size_t)len, &c2, &l2) & K_L) j = i + (size_t)len;
            else j = SIZE_MAX;
        } else {
            j = SIZE_MAX;
        }
        if (j != SIZE_MAX) {
            while (j < n) {
                uint32_t c3;
                int l3;
                if (!(cls_at(s, j, &c3, &l3) & K_L)) break;
                j += (size_t)l3;
            }
            return j;
        }
        if (k & K_N) {
            if (which == SCAN_QWEN2) return i + (size_t)len;
            size_t e = i + (size_t)len;
            for (int q = 1; q < 3 && e < n; q++) {
                uint32_t c3;
                int l3;
                if (!(cls_at(s, e, &c3, &l3) & K_N)) break;
                e += (size_t)l3;
            }
            return e;
        }
        /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
        j = i;
        if (cp == ' ' && i + 1 < n) {
            uint32_t c2;
            int l2;
            if (!(cls_at(s, i + 1, &c2, &l2) & (K_L | K_N | K_WS))) j = i + 1;
        }
        if (j > i || !(k & K_WS)) {
            while (j < n) {
                uint32_t c3;
                int l3;
                if (cls_at(s, j, &c3, &l3) & (K_L | K_N | K_WS)) break;
                j += (size_t)l3;
            }
            while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
            return j;
        }
    }
    /* whitespace run [i, e) */
    size_t e = i, last_nl = SIZE_MAX, last_start = i;
    while (e < n) {
        uint32_t c3;
        int l3;
        if (!(cls_at(s, e, &c3, &l3) & K_WS)) break;
        if (c3 == '\r' || c3 == '\n') last_nl = e;
        last_start = e;
        e += (size_t)l3;
    }
    if (which != SCAN_GPT2 && last_nl != SIZE_MAX) return last_nl + 1; /* \s*[\r\n]+ */
    if (e == n) return e;                                              /* \s+(?!\S) at the end */
    if (last_start > i) return last_start;                             /* \s+(?!\S): leave one */
    return e;                                                          /* \s+ */
}

/* Next regex match in s[0, n) at or after pos (onig find_iter semantics). Returns 0 when none. */
static int next_match(enc_ctx *c, const pretok_step *st, const uint8_t *s, size_t n, size_t *pos, size_t *last_end,
                      size_t *ms, size_t *me) {
    if (st->scanner != SCAN_NONE) {
        if (*pos >= n) return 0;
        *ms = *pos;
        *me = scan_known(st->scanner, s, n, *pos);
        *pos = *me;
        return 1;
    }
    if (st->literal) {
        if (*pos >= n) return 0;
        const uint8_t *f = memmem(s + *pos, n - *pos, st->literal, st->literal_len);
        if (!f) return 0;
        *ms = (size_t)(f - s);
        *me = *ms + st->literal_len;
        *pos = *me;
        return 1;
    }
    for (;;) {
        if (*pos > n) return 0;
        if (!c->w->md) {
            c->w->md = pcre2_match_data_create(1, NULL);
            if (!c->w->md) return 0;
        }
        int rc = pcre2_match(st->re, s, n, *pos, PCRE2_NO_UTF_CHECK, c->w->md, NULL);
        if (rc < 0) return 0;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->w->md);
        size_t a = ov[0], b = ov[1];
        if (a == b && *last_end == b) {
            if (*pos >= n) return 0;
            int l;
            dec_utf8(s, *pos, &l);
            *pos += (size_t)l;
            continue;
        }
        *pos = b;
        *last_end = b;
        *ms = a;
        *me = b;
        return 1;
    }
}

static int pretok(enc_ctx *c, const seg *g, int step);

static int split_step(enc_ctx *c, const seg *g, int step, const pretok_step *st) {
    size_t n = g->n, pos = 0, last_end = SIZE_MAX, ms, me, prev = 0;
    if (n == 0) return 0;
    if (st->behavior == BEH_ISOLATED) {
        while (next_match(c, st, g->s, n, &pos, &last_end, &ms, &me)) {
            if (ms > prev) {
                seg p = sub_seg(g, prev, ms);
                if (pretok(c, &p, step + 1)) return -1;
            }
            if (me > ms) {
                seg p = sub_seg(g, ms, me);
                if (pretok(c, &p, step + 1)) return -1;
            }
            prev = me;
        }
        if (prev < n) {
            seg p = sub_seg(g, prev, n);
            if (pretok(c, &p, step + 1)) return -1;
        }
        return 0;
    }
    /* the general behaviours: list (start, end, is_match), then combine as HF's split.rs */
    size_t cap = 64, cnt = 0;
    size_t(*L)[3] = malloc(cap * sizeof(*L));
    if (!L) return nomem(c);
#define PUSHL(a, b, m)                                                 \
    do {                                                               \
        if (cnt == cap) {                                              \
            void *nl_ = realloc(L, cap * 2 * sizeof(*L));              \
            if (!nl_) {                                                \
                free(L);                                               \
                return nomem(c);                                       \
            }                                                          \
            L = nl_;                                                   \
            cap *= 2;                                                  \
        }                                                              \
        L[cnt][0] = (a), L[cnt][1] = (b), L[cnt][2] = (m) ^ (size_t)st->invert; \
        cnt++;                                                         \
    } while (0)
    while (next_match(c, st, g->s, n, &pos, &last_end, &ms, &me)) {
        if (ms > prev) PUSHL(prev, ms, 0);
        PUSHL(ms, me, 1);
        prev = me;
    }
    if (prev < n) PUSHL(prev, n, 0);
#undef PUSHL
    size_t on = 0;
    int pm = 0;
    if (st->behavior == BEH_REMOVED) {
        for (size_t k = 0; k < cnt; k++)
            if (!L[k][2]) L[on][0] = L[k][0], L[on][1] = L[k][1], on++;
    } else if (st->behavior == BEH_MERGED_PREV) {
        for (size_t k = 0; k < cnt; k++) {
            int m = (int)L[k][2];
            if (m && !pm && on) L[on - 1][1] = L[k][1];
            else L[on][0] = L[k][0], L[on][1] = L[k][1], on++;
            pm = m;
        }
    } else if (st->behavior == BEH_CONTIGUOUS) {
        for (size_t k = 0; k < cnt; k++) {
            int m = (int)L[k][2];
            if (m == pm && on) L[on - 1][1] = L[k][1];
            else L[on][0] = L[k][0], L[on][1] = L[k][1], on++;
            pm = m;
        }
    } else { /* MergedWithNext: the same from the right */
        size_t w = cnt;
        for (size_t k = cnt; k-- > 0;) {
            int m = (int)L[k][2];
            if (m && !pm && w < cnt) L[w][0] = L[k][0];
            else w--, L[w][0] = L[k][0], L[w][1] = L[k][1];
            pm = m;
        }
        for (size_t k = w; k < cnt; k++) L[on][0] = L[k][0], L[on][1] = L[k][1], on++;
    }
    for (size_t k = 0; k < on; k++) {
        if (L[k][1] <= L[k][0]) continue;
        seg p = sub_seg(g, L[k][0], L[k][1]);
        if (pretok(c, &p, step + 1)) {
            free(L);
            return -1;
        }
    }
    free(L);
    return 0;
}

static int pretok(enc_ctx *c, const seg *g, int step) {
    const kd_tokenizer *t = c->t;
    if (g->n == 0) return 0;
    if (step == t->nsteps) return bpe_emit(c, g, 0, g->n);
    const pretok_step *st = &t->steps[step];
    if (st->kind == STEP_SPLIT) return split_step(c, g, step, st);
    /* ByteLevel */
    if (st->add_prefix_space && g->s[0] != ' ') {
        /* HF prepends a space that takes the first character's alignment */
        size_t n = g->n + 1;
        uint8_t *b = malloc(n);
        uint32_t *a0 = malloc(n * sizeof(uint32_t)), *a1 = malloc(n * sizeof(uint32_t));
        if (!b || !a0 || !a1) {
            free(b), free(a0), free(a1);
            return nomem(c);
        }
        int l;
        dec_utf8(g->s, 0, &l);
        b[0] = ' ';
        memcpy(b + 1, g->s, g->n);
        for (size_t k = 0; k < g->n; k++) {
            int32_t o0, o1;
            seg_span(g, k, k + 1, &o0, &o1);
            a0[k + 1] = (uint32_t)o0;
            a1[k + 1] = (uint32_t)o1;
        }
        a0[0] = a0[1];
        a1[0] = a1[(size_t)l];
        seg ng = {b, n, a0, a1, 0};
        int rc;
        if (st->use_regex) {
            pretok_step tmp = *st;
            tmp.behavior = BEH_ISOLATED;
            tmp.invert = 0;
            rc = split_step(c, &ng, step, &tmp);
        } else {
            rc = pretok(c, &ng, step + 1);
        }
        free(b), free(a0), free(a1);
        return rc;
    }
    if (st->use_regex) {
        pretok_step tmp = *st;
        tmp.behavior = BEH_ISOLATED;
        tmp.invert = 0;
        return split_step(c, g, step, &tmp);
    }
    return pretok(c, g, step + 1);
}

/* ---------------------------------------------------------------- NFC with alignments */

static int nb_reserve(work *w, size_t n) {
    if (n <= w->ncap) return 0;
    size_t nc = w->ncap ? w->ncap : 4096;
    while (nc < n) nc *= 2;
    uint8_t *b = realloc(w->nb, nc);
    if (!b) return -1;
    w->nb = b;
    uint32_t *a = realloc(w->na0, nc * sizeof(uint32_t));
    if (!a) return -1;
    w->na0 = a;
    a = realloc(w->na1, nc * sizeof(uint32_t));
    if (!a) return -1;
    w->na1 = a;
    w->ncap = nc;
    return 0;
}

static int32_t compose_pair(int32_t a, int32_t b) {
    utf8proc_int32_t buf[2] = {a, b};
    utf8proc_ssize_t r = utf8proc_normalize_utf32(buf, 2, UTF8PROC_COMPOSE | UTF8PROC_STABLE);
    return r == 1 ? buf[0] : -1;
}

#define NFC_MAX_REGION 64

/* NFC of one region of code points (start at a starter); each output char takes the range of the
 * input char HF's alignment walk would give it (compositions consume the chars they absorb). */
static int nfc_region(enc_ctx *c, const seg *g, size_t ri, size_t rj, size_t *wpos) {
    work *w = c->w;
    int32_t cps[NFC_MAX_REGION * 4];
    int chg[NFC_MAX_REGION * 4];
    uint32_t src0[NFC_MAX_REGION], src1[NFC_MAX_REGION];
    uint32_t icp[NFC_MAX_REGION];
    size_t ipos[NFC_MAX_REGION];
    size_t nin = 0, nd = 0;
    for (size_t i = ri; i < rj;) {
        int l;
        uint32_t cp = dec_utf8(g->s, i, &l);
        int32_t o0, o1;
        seg_span(g, i, i + (size_t)l, &o0, &o1);
        src0[nin] = (uint32_t)o0;
        src1[nin] = (uint32_t)o1;
        icp[nin] = cp;
        ipos[nin] = i;
        nin++;
        utf8proc_int32_t d[8];
        int lb = 0;
        utf8proc_ssize_t k = utf8proc_decompose_char((utf8proc_int32_t)cp, d, 8, UTF8PROC_DECOMPOSE, &lb);
        if (k < 1 || k > 8 || nd + (size_t)k > NFC_MAX_REGION * 4) d[0] = (utf8proc_int32_t)cp, k = 1;
        for (utf8proc_ssize_t q = 0; q < k; q++) {
            cps[nd] = d[q];
            chg[nd] = q ? 1 : 0;
            nd++;
        }
        i += (size_t)l;
    }
    /* canonical ordering: stable sort of each run of non-starters by combining class */
    for (size_t k = 1; k < nd; k++) {
        int cc = utf8proc_get_property(cps[k])->combining_class;
        if (!cc) continue;
        size_t q = k;
        while (q > 0) {
            int pc = utf8proc_get_property(cps[q - 1])->combining_class;
            if (!pc || pc <= cc) break;
            int32_t tc = cps[q];
            cps[q] = cps[q - 1];
            cps[q - 1] = tc;
            int th = chg[q];
            chg[q] = chg[q - 1];
            chg[q - 1] = th;
            q--;
        }
    }
    /* canonical composition (unicode-normalization's recompose) */
    int32_t ocp[NFC_MAX_REGION * 4];
    int och[NFC_MAX_REGION * 4];
    size_t on = 0;
    long comp = -1;
    int last = -1;
    for (size_t k = 0; k < nd; k++) {
        int cc = utf8proc_get_property(cps[k])->combining_class;
        if (comp < 0) {
            ocp[on] = cps[k], och[on] = chg[k], on++;
            if (cc == 0) comp = (long)on - 1, last = -1;
            continue;
        }
        if (last < 0 || last < cc) {
            int32_t r = compose_pair(ocp[comp], cps[k]);
            if (r >= 0) {
                ocp[comp] = r;
                och[comp] += chg[k] - 1;
                continue;
            }
        }
        ocp[on] = cps[k], och[on] = chg[k], on++;
        if (cc == 0) comp = (long)on - 1, last = -1;
        else last = cc;
    }
    if (nb_reserve(w, *wpos + on * 4 + 4)) return -1;
    size_t oi = 0;
    for (size_t k = 0; k < on; k++) {
        size_t src;
        if (och[k] > 0) {
            src = oi ? oi - 1 : 0;
        } else {
            src = oi < nin ? oi : nin - 1;
            oi += (size_t)(1 - och[k]);
        }
        int l = enc_utf8((uint32_t)ocp[k], w->nb + *wpos);
        if (och[k] == 0 && (uint32_t)ocp[k] == icp[src]) {
            /* the character came through unchanged: keep its bytes' own offsets */
            for (int q = 0; q < l; q++) {
                int32_t o0, o1;
                seg_span(g, ipos[src] + (size_t)q, ipos[src] + (size_t)q + 1, &o0, &o1);
                w->na0[*wpos + (size_t)q] = (uint32_t)o0;
                w->na1[*wpos + (size_t)q] = (uint32_t)o1;
            }
        } else {
            for (int q = 0; q < l; q++) {
                w->na0[*wpos + (size_t)q] = src0[src];
                w->na1[*wpos + (size_t)q] = src1[src];
            }
        }
        *wpos += (size_t)l;
    }
    return 0;
}

/* NFC of a segment; *out is g itself when nothing changes. */
static int nfc_seg(enc_ctx *c, const seg *g, seg *out) {
    *out = *g;
    size_t n = g->n, i;
    for (i = 0; i < n; i++)
        if (g->s[i] >= 0xCC) break;
    if (i == n) return 0;
    /* find the first unsafe char */
    size_t first = SIZE_MAX;
    for (i = 0; i < n;) {
        int l;
        uint32_t cp = dec_utf8(g->s, i, &l);
        if (cls_of(cp) & K_NFCU) {
            first = i;
            break;
        }
        i += (size_t)l;
    }
    if (first == SIZE_MAX) return 0;
    work *w = c->w;
    size_t wpos = 0, copied = 0, last_starter = 0;
    int have_starter = 0;
    for (i = 0; i < n;) {
        int l;
        uint32_t cp = dec_utf8(g->s, i, &l);
        uint8_t k = cls_of(cp);
        if (!(k & K_NFCU)) {
            last_starter = i;
            have_starter = 1;
            i += (size_t)l;
            continue;
        }
        size_t rs = have_starter && last_starter >= copied ? last_starter : (i > copied ? i : copied);
        if (rs < copied) rs = copied;
        /* extend over unsafe chars, bounded */
        size_t re = i, count = 0;
        for (size_t q = rs; q < i;) {
            int l2;
            dec_utf8(g->s, q, &l2);
            q += (size_t)l2;
            count++;
        }
        while (re < n && count < NFC_MAX_REGION - 1) {
            int l2;
            uint32_t c2 = dec_utf8(g->s, re, &l2);
            if (re > i && !(cls_of(c2) & K_NFCU)) break;
            re += (size_t)l2;
            count++;
        }
        /* copy [copied, rs) unchanged */
        if (nb_reserve(w, wpos + (rs - copied) + 16)) return nomem(c);
        for (size_t q = copied; q < rs; q++) {
            int32_t o0, o1;
            w->nb[wpos] = g->s[q];
            /* per byte of an unchanged char: its own byte, as the identity map would give */
            seg_span(g, q, q + 1, &o0, &o1);
            w->na0[wpos] = (uint32_t)o0;
            w->na1[wpos] = (uint32_t)o1;
            wpos++;
        }
        if (nfc_region(c, g, rs, re, &wpos)) return nomem(c);
        copied = re;
        i = re;
        have_starter = 0;
    }
    if (nb_reserve(w, wpos + (n - copied) + 16)) return nomem(c);
    for (size_t q = copied; q < n; q++) {
        int32_t o0, o1;
        w->nb[wpos] = g->s[q];
        seg_span(g, q, q + 1, &o0, &o1);
        w->na0[wpos] = (uint32_t)o0;
        w->na1[wpos] = (uint32_t)o1;
        wpos++;
    }
    out->s = w->nb;
    out->n = wpos;
    out->a0 = w->na0;
    out->a1 = w->na1;
    out->base = 0;
    return 0;
}

/* ---------------------------------------------------------------- added tokens */

static int is_word_at_end(const uint8_t *s, size_t i) { /* \w$ on s[0, i) */
    if (i == 0) return 0;
    size_t q = i - 1;
    while (q > 0 && (s[q] & 0xC0) == 0x80) q--;
    int l;
    uint32_t cp = dec_utf8(s, q, &l);
    return (cls_of(cp) & K_WORD) || cp == '_';
}

static int is_word_at_start(const uint8_t *s, size_t n, size_t i) {
    if (i >= n) return 0;
    int l;
    uint32_t cp = dec_utf8(s, i, &l);
    return (cls_of(cp) & K_WORD) || cp == '_';
}

typedef int (*span_fn)(enc_ctx *c, const seg *g);

/* Split g by the added tokens of `tr`; emit the tokens, hand the text between them to fn. */
static int split_added(enc_ctx *c, const seg *g, const added_trie *tr, span_fn fn) {
    const kd_tokenizer *t = c->t;
    const uint8_t *s = g->s;
    size_t n = g->n;
    if (!tr->nodes || n == 0) return fn(c, g);
    size_t start_offset = 0, p = 0;
    while (p < n) {
        if (!tr->first[s[p]]) {
            p++;
            continue;
        }
        int32_t term = -1;
        size_t ml = trie_longest(tr, s, n, p, &term);
        if (!ml) {
            p++;
            continue;
        }
        size_t start = p, stop = p + ml;
        p = stop;
        const added_token *at = &t->added[term];
        if (at->single_word) {
            int start_space = start == 0 || !is_word_at_end(s, start);
            int stop_space = stop == n || !is_word_at_start(s, n, stop);
            if (!start_space || !stop_space) continue;
        }
        if (at->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t q = ns - 1;
                while (q > 0 && (s[q] & 0xC0) == 0x80) q--;
                int l;
                if (!(cls_of(dec_utf8(s, q, &l)) & K_WS)) break;
                ns = q;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (at->rstrip) {
            while (stop < n) {
                int l;
                if (!(cls_of(dec_utf8(s, stop, &l)) & K_WS)) break;
                stop += (size_t)l;
            }
            p = stop;
        }
        if (start > start_offset) {
            seg sg = sub_seg(g, start_offset, start);
            if (fn(c, &sg)) return -1;
        }
        int32_t o0, o1;
        seg_span(g, start, stop, &o0, &o1);
        if (emit(c, at->id, o0, o1)) return -1;
        start_offset = stop;
    }
    if (start_offset < n) {
        seg sg = sub_seg(g, start_offset, n);
        if (fn(c, &sg)) return -1;
    }
    return 0;
}

static int stage_pretok(enc_ctx *c, const seg *g) { return pretok(c, g, 0); }

static int stage_normalize(enc_ctx *c, const seg *g) {
    if (!c->t->nfc) return pretok(c, g, 0);
    seg ng;
    if (nfc_seg(c, g, &ng)) return -1;
    return split_added(c, &ng, &c->t->trie_norm, stage_pretok);
}

/* ---------------------------------------------------------------- encode */

static work *get_work(kd_encoding *out, const kd_tokenizer *t) {
    work *w = out->work;
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w) return NULL;
        out->work = w;
    }
    if (w->generation != t->generation) {
        cache_clear(w);
        w->generation = t->generation;
    }
    return w;
}

static void trim_offsets(const kd_tokenizer *t, kd_encoding *o) {
    for (size_t i = 0; i < o->count; i++) {
        int32_t id = o->ids[i];
        if (id < 0 || id >= t->n_ids || t->tok_len[id] == UINT32_MAX) continue;
        const uint8_t *b = t->pool + t->tok_off[id];
        size_t n = t->tok_len[id], lead = 0, trail = 0;
        while (lead < n && b[lead] == ' ') lead++;
        while (trail < n && b[n - 1 - trail] == ' ') trail++;
        if (!lead && !trail) continue;
        int32_t *of = o->offsets[i];
        if (lead) {
            int is_first = i == 0 || of[0] == 0;
            if (is_first && t->post_trim_prefix && lead == 1) lead = 0;
            int32_t ns = of[0] + (int32_t)lead;
            of[0] = ns < of[1] ? ns : of[1];
        }
        if (trail && of[1] >= (int32_t)trail) {
            int32_t ne = of[1] - (int32_t)trail;
            of[1] = ne > of[0] ? ne : of[0];
        }
    }
}

/* ---------------------------------------------------------------- segment cache
 *
 * The text between two raw-text added tokens is handed to stage_normalize on its own: NFC, the
 * `normalized` added tokens, the pre-tokenizer and BPE see only that span's bytes, and every offset
 * they produce comes from seg_span over an identity mapping, i.e. base + a position inside the span.
 * So a span's ids are a function of its bytes, and its offsets are that function's offsets plus the
 * span's base. The cache stores exactly that (offsets relative to the span) for long spans. Where the
 * split happens (lstrip/rstrip/single_word, which look at the neighbours) is decided by the unchanged
 * split_added on the whole text, and the offset trimming of the post-processor, which looks at
 * absolute offsets, runs afterwards over the whole output, as without the cache. */

typedef struct tokcache_entry {
    uint64_t hash, tick;
    size_t len;      /* bytes of the span; 0 = unused slot */
    uint8_t *bytes;  /* the span itself, compared in full on a hash match */
    int32_t *ids;
    int32_t (*offsets)[2]; /* relative to the span's first byte */
    size_t count;
} tokcache_entry;

struct kd_tokcache {
    tokcache_entry *e;
    size_t max_entries, min_bytes;
    uint64_t tick, generation; /* the tokenizer the entries came from */
    kd_tokcache_stats st;
};

int kd_tokcache_open(kd_tokcache **out, size_t max_entries, size_t min_bytes, kd_error *err) {
    *out = NULL;
    if (max_entries == 0 || max_entries > 4096)
        return kd_error_set(err, KD_ERR_INVALID, "tokenizer cache: max_entries %zu is out of range (1..4096)", max_entries);
    kd_tokcache *k = calloc(1, sizeof *k);
    if (k) k->e = calloc(max_entries, sizeof *k->e);
    if (!k || !k->e) {
        free(k);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    }
    k->max_entries = max_entries;
    k->min_bytes = min_bytes ? min_bytes : 1;
    *out = k;
    return KD_OK;
}

static void tokcache_drop(tokcache_entry *e) {
    free(e->bytes);
    free(e->ids);
    free(e->offsets);
    memset(e, 0, sizeof *e);
}

void kd_tokcache_close(kd_tokcache *k) {
    if (!k) return;
    for (size_t i = 0; i < k->max_entries; i++) tokcache_drop(&k->e[i]);
    free(k->e);
    free(k);
}

void kd_tokcache_get_stats(const kd_tokcache *k, kd_tokcache_stats *out) {
    if (k) *out = k->st;
    else memset(out, 0, sizeof *out);
}

static int stage_cached(enc_ctx *c, const seg *g) {
    kd_tokcache *k = c->cache;
    /* a0 != NULL: the text was rewritten (invalid UTF-8), offsets are not base + position */
    if (g->a0 || g->n < k->min_bytes) return stage_normalize(c, g);
    uint64_t h = hash_bytes(g->s, g->n);
    k->st.lookups++;
    tokcache_entry *victim = &k->e[0];
    for (size_t i = 0; i < k->max_entries; i++) {
        tokcache_entry *e = &k->e[i];
        if (e->len == g->n && e->hash == h && memcmp(e->bytes, g->s, g->n) == 0) {
            kd_encoding *o = c->out;
            if (out_reserve(o, e->count)) return nomem(c);
            memcpy(o->ids + o->count, e->ids, e->count * sizeof(int32_t));
            int32_t b = (int32_t)g->base;
            for (size_t q = 0; q < e->count; q++) {
                o->offsets[o->count + q][0] = e->offsets[q][0] + b;
                o->offsets[o->count + q][1] = e->offsets[q][1] + b;
            }
            o->count += e->count;
            e->tick = ++k->tick;
            k->st.hits++;
            k->st.hit_bytes += g->n;
            return 0;
        }
        if (victim->len && (!e->len || e->tick < victim->tick)) victim = e; /* an empty slot, else the oldest */
    }
    size_t before = c->out->count;
    if (stage_normalize(c, g)) return -1;
    k->st.miss_bytes += g->n;
    size_t n = c->out->count - before;
    if (victim->len) k->st.evictions++;
    tokcache_drop(victim);
    victim->bytes = malloc(g->n);
    victim->ids = malloc((n ? n : 1) * sizeof(int32_t));
    victim->offsets = malloc((n ? n : 1) * sizeof(*victim->offsets));
    if (!victim->bytes || !victim->ids || !victim->offsets) {
        tokcache_drop(victim); /* not cached; the encoding itself is complete */
        return 0;
    }
    memcpy(victim->bytes, g->s, g->n);
    memcpy(victim->ids, c->out->ids + before, n * sizeof(int32_t));
    int32_t b = (int32_t)g->base;
    for (size_t q = 0; q < n; q++) {
        victim->offsets[q][0] = c->out->offsets[before + q][0] - b;
        victim->offsets[q][1] = c->out->offsets[before + q][1] - b;
    }
    victim->count = n;
    victim->hash = h;
    victim->len = g->n;
    victim->tick = ++k->tick;
    return 0;
}

static int encode(const kd_tokenizer *t, kd_tokcache *cache, const char *text, size_t len, int add_special_tokens,
                  kd_encoding *out, kd_error *err);

int kd_tokenizer_encode(const kd_tokenizer *t, const char *text, size_t len, int add_special_tokens, kd_encoding *out,
                        kd_error *err) {
    return encode(t, NULL, text, len, add_special_tokens, out, err);
}

int kd_tokenizer_encode_cached(const kd_tokenizer *t, kd_tokcache *cache, const char *text, size_t len,
                               int add_special_tokens, kd_encoding *out, kd_error *err) {
    if (cache) {
        if (cache->generation != t->generation) { /* another tokenizer: its entries mean nothing here */
            for (size_t i = 0; i < cache->max_entries; i++) tokcache_drop(&cache->e[i]);
            cache->generation = t->generation;
        }
        cache->st.calls++;
        cache->st.bytes += len;
    }
    return encode(t, cache, text, len, add_special_tokens, out, err);
}

static int encode(const kd_tokenizer *t, kd_tokcache *cache, const char *text, size_t len, int add_special_tokens,
                  kd_encoding *out, kd_error *err) {
    out->count = 0;
    if (len > 0x7FFFFFF0u) return kd_error_set(err, KD_ERR_INVALID, "text of %zu bytes is too long to encode (max 2 GiB)", len);
    work *w = get_work(out, t);
    if (!w) return kd_error_set(err, KD_ERR_NOMEM, "out of memory while encoding");
    enc_ctx c = {t, w, out, err, cache};
    const uint8_t *s = (const uint8_t *)text;
    if (add_special_tokens && t->ntmpl_pre) {
        for (size_t k = 0; k < t->ntmpl_pre; k++)
            if (emit(&c, t->tmpl_pre[k], 0, 0)) return err ? err->code : KD_ERR_NOMEM;
    }
    size_t pre = out->count;
    /* lossy UTF-8: only copy when something is invalid */
    size_t i = 0;
    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t bad;
        size_t l = utf8_seq(s, len, i, &bad);
        if (!l) break;
        i += l;
    }
    seg g = {s, len, NULL, NULL, 0};
    if (i < len) {
        size_t cap = len * 3 + 4;
        if (cap > w->lcap) {
            uint8_t *b = realloc(w->lb, cap);
            if (!b) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
            w->lb = b;
            uint32_t *a = realloc(w->la0, cap * sizeof(uint32_t));
            if (!a) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
            w->la0 = a;
            a = realloc(w->la1, cap * sizeof(uint32_t));
            if (!a) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
            w->la1 = a;
            w->lcap = cap;
        }
        size_t wp = 0;
        for (size_t q = 0; q < len;) {
            size_t bad = 0;
            size_t l = utf8_seq(s, len, q, &bad);
            if (l) {
                for (size_t k = 0; k < l; k++) {
                    w->lb[wp] = s[q + k];
                    w->la0[wp] = (uint32_t)(q + k);
                    w->la1[wp] = (uint32_t)(q + k + 1);
                    wp++;
                }
                q += l;
            } else {
                static const uint8_t fffd[3] = {0xEF, 0xBF, 0xBD};
                for (int k = 0; k < 3; k++) {
                    w->lb[wp] = fffd[k];
                    w->la0[wp] = (uint32_t)q;
                    w->la1[wp] = (uint32_t)(q + bad);
                    wp++;
                }
                q += bad;
            }
        }
        g = (seg){w->lb, wp, w->la0, w->la1, 0};
    }
    if (split_added(&c, &g, &t->trie_raw, cache ? stage_cached : stage_normalize)) return err ? err->code : KD_ERR_NOMEM;
    if (t->post_trim_offsets && out->count > pre) {
        kd_encoding view = {out->ids + pre, out->offsets + pre, out->count - pre, 0, NULL};
        trim_offsets(t, &view);
    }
    if (add_special_tokens && t->ntmpl_post) {
        for (size_t k = 0; k < t->ntmpl_post; k++)
            if (emit(&c, t->tmpl_post[k], 0, 0)) return err ? err->code : KD_ERR_NOMEM;
    }
    return KD_OK;
}

/* ---------------------------------------------------------------- decode and lookups */

int kd_tokenizer_decode(const kd_tokenizer *t, const int32_t *ids, size_t n, int skip_special_tokens, char **text,
                        size_t *len, kd_error *err) {
    *text = NULL;
    if (len) *len = 0;
    size_t total = 0;
    for (size_t k = 0; k < n; k++) {
        int32_t id = ids[k];
        if (id < 0 || id >= t->n_ids || t->tok_len[id] == UINT32_MAX)
            return kd_error_set(err, KD_ERR_INVALID, "decode: token id %d at position %zu is not in the vocabulary of %s (%d ids)",
                                id, k, t->path, t->n_ids);
        if (skip_special_tokens && t->special[id]) continue;
        total += t->tok_len[id];
    }
    uint8_t *raw = malloc(total + 1);
    if (!raw) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    size_t w = 0;
    for (size_t k = 0; k < n; k++) {
        int32_t id = ids[k];
        if (skip_special_tokens && t->special[id]) continue;
        memcpy(raw + w, t->pool + t->tok_off[id], t->tok_len[id]);
        w += t->tok_len[id];
    }
    /* lossy UTF-8, as HF's String::from_utf8_lossy */
    size_t i = 0;
    while (i < w) {
        size_t bad;
        size_t l = utf8_seq(raw, w, i, &bad);
        if (!l) break;
        i += l;
    }
    if (i == w) {
        raw[w] = 0;
        *text = (char *)raw;
        if (len) *len = w;
        return KD_OK;
    }
    uint8_t *o = malloc(w * 3 + 1);
    if (!o) {
        free(raw);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    }
    size_t op = 0;
    for (size_t q = 0; q < w;) {
        size_t bad = 0;
        size_t l = utf8_seq(raw, w, q, &bad);
        if (l) {
            memcpy(o + op, raw + q, l);
            op += l;
            q += l;
        } else {
            o[op++] = 0xEF, o[op++] = 0xBF, o[op++] = 0xBD;
            q += bad;
        }
    }
    o[op] = 0;
    free(raw);
    *text = (char *)o;
    if (len) *len = op;
    return KD_OK;
}

int32_t kd_tokenizer_vocab_size(const kd_tokenizer *t) { return t->n_ids; }

int kd_tokenizer_token_bytes(const kd_tokenizer *t, int32_t id, const char **bytes, size_t *len) {
    if (id < 0 || id >= t->n_ids || t->tok_len[id] == UINT32_MAX) return -1;
    *bytes = (const char *)t->pool + t->tok_off[id];
    *len = t->tok_len[id];
    return 0;
}

int32_t kd_tokenizer_token_to_id(const kd_tokenizer *t, const char *token) {
    size_t n = strlen(token);
    for (size_t k = 0; k < t->nadded; k++)
        if (t->added[k].len == n && !memcmp(t->added[k].content, token, n)) return t->added[k].id;
    uint8_t stackbuf[256];
    uint8_t *tmp = n <= sizeof stackbuf ? stackbuf : malloc(n);
    if (!tmp) return -1;
    long rl = bl_decode(token, n, tmp);
    int32_t id = rl >= 0 ? vocab_find(t, tmp, (size_t)rl) : -1;
    if (tmp != stackbuf) free(tmp);
    if (id >= 0 && t->tok_str[id] && strcmp(t->tok_str[id], token) == 0) return id;
    if (!t->tok_dup) return -1;
    for (int32_t k = 0; k < t->n_ids; k++) /* strings outside the byte-level alphabet */
        if (t->tok_dup[k] && t->tok_str[k] && strcmp(t->tok_str[k], token) == 0) return k;
    return -1;
}

int kd_tokenizer_is_special(const kd_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && t->special[id];
}

const char *kd_tokenizer_sha256(const kd_tokenizer *t) { return t->sha256; }
const char *kd_tokenizer_path(const kd_tokenizer *t) { return t->path; }
