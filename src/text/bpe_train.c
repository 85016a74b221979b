/* Byte-level BPE trainer (see include/kdstep/bpe_train.h for the algorithm and the id layout). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "kdstep/bpe_train.h"

#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "kdstep/chat.h"
#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "kdstep/log.h"
#include "kdstep/progress.h"

const char KD_QWEN2_PRETOKENIZE_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
/* The same pattern for PCRE2: HF's \s is exactly [\t-\r\x{85}\p{Z}] (PCRE2's also has U+180E). */
static const char PCRE2_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\t-\\r\\x{85}\\p{Z}\\p{L}\\p{N}]+[\\r\\n]*|"
    "[\\t-\\r\\x{85}\\p{Z}]*[\\r\\n]+|[\\t-\\r\\x{85}\\p{Z}]+(?![^\\t-\\r\\x{85}\\p{Z}])|[\\t-\\r\\x{85}\\p{Z}]+";

const char *const KD_BPE_DEFAULT_ADDED[] = {"<|endoftext|>", "<|im_start|>",     "<|im_end|>",
                                            "<tool_call>",   "</tool_call>",     "<tool_response>",
                                            "</tool_response>", "<think>",       "</think>"};
const int KD_BPE_DEFAULT_ADDED_SPECIAL[] = {1, 1, 1, 0, 0, 0, 0, 0, 0};
const int KD_BPE_N_DEFAULT_ADDED = 9;

/* ---- a byte-string interning table (words while counting, tokens while merging) ---- */

typedef struct strtab {
    char *arena;
    size_t arena_len, arena_cap;
    size_t *off;     /* [n] */
    uint32_t *len;   /* [n] */
    uint64_t *hash;  /* [n] */
    int64_t *count;  /* [n] */
    size_t n, cap;
    int32_t *slots;  /* open addressing: index + 1, 0 = empty */
    size_t nslots;
} strtab;

static int strtab_grow_slots(strtab *t) {
    size_t ns = t->nslots ? t->nslots * 2 : 1024;
    int32_t *s = calloc(ns, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < t->n; i++) {
        size_t h = (size_t)t->hash[i] & (ns - 1);
        while (s[h]) h = (h + 1) & (ns - 1);
        s[h] = (int32_t)i + 1;
    }
    free(t->slots);
    t->slots = s;
    t->nslots = ns;
    return 0;
}

/* Index of the string, adding it (count 0) if new; -1 on allocation failure. */
static int64_t strtab_intern(strtab *t, const char *p, size_t len) {
    if ((t->n + 1) * 2 > t->nslots && strtab_grow_slots(t)) return -1;
    uint64_t hv = kd_hash64(p, len);
    size_t h = (size_t)hv & (t->nslots - 1);
    for (; t->slots[h]; h = (h + 1) & (t->nslots - 1)) {
        size_t i = (size_t)t->slots[h] - 1;
        if (t->hash[i] == hv && t->len[i] == len && !memcmp(t->arena + t->off[i], p, len)) return (int64_t)i;
    }
    if (t->n == t->cap) {
        size_t c = t->cap ? t->cap * 2 : 1024;
        size_t *o = realloc(t->off, c * sizeof *o);
        if (o) t->off = o;
        uint32_t *l = realloc(t->len, c * sizeof *l);
        if (l) t->len = l;
        uint64_t *hh = realloc(t->hash, c * sizeof *hh);
        if (hh) t->hash = hh;
        int64_t *cc = realloc(t->count, c * sizeof *cc);
        if (cc) t->count = cc;
        if (!o || !l || !hh || !cc) return -1;
        t->cap = c;
    }
    if (t->arena_len + len > t->arena_cap) {
        size_t c = t->arena_cap ? t->arena_cap : 1 << 16;
        while (c < t->arena_len + len) c *= 2;
        char *a = realloc(t->arena, c);
        if (!a) return -1;
        t->arena = a;
        t->arena_cap = c;
    }
    memcpy(t->arena + t->arena_len, p, len);
    size_t i = t->n++;
    t->off[i] = t->arena_len;
    t->len[i] = (uint32_t)len;
    t->hash[i] = hv;
    t->count[i] = 0;
    t->arena_len += len;
    t->slots[h] = (int32_t)i + 1;
    return (int64_t)i;
}

