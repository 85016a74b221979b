/* Tokenizer model: BPE of one pre-token, with the per-caller cache of words already merged (HF's
 * models/bpe). See tokenizer_internal.h for the pipeline and the other stages. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

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

/* Room for `extra` more ids and offsets in an encoding (the model emits into it; encode too). */
int out_reserve(kd_encoding *o, size_t extra) {
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

void cache_clear(work *w) {
    if (w->slots) memset(w->slots, 0, CACHE_SLOTS * sizeof(cache_slot));
    w->centries = 0;
    w->cbn = 0;
    w->crn = 0;
}

int bpe_emit(enc_ctx *c, const seg *g, size_t i, size_t j) {
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
