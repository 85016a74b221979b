/* Tokenizer loading: tokenizer.json -> kd_tokenizer, every stage's settings (normalizer,
 * pre_tokenizer, model, post_processor, decoder), and the byte-level alphabet. See
 * tokenizer_internal.h for the pipeline and the other stages. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "tjson.h"
#include "tokenizer_internal.h"

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

long bl_decode(const char *s, size_t len, uint8_t *out) {
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

static atomic_uint_fast64_t g_generation = 1;

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

/* The vocabulary: token bytes into the pool, the byte-level ones into the hash (raw bytes -> id). */
static int load_vocab(load_ctx *c, kd_tokenizer *t, const tj_val *m, const tj_val *vocab, size_t N,
                      size_t *pool_cap, uint8_t *tmp) {
    t->vmask = pow2_at_least(vocab->len * 2 + 16) - 1;
    t->vhash = malloc((t->vmask + 1) * sizeof(int32_t));
    if (!t->vhash) return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
    memset(t->vhash, 0xff, (t->vmask + 1) * sizeof(int32_t));
    for (uint32_t k = 0; k < vocab->len; k++) {
        const tj_val *key = &vocab->u.items[2 * k];
        int32_t id = (int32_t)vocab->u.items[2 * k + 1].u.num;
        t->tok_str[id] = (char *)key->u.str; /* lives in the document, which we keep */
        long rl = key->len < 65536 ? bl_decode(key->u.str, key->len, tmp) : -1;
        int ok = rl >= 0 ? set_token(t, id, tmp, (size_t)rl, pool_cap)
                         : set_token(t, id, (const uint8_t *)key->u.str, key->len, pool_cap);
        if (ok) return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
        if (rl < 0) { /* not byte-level: reachable only as an exact string */
            if (!t->tok_dup && !(t->tok_dup = calloc(N + 1, 1))) return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
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
    return 0;
}

/* The merges, into the (a, b) -> (rank, id) hash. */
static int load_merges(load_ctx *c, kd_tokenizer *t, const tj_val *merges, uint8_t *tmp) {
    int32_t merge_base = 0;
    t->mmask = pow2_at_least(merges->len + merges->len / 2 + 16) - 1;
    t->merges = calloc(t->mmask + 1, sizeof(merge_slot));
    if (!t->merges) return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
    for (uint32_t k = 0; k < merges->len; k++) {
        const tj_val *mv = &merges->u.items[k];
        const char *a, *b;
        size_t al, bl;
        if (mv->type == TJ_STR) {
            const char *sp = memchr(mv->u.str, ' ', mv->len);
            if (!sp || memchr(sp + 1, ' ', mv->len - (size_t)(sp + 1 - mv->u.str)))
                return invalid(c, "merge is not \"a b\" (exactly one space)", mv);
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
            return invalid(c, msg, mv);
        }
        uint64_t key = (((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib) + 1;
        size_t i = mix64(key) & t->mmask;
        while (t->merges[i].key && t->merges[i].key != key) i = (i + 1) & t->mmask;
        t->merges[i] = (merge_slot){key, k, in}; /* a repeated merge keeps the last rank, as HF */
    }
    return 0;
}

/* The added tokens: their ids (HF's rule, see load_model), flags, bytes, and the tries that find
 * them in raw or normalized text. */
static int load_added(load_ctx *c, kd_tokenizer *t, const tj_val *added, const tj_val *vocab, size_t N,
                      int64_t maxid, size_t *pool_cap, uint8_t *tmp) {
    int32_t max_used = (int32_t)(maxid + 1);
    if (added && added->type == TJ_ARR) {
        t->added = calloc(added->len + 1, sizeof(added_token));
        if (!t->added) return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
        for (uint32_t k = 0; k < added->len; k++) {
            const tj_val *a = &added->u.items[k];
            const tj_val *cv = tj_get(a, "content");
            if (!cv || cv->type != TJ_STR) return invalid(c, "added token without \"content\"", a);
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
            if (at->id >= (int32_t)N) return invalid(c, "added token ids overflow the vocabulary", a);
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
            int ok = rl >= 0 ? set_token(t, at->id, tmp, (size_t)rl, pool_cap)
                             : set_token(t, at->id, (const uint8_t *)cv->u.str, cv->len, pool_cap);
            if (ok) return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
            if (at->len == 0) continue;
            if (trie_add(at->normalized && t->nfc ? &t->trie_norm : &t->trie_raw, (const uint8_t *)at->content, at->len,
                         (int32_t)(t->nadded - 1)))
                return kd_error_set(c->err, KD_ERR_NOMEM, "out of memory");
        }
    }
    t->n_ids = max_used;
    return 0;
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
    int rc = load_vocab(c, t, m, vocab, N, &pool_cap, tmp);
    if (!rc) rc = load_merges(c, t, merges, tmp);
    if (!rc) rc = load_added(c, t, added, vocab, N, maxid, &pool_cap, tmp);
    free(tmp);
    return rc;
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
    int have_classes = classes_init();
    pthread_once(&g_bl_once, build_bytelevel);
    if (!have_classes) {
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