static void strtab_free(strtab *t) {
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->hash);
    free(t->count);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* ---- pairs: key (left << 32 | right) -> count and the words that (may) hold it ---- */

typedef struct pair_rec {
    uint64_t key;
    int64_t count;
    int32_t *words; /* word indices, appended once per word (may go stale after merges) */
    int32_t nwords, capwords;
    int32_t pushed_step;
} pair_rec;

typedef struct pair_tab {
    pair_rec *recs;
    size_t n, cap;
    int32_t *slots; /* rec index + 1 */
    size_t nslots;
} pair_tab;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static int64_t pair_get(pair_tab *t, uint64_t key, int create) {
    if (create && (t->n + 1) * 2 > t->nslots) {
        size_t ns = t->nslots ? t->nslots * 2 : 1 << 16;
        int32_t *s = calloc(ns, sizeof *s);
        if (!s) return -2;
        for (size_t i = 0; i < t->n; i++) {
            size_t h = (size_t)mix64(t->recs[i].key) & (ns - 1);
            while (s[h]) h = (h + 1) & (ns - 1);
            s[h] = (int32_t)i + 1;
        }
        free(t->slots);
        t->slots = s;
        t->nslots = ns;
    }
    if (!t->nslots) return -1;
    size_t h = (size_t)mix64(key) & (t->nslots - 1);
    for (; t->slots[h]; h = (h + 1) & (t->nslots - 1))
        if (t->recs[t->slots[h] - 1].key == key) return t->slots[h] - 1;
    if (!create) return -1;
    if (t->n == t->cap) {
        size_t c = t->cap ? t->cap * 2 : 1 << 15;
        pair_rec *r = realloc(t->recs, c * sizeof *r);
        if (!r) return -2;
        t->recs = r;
        t->cap = c;
    }
    size_t i = t->n++;
    t->recs[i] = (pair_rec){.key = key, .pushed_step = -1};
    t->slots[h] = (int32_t)i + 1;
    return (int64_t)i;
}

static int pair_add_word(pair_rec *r, int32_t w) {
    if (r->nwords && r->words[r->nwords - 1] == w) return 0;
    if (r->nwords == r->capwords) {
        int32_t c = r->capwords ? r->capwords * 2 : 4;
        int32_t *p = realloc(r->words, (size_t)c * sizeof *p);
        if (!p) return -1;
        r->words = p;
        r->capwords = c;
    }
    r->words[r->nwords++] = w;
    return 0;
}

/* ---- max-heap of (count, key): larger count first, then smaller key ---- */

typedef struct heap_ent {
    int64_t count;
    uint64_t key;
} heap_ent;

typedef struct heap {
    heap_ent *a;
    size_t n, cap;
} heap;

static int ent_before(heap_ent x, heap_ent y) { return x.count > y.count || (x.count == y.count && x.key < y.key); }

static int heap_push(heap *h, heap_ent e) {
    if (h->n == h->cap) {
        size_t c = h->cap ? h->cap * 2 : 1 << 15;
        heap_ent *a = realloc(h->a, c * sizeof *a);
        if (!a) return -1;
        h->a = a;
        h->cap = c;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ent_before(e, h->a[p])) break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = e;
    return 0;
}

static heap_ent heap_pop(heap *h) {
    heap_ent top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && ent_before(h->a[c + 1], h->a[c])) c++;
        if (!ent_before(h->a[c], last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n) h->a[i] = last;
    return top;
}

/* ---- the trainer ---- */

