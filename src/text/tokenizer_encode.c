/* Tokenizer encode and decode: the per-caller work space, the segment cache, the whole pipeline with
 * the post-processor (HF's processors), and decode with lookups (HF's decoders). See
 * tokenizer_internal.h for the pipeline and the other stages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* ---------------------------------------------------------------- per-caller work space */

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

/* A stretch of text in the pipeline: bytes plus where each byte came from in the input. */
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
