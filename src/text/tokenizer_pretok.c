/* Tokenizer pre-tokenization: added tokens (the trie and the split around them) and the Split /
 * ByteLevel pre-tokenizer with its scanners for the known patterns (HF's pre_tokenizers and added
 * vocabulary). See tokenizer_internal.h for the pipeline and the other stages. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* ---------------------------------------------------------------- added-token trie */

int trie_add(added_trie *tr, const uint8_t *s, size_t n, int32_t term) {
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

size_t trie_longest(const added_trie *tr, const uint8_t *s, size_t n, size_t i, int32_t *term) {
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

int split_added(enc_ctx *c, const seg *g, const added_trie *tr, span_fn fn) {
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

int stage_pretok(enc_ctx *c, const seg *g) { return pretok(c, g, 0); }