struct kd_bpe_trainer {
    kd_bpe_train_options opts;
    char **added;       /* added tokens: defaults then the caller's specials */
    int *added_special;
    int n_added;
    unsigned char first_byte[256]; /* bytes that can start an added token */
    pcre2_code *re;
    pcre2_match_data *md;
    strtab words;       /* distinct pre-tokenized pieces with their counts */
    strtab tokens;      /* id -> bytes (ids 0..255 are the bytes) */
    int32_t (*merges)[2];
    int n_merges;
    int trained;
    kd_bpe_train_stats stats;
};

int kd_bpe_trainer_new(kd_bpe_trainer **out, const kd_bpe_train_options *opts, kd_error *err) {
    *out = NULL;
    kd_bpe_trainer *t = kd_calloc(1, sizeof *t);
    if (!t) return kd_error_set(err, KD_ERR_NOMEM, "out of memory creating the BPE trainer");
    t->opts = *opts;
    if (t->opts.min_frequency <= 0) t->opts.min_frequency = 2;
    int n = KD_BPE_N_DEFAULT_ADDED + (opts->special_tokens ? opts->n_special_tokens : 0);
    t->added = kd_calloc((size_t)n, sizeof *t->added);
    t->added_special = kd_calloc((size_t)n, sizeof *t->added_special);
    if (!t->added || !t->added_special) {
        kd_bpe_trainer_free(t);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory creating the BPE trainer");
    }
    for (int i = 0; i < n; i++) {
        const char *s = i < KD_BPE_N_DEFAULT_ADDED ? KD_BPE_DEFAULT_ADDED[i]
                                                   : opts->special_tokens[i - KD_BPE_N_DEFAULT_ADDED];
        if (!s || !*s) {
            kd_bpe_trainer_free(t);
            return kd_error_set(err, KD_ERR_INVALID, "special token %d is empty", i - KD_BPE_N_DEFAULT_ADDED + 1);
        }
        int dup = 0;
        for (int j = 0; j < t->n_added; j++) dup |= !strcmp(t->added[j], s);
        if (dup) continue; /* repeating a default is harmless */
        t->added_special[t->n_added] = i < KD_BPE_N_DEFAULT_ADDED ? KD_BPE_DEFAULT_ADDED_SPECIAL[i] : 1;
        t->added[t->n_added++] = kd_strdup(s);
        t->first_byte[(unsigned char)s[0]] = 1;
    }
    if (opts->vocab_size < 256 + t->n_added) {
        int need = 256 + t->n_added;
        kd_bpe_trainer_free(t);
        return kd_error_set(err, KD_ERR_INVALID,
                            "vocab size %d is too small: the 256 bytes and %d added tokens need at least %d",
                            opts->vocab_size, need - 256, need);
    }
    int ec;
    PCRE2_SIZE eo;
    t->re = pcre2_compile((PCRE2_SPTR)PCRE2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    if (!t->re) {
        kd_bpe_trainer_free(t);
        return kd_error_set(err, KD_ERR_UNSUPPORTED, "PCRE2 cannot compile Qwen2's pre-tokenizer regex (error %d at %zu)",
                            ec, (size_t)eo);
    }
    pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* without JIT pcre2_match still works, slower */
    t->md = pcre2_match_data_create_from_pattern(t->re, NULL);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if (!t->md || strtab_intern(&t->tokens, &c, 1) != b) {
            kd_bpe_trainer_free(t);
            return kd_error_set(err, KD_ERR_NOMEM, "out of memory creating the BPE trainer");
        }
    }
    *out = t;
    return KD_OK;
}

void kd_bpe_trainer_free(kd_bpe_trainer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_added; i++) free(t->added[i]);
    free(t->added);
    free(t->added_special);
    if (t->md) pcre2_match_data_free(t->md);
    if (t->re) pcre2_code_free(t->re);
    strtab_free(&t->words);
    strtab_free(&t->tokens);
    free(t->merges);
    free(t);
}

