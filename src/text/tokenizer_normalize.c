/* Tokenizer normalization: the Unicode class table, lossy UTF-8 and NFC with alignments (HF's
 * normalizers). See tokenizer_internal.h for the pipeline and the other stages. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "kdstep/utf8.h"
#include "tokenizer_internal.h"

/* ---------------------------------------------------------------- Unicode classes */

uint8_t *g_cls; /* one byte per code point, 0..0x10FFFF */
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

int classes_init(void) {
    pthread_once(&g_cls_once, build_classes);
    return g_cls != NULL;
}

size_t utf8_seq(const uint8_t *s, size_t n, size_t i, size_t *bad) {
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
        int l = kd_utf8_encode((uint32_t)ocp[k], (char *)(w->nb + *wpos));
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

int stage_normalize(enc_ctx *c, const seg *g) {
    if (!c->t->nfc) return stage_pretok(c, g);
    seg ng;
    if (nfc_seg(c, g, &ng)) return -1;
    return split_added(c, &ng, &c->t->trie_norm, stage_pretok);
}