static int count_piece(kd_bpe_trainer *t, const char *p, size_t n, kd_error *err) {
    if (!n) return KD_OK;
    if (n > 1 << 20) n = 1 << 20; /* a megabyte of one character class says nothing about merges */
    int64_t w = strtab_intern(&t->words, p, n);
    if (w < 0) return kd_error_set(err, KD_ERR_NOMEM, "out of memory counting words");
    t->words.count[w]++;
    t->stats.words++;
    return KD_OK;
}

/* NFC line by line (a line break is a starter that composes with nothing, so normalizing lines
 * separately is exact), with ASCII lines copied as they are: utf8proc is the slow part otherwise. */
static int nfc_lines(const char *s, size_t n, char **out, size_t *outlen, kd_error *err) {
    size_t cap = n + n / 8 + 16, len = 0;
    char *o = malloc(cap);
    if (!o) return kd_error_set(err, KD_ERR_NOMEM, "out of memory normalizing training text");
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - s) + 1 : n, ascii = 1;
        for (size_t k = i; k < e && ascii; k++) ascii = (unsigned char)s[k] < 0x80;
        utf8proc_uint8_t *m = NULL;
        const char *src = s + i;
        size_t mlen = e - i;
        if (!ascii) {
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(e - i), &m,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (r < 0) {
                free(o);
                return kd_error_set(err, KD_ERR_INVALID, "NFC normalization failed: %s", utf8proc_errmsg(r));
            }
            src = (const char *)m;
            mlen = (size_t)r;
        }
        if (len + mlen > cap) {
            while (len + mlen > cap) cap *= 2;
            char *p = realloc(o, cap);
            if (!p) {
                free(m);
                free(o);
                return kd_error_set(err, KD_ERR_NOMEM, "out of memory normalizing training text");
            }
            o = p;
        }
        memcpy(o + len, src, mlen);
        len += mlen;
        free(m);
        i = e;
    }
    *out = o;
    *outlen = len;
    return KD_OK;
}

/* NFC, then Qwen2's regex split (matches and the gaps between them are pieces: "Isolated"). */
static int count_segment(kd_bpe_trainer *t, const char *s, size_t n, kd_error *err) {
    if (!n) return KD_OK;
    char *nfcs = NULL;
    size_t len = 0, off = 0;
    if (nfc_lines(s, n, &nfcs, &len, err)) return err ? err->code : KD_ERR_NOMEM;
    const unsigned char *nfc = (const unsigned char *)nfcs;
    int rc = KD_OK;
    while (off < len && rc == KD_OK) {
        int r = pcre2_match(t->re, nfc, len, off, PCRE2_NO_UTF_CHECK, t->md, NULL);
        if (r < 0) {
            rc = count_piece(t, (const char *)nfc + off, len - off, err);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        if (ov[0] > off) rc = count_piece(t, (const char *)nfc + off, ov[0] - off, err);
        if (rc) break;
        if (ov[1] == ov[0]) { /* cannot happen with this pattern; step one character to be safe */
            size_t e = ov[0] + 1;
            while (e < len && (nfc[e] & 0xC0) == 0x80) e++;
            rc = count_piece(t, (const char *)nfc + ov[0], e - ov[0], err);
            off = e;
        } else {
            rc = count_piece(t, (const char *)nfc + ov[0], ov[1] - ov[0], err);
            off = ov[1];
        }
    }
    free(nfcs);
    return rc;
}

static int valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) return 0;
        i += (size_t)k;
    }
    return 1;
}

/* Copy with each invalid UTF-8 sequence replaced by U+FFFD. */
static char *lossy_utf8(const char *s, size_t n, size_t *outlen) {
    char *o = malloc(n * 3 + 1);
    if (!o) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        if ((unsigned char)s[i] < 0x80) {
            o[j++] = s[i++];
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k > 0) {
            memcpy(o + j, s + i, (size_t)k);
            j += (size_t)k;
            i += (size_t)k;
        } else {
            memcpy(o + j, "\xEF\xBF\xBD", 3);
            j += 3;
            i++;
        }
    }
    *outlen = j;
    return o;
}

int kd_bpe_trainer_add_text(kd_bpe_trainer *t, const char *text, size_t len, kd_error *err) {
    if (t->trained) return kd_error_set(err, KD_ERR_INVALID, "BPE trainer: text added after training");
    double t0 = kd_now_s();
    size_t n = len;
    char *copy = NULL;
    const char *s = text;
    if (!valid_utf8(text, len)) { /* only then pay for a copy */
        copy = lossy_utf8(text, len, &n);
        if (!copy) return kd_error_set(err, KD_ERR_NOMEM, "out of memory reading training text");
        s = copy;
    }
    size_t seg = 0;
    int rc = KD_OK;
    for (size_t i = 0; i < n && rc == KD_OK;) {
        int best = -1;
        size_t blen = 0;
        if (t->first_byte[(unsigned char)s[i]])
            for (int a = 0; a < t->n_added; a++) {
                size_t l = strlen(t->added[a]);
                if (l > blen && l <= n - i && !memcmp(s + i, t->added[a], l)) {
                    best = a;
                    blen = l;
                }
            }
        if (best < 0) {
            i++;
            continue;
        }
        rc = count_segment(t, s + seg, i - seg, err);
        i += blen;
        seg = i;
    }
    if (rc == KD_OK) rc = count_segment(t, s + seg, n - seg, err);
    free(copy);
    t->stats.bytes += len;
    t->stats.unique_words = t->words.n;
    t->stats.pretokenize_s += kd_now_s() - t0;
    return rc;
}

int kd_bpe_trainer_add_file(kd_bpe_trainer *t, const char *path, kd_error *err) {
    char *data;
    size_t len;
    if (kd_read_file(path, &data, &len, err)) return err ? err->code : KD_ERR_IO;
    int rc = kd_bpe_trainer_add_text(t, data, len, err);
    free(data);
    if (rc) kd_error_prefix(err, "%s", path);
    return rc;
}

#define PAIR(a, b) (((uint64_t)(uint32_t)(a) << 32) | (uint32_t)(b))

typedef struct train_state {
    pair_tab pairs;
    heap h;
    int32_t *syms;      /* all words' symbols */
    size_t *sym_off;    /* [nwords] */
    uint32_t *sym_len;  /* [nwords] */
    int32_t *stamp;     /* [nwords]: last merge step that visited the word */
    int64_t *touched;   /* pair record indices whose count rose this step */
    size_t ntouched, captouched;
} train_state;

static int add_pairs(train_state *st, const int32_t *s, uint32_t n, int64_t delta, int32_t w, int32_t z) {
    for (uint32_t i = 0; i + 1 < n; i++) {
        int64_t r = pair_get(&st->pairs, PAIR(s[i], s[i + 1]), 1);
        if (r < 0) return -1;
        pair_rec *p = &st->pairs.recs[r];
        p->count += delta;
        if (delta > 0 && (z < 0 || s[i] == z || s[i + 1] == z)) {
            if (pair_add_word(p, w)) return -1;
            if (z >= 0) {
                if (st->ntouched == st->captouched) {
                    size_t c = st->captouched ? st->captouched * 2 : 1024;
                    int64_t *tt = realloc(st->touched, c * sizeof *tt);
                    if (!tt) return -1;
                    st->touched = tt;
                    st->captouched = c;
                }
                st->touched[st->ntouched++] = r;
            }
        }
    }
    return 0;
}

static void train_state_free(train_state *st) {
    for (size_t i = 0; i < st->pairs.n; i++) free(st->pairs.recs[i].words);
    free(st->pairs.recs);
    free(st->pairs.slots);
    free(st->h.a);
    free(st->syms);
    free(st->sym_off);
    free(st->sym_len);
    free(st->stamp);
    free(st->touched);
}

int kd_bpe_trainer_train(kd_bpe_trainer *t, kd_error *err) {
    if (t->trained) return kd_error_set(err, KD_ERR_INVALID, "BPE trainer: already trained");
    double t0 = kd_now_s();
    const size_t nw = t->words.n;
    const int target = t->opts.vocab_size - t->n_added; /* model vocabulary: bytes + merged tokens */
    train_state st = {0};
    st.syms = kd_calloc(t->words.arena_len + 1, sizeof *st.syms);
    st.sym_off = kd_calloc(nw + 1, sizeof *st.sym_off);
    st.sym_len = kd_calloc(nw + 1, sizeof *st.sym_len);
    st.stamp = kd_calloc(nw + 1, sizeof *st.stamp);
    t->merges = kd_calloc((size_t)target + 1, sizeof *t->merges);
    int rc = KD_OK;
    if (!st.syms || !st.sym_off || !st.sym_len || !st.stamp || !t->merges) goto oom;
    for (size_t w = 0; w < nw; w++) {
        st.sym_off[w] = t->words.off[w];
        st.sym_len[w] = t->words.len[w];
        st.stamp[w] = -1;
        for (uint32_t i = 0; i < t->words.len[w]; i++)
            st.syms[t->words.off[w] + i] = (unsigned char)t->words.arena[t->words.off[w] + i];
        if (add_pairs(&st, st.syms + st.sym_off[w], st.sym_len[w], t->words.count[w], (int32_t)w, -1)) goto oom;
    }
    for (size_t i = 0; i < st.pairs.n; i++)
        if (heap_push(&st.h, (heap_ent){st.pairs.recs[i].count, st.pairs.recs[i].key})) goto oom;

    kd_progress prog;
    if (t->opts.progress) kd_progress_open(&prog, "bpe merges", target - (int)t->tokens.n, "tokens");
    int step = 0;
    while ((int)t->tokens.n < target && st.h.n) {
        heap_ent top = heap_pop(&st.h);
        int64_t ri = pair_get(&st.pairs, top.key, 0);
        int64_t actual = st.pairs.recs[ri].count;
        if (actual != top.count) {
            if (actual < top.count && actual >= t->opts.min_frequency &&
                heap_push(&st.h, (heap_ent){actual, top.key}))
                goto oom;
            continue;
        }
        if (actual < t->opts.min_frequency) break;
        int32_t a = (int32_t)(top.key >> 32), b = (int32_t)(top.key & 0xffffffffu);
        /* the merged token's bytes; an existing token with the same bytes keeps its id */
        size_t la = t->tokens.len[a], lb = t->tokens.len[b];
        char *buf = malloc(la + lb);
        if (!buf) goto oom;
        memcpy(buf, t->tokens.arena + t->tokens.off[a], la);
        memcpy(buf + la, t->tokens.arena + t->tokens.off[b], lb);
        int64_t z = strtab_intern(&t->tokens, buf, la + lb);
        free(buf);
        if (z < 0) goto oom;
        t->merges[t->n_merges][0] = a;
        t->merges[t->n_merges][1] = b;
        t->n_merges++;
        /* take the word list out: appends during the step go to pairs holding z, never (a, b) */
        pair_rec *pr = &st.pairs.recs[ri];
        int32_t *wl = pr->words, nwl = pr->nwords;
        pr->words = NULL;
        pr->nwords = pr->capwords = 0;
        st.ntouched = 0;
        for (int32_t k = 0; k < nwl; k++) {
            int32_t w = wl[k];
            if (st.stamp[w] == step) continue;
            st.stamp[w] = step;
            int32_t *s = st.syms + st.sym_off[w];
            uint32_t n = st.sym_len[w], i, j;
            for (i = 0; i + 1 < n; i++)
                if (s[i] == a && s[i + 1] == b) break;
            if (i + 1 >= n) continue; /* stale entry: an earlier merge took the pair */
            int64_t c = t->words.count[w];
            if (add_pairs(&st, s, n, -c, w, -1)) goto oom_wl;
            for (i = 0, j = 0; i < n; j++) {
                if (i + 1 < n && s[i] == a && s[i + 1] == b) {
                    s[j] = (int32_t)z;
                    i += 2;
                } else {
                    s[j] = s[i++];
                }
            }
            st.sym_len[w] = j;
            if (add_pairs(&st, s, j, c, w, (int32_t)z)) goto oom_wl;
        }
        free(wl);
        for (size_t k = 0; k < st.ntouched; k++) {
            pair_rec *p = &st.pairs.recs[st.touched[k]];
            if (p->pushed_step == step || p->count < t->opts.min_frequency) continue;
            p->pushed_step = step;
            if (heap_push(&st.h, (heap_ent){p->count, p->key})) goto oom;
        }
        step++;
        if (t->opts.progress) kd_progress_update(&prog, (int64_t)t->tokens.n - 256, NULL);
        continue;
    oom_wl:
        free(wl);
        goto oom;
    }
    if (t->opts.progress) kd_progress_close(&prog, NULL);
    if ((int)t->tokens.n < target)
        KD_WARN("bpe: no pair occurs %d times any more after %d merges; the vocabulary has %d ids, not %d "
                "(feed more text or lower --min-frequency)",
                t->opts.min_frequency, t->n_merges, (int)t->tokens.n + t->n_added, t->opts.vocab_size);
    t->trained = 1;
    t->stats.merges = t->n_merges;
    t->stats.vocab_size = (int)t->tokens.n + t->n_added;
    t->stats.merge_s = kd_now_s() - t0;
    train_state_free(&st);
    return rc;
oom:
    train_state_free(&st);
    return kd_error_set(err, KD_ERR_NOMEM, "out of memory training BPE on %zu distinct words", nw);
}

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upwards. */
static void byte_level_table(uint32_t cp[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

static char *byte_level(const uint32_t cp[256], const char *p, size_t n) {
    char *o = malloc(n * 2 + 1);
    if (!o) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) j += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp[(unsigned char)p[i]],
                                                                     (utf8proc_uint8_t *)o + j);
    o[j] = 0;
    return o;
}

static json_t *byte_level_json(void) {
    return json_pack("{ss sb sb sb}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0, "use_regex", 0);
}

char *kd_bpe_trainer_tokenizer_json(const kd_bpe_trainer *t) {
    if (!t->trained) return NULL;
    uint32_t cp[256];
    byte_level_table(cp);
    json_t *root = json_object();
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "truncation", json_null());
    json_object_set_new(root, "padding", json_null());
    json_t *added = json_array();
    int base = (int)t->tokens.n;
    for (int i = 0; i < t->n_added; i++)
        json_array_append_new(added, json_pack("{si ss sb sb sb sb sb}", "id", base + i, "content", t->added[i],
                                               "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                                               "special", t->added_special[i]));
    json_object_set_new(root, "added_tokens", added);
    json_object_set_new(root, "normalizer", json_pack("{ss}", "type", "NFC"));
    json_object_set_new(
        root, "pre_tokenizer",
        json_pack("{ss s[{ss s{ss} ss sb}o]}", "type", "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex",
                  KD_QWEN2_PRETOKENIZE_REGEX, "behavior", "Isolated", "invert", 0, byte_level_json()));
    json_object_set_new(root, "post_processor", byte_level_json());
    json_object_set_new(root, "decoder", byte_level_json());
    json_t *model = json_object();
    json_object_set_new(model, "type", json_string("BPE"));
    json_object_set_new(model, "dropout", json_null());
    json_object_set_new(model, "unk_token", json_null());
    json_object_set_new(model, "continuing_subword_prefix", json_string(""));
    json_object_set_new(model, "end_of_word_suffix", json_string(""));
    json_object_set_new(model, "fuse_unk", json_false());
    json_object_set_new(model, "byte_fallback", json_false());
    json_object_set_new(model, "ignore_merges", json_false());
    json_t *vocab = json_object(), *merges = json_array();
    char **names = calloc(t->tokens.n, sizeof *names);
    int ok = vocab && merges && names;
    for (size_t i = 0; ok && i < t->tokens.n; i++) {
        names[i] = byte_level(cp, t->tokens.arena + t->tokens.off[i], t->tokens.len[i]);
        ok = names[i] && !json_object_set_new(vocab, names[i], json_integer((json_int_t)i));
    }
    for (int m = 0; ok && m < t->n_merges; m++) {
        const char *l = names[t->merges[m][0]], *r = names[t->merges[m][1]];
        size_t ll = strlen(l), lr = strlen(r);
        char *s = malloc(ll + lr + 2);
        if (!s) {
            ok = 0;
            break;
        }
        memcpy(s, l, ll);
        s[ll] = ' ';
        memcpy(s + ll + 1, r, lr + 1);
        ok = !json_array_append_new(merges, json_string(s));
        free(s);
    }
    for (size_t i = 0; names && i < t->tokens.n; i++) free(names[i]);
    free(names);
    json_object_set_new(model, "vocab", vocab);
    json_object_set_new(model, "merges", merges);
    json_object_set_new(root, "model", model);
    char *s = ok ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    return s;
}

static char *tokenizer_config_json(const kd_bpe_trainer *t) {
    json_t *c = json_object();
    json_object_set_new(c, "add_bos_token", json_false());
    json_object_set_new(c, "add_prefix_space", json_false());
    json_t *dec = json_object(), *extra = json_array();
    for (int i = 0; i < t->n_added; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", (int)t->tokens.n + i);
        json_object_set_new(dec, id,
                            json_pack("{ss sb sb sb sb sb}", "content", t->added[i], "lstrip", 0, "normalized", 0,
                                      "rstrip", 0, "single_word", 0, "special", t->added_special[i]));
        if (t->added_special[i] && strcmp(t->added[i], "<|endoftext|>"))
            json_array_append_new(extra, json_string(t->added[i]));
    }
    json_object_set_new(c, "added_tokens_decoder", dec);
    json_object_set_new(c, "additional_special_tokens", extra);
    json_object_set_new(c, "bos_token", json_null());
    json_object_set_new(c, "chat_template", json_string(kd_chat_template_qwen3()));
    json_object_set_new(c, "clean_up_tokenization_spaces", json_false());
    json_object_set_new(c, "eos_token", json_string("<|im_end|>"));
    json_object_set_new(c, "errors", json_string("replace"));
    json_object_set_new(c, "model_max_length", json_integer(131072));
    json_object_set_new(c, "pad_token", json_string("<|endoftext|>"));
    json_object_set_new(c, "split_special_tokens", json_false());
    json_object_set_new(c, "tokenizer_class", json_string("Qwen2Tokenizer"));
    json_object_set_new(c, "unk_token", json_null());
    char *s = json_dumps(c, JSON_INDENT(2));
    json_decref(c);
    return s;
}

int kd_bpe_trainer_save(const kd_bpe_trainer *t, const char *dir, kd_error *err) {
    if (!t->trained) return kd_error_set(err, KD_ERR_INVALID, "BPE trainer: save before train");
    if (kd_mkdir_p(dir, err)) return err ? err->code : KD_ERR_IO;
    char path[4096];
    const char *names[2] = {"tokenizer.json", "tokenizer_config.json"};
    for (int k = 0; k < 2; k++) {
        char *s = k == 0 ? kd_bpe_trainer_tokenizer_json(t) : tokenizer_config_json(t);
        if (!s) return kd_error_set(err, KD_ERR_NOMEM, "out of memory writing %s", names[k]);
        if (kd_path_join(path, sizeof path, dir, names[k])) {
            free(s);
            return kd_error_set(err, KD_ERR_INVALID, "output path too long: %s", dir);
        }
        size_t n = strlen(s);
        s[n] = '\n'; /* json_dumps' NUL becomes the final newline */
        int rc = kd_write_file_atomic(path, s, n + 1, err);
        free(s);
        if (rc) return rc;
    }
    return KD_OK;
}

void kd_bpe_trainer_stats(const kd_bpe_trainer *t, kd_bpe_train_stats *out) { *out = t->stats; }
