/* Integration spans: where an answer uses values of tool results. Declared in
 * include/kdstep/extract.h; the rules are written out in docs/extraction.md.
 *
 * Three matchers run over the answer and their spans are merged:
 *   1. whole values: every text leaf (normalized: ASCII case folded, runs of white space as one
 *      space) found in the answer at word boundaries;
 *   2. numbers: every number in the answer ("1,000", "21.50", "-3") equal in value to a number
 *      leaf or a number written inside a text leaf, or equal to it rounded to the answer's decimals;
 *   3. phrases: runs of >= min_phrase_words consecutive words shared with a longer text leaf, with
 *      at least one word that is not a stop word, for answers that quote part of a long value. */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/extract.h"
#include "kdstep/hash.h"

void kd_spans_free(kd_spans *s) {
    if (!s) return;
    free(s->v);
    memset(s, 0, sizeof *s);
}

int kd_spans_push(kd_spans *s, size_t start, size_t end) {
    if (s->count == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        kd_text_span *nv = realloc(s->v, sizeof(kd_text_span) * ncap);
        if (!nv) return KD_ERR_NOMEM;
        s->v = nv;
        s->cap = ncap;
    }
    s->v[s->count].start = start;
    s->v[s->count].end = end;
    s->count++;
    return KD_OK;
}

static int span_cmp(const void *a, const void *b) {
    const kd_text_span *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

void kd_spans_merge(kd_spans *s) {
    if (s->count < 2) return;
    qsort(s->v, s->count, sizeof(kd_text_span), span_cmp);
    size_t k = 0;
    for (size_t i = 1; i < s->count; i++) {
        if (s->v[i].start <= s->v[k].end) {
            if (s->v[i].end > s->v[k].end) s->v[k].end = s->v[i].end;
        } else {
            s->v[++k] = s->v[i];
        }
    }
    s->count = k + 1;
}

static const char *const DEFAULT_IGNORE[] = {"true", "false", "null", "none", "yes", "no", "ok",  "n/a",
                                             "success", "error", "0", "1", "a", "an", "the"};

void kd_integration_opts_default(kd_integration_opts *o) {
    o->min_chars = 2;
    o->min_phrase_words = 3;
    o->ignore = DEFAULT_IGNORE;
    o->n_ignore = sizeof DEFAULT_IGNORE / sizeof DEFAULT_IGNORE[0];
}

/* Words that carry no value of their own: a single-word value or a phrase made only of these is
 * not evidence that the answer used the result. */
static const char *const STOPWORDS[] = {
    "a",    "an",   "the",  "and",  "or",   "of",   "to",   "in",   "on",   "at",   "for",   "with", "by",
    "from", "is",   "are",  "was",  "were", "be",   "been", "it",   "its",  "this", "that",  "these", "as",
    "i",    "you",  "your", "we",   "our",  "they", "their", "he",  "she",  "his",  "her",   "not",  "but",
    "if",   "so",   "can",  "will", "has",  "have", "had",  "do",   "does", "about", "into", "than", "there",
    "which", "who", "what", "when", "where", "how", "all",  "any",  "more", "most", "some",  "such", "also"};

static int is_stopword(const char *w, size_t n) {
    for (size_t i = 0; i < sizeof STOPWORDS / sizeof STOPWORDS[0]; i++)
        if (strlen(STOPWORDS[i]) == n && strncasecmp(STOPWORDS[i], w, n) == 0) return 1;
    return 0;
}

/* ASCII classes without the locale: these run on every byte of every answer */
static inline int is_word_byte(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}
static inline int is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline char to_lower(unsigned char c) { return (char)(c >= 'A' && c <= 'Z' ? c + 32 : c); }

/* ---- normalized text: lower-case ASCII, white-space runs as one space, with a map back ---- */

typedef struct norm {
    char *s;
    size_t n;
    size_t *orig; /* [n+1]: byte offset in the original of each normalized byte (orig[n] = end) */
} norm;

static int normalize(const char *t, size_t len, norm *o) {
    o->s = malloc(len + 1);
    o->orig = malloc(sizeof(size_t) * (len + 1));
    if (!o->s || !o->orig) return -1;
    size_t k = 0;
    size_t i = 0;
    while (i < len && is_space((unsigned char)t[i])) i++;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (is_space(c)) {
            size_t j = i;
            while (j < len && is_space((unsigned char)t[j])) j++;
            if (j == len) break;
            o->orig[k] = i;
            o->s[k++] = ' ';
            i = j - 1;
            continue;
        }
        o->orig[k] = i;
        o->s[k++] = to_lower(c);
    }
    o->orig[k] = i < len ? i : len;
    o->n = k;
    o->s[k] = 0;
    return 0;
}

static void norm_free(norm *o) {
    free(o->s);
    free(o->orig);
}

/* ---- values of the results ---- */

typedef struct values {
    char **text; /* normalized text leaves */
    size_t *text_len;
    size_t n_text, cap_text;
    double *num;
    size_t n_num, cap_num;
} values;

static int add_text(values *v, const char *s, size_t n) {
    if (v->n_text == v->cap_text) {
        size_t nc = v->cap_text ? v->cap_text * 2 : 32;
        char **nt = realloc(v->text, sizeof(char *) * nc);
        if (!nt) return -1;
        v->text = nt;
        size_t *nl = realloc(v->text_len, sizeof(size_t) * nc);
        if (!nl) return -1;
        v->text_len = nl;
        v->cap_text = nc;
    }
    norm nm;
    if (normalize(s, n, &nm)) {
        norm_free(&nm);
        return -1;
    }
    free(nm.orig);
    /* a value's closing punctuation ends its sentence, it is not part of what gets reused */
    while (nm.n > 0 && strchr(".,;:!? ", nm.s[nm.n - 1])) nm.s[--nm.n] = 0;
    v->text[v->n_text] = nm.s;
    v->text_len[v->n_text++] = nm.n;
    return 0;
}

static int add_num(values *v, double d) {
    if (v->n_num == v->cap_num) {
        size_t nc = v->cap_num ? v->cap_num * 2 : 32;
        double *nn = realloc(v->num, sizeof(double) * nc);
        if (!nn) return -1;
        v->num = nn;
        v->cap_num = nc;
    }
    v->num[v->n_num++] = d;
    return 0;
}

/* A number as people write it at `i`: -?digits with optional ,ddd groups and .digits. Returns its
 * length (0 when none) and the value. Refuses to start inside a word or another number. */
static size_t scan_number(const char *t, size_t len, size_t i, double *val, int *decimals) {
    if (i > 0 && (is_word_byte((unsigned char)t[i - 1]) || t[i - 1] == '.' || t[i - 1] == ',')) return 0;
    size_t j = i;
    int neg = 0;
    if (j < len && t[j] == '-') {
        neg = 1;
        j++;
    }
    if (j >= len || !is_digit((unsigned char)t[j])) return 0;
    char buf[64];
    size_t k = 0;
    size_t run = 0;
    while (j < len && is_digit((unsigned char)t[j])) {
        if (k < 60) buf[k++] = t[j];
        j++, run++;
    }
    /* thousands groups only after 1-3 leading digits, each exactly 3 digits */
    while (run <= 3 && j + 3 < len && t[j] == ',' && is_digit((unsigned char)t[j + 1]) && is_digit((unsigned char)t[j + 2]) &&
           is_digit((unsigned char)t[j + 3]) && (j + 4 >= len || !is_digit((unsigned char)t[j + 4]))) {
        for (int q = 1; q <= 3; q++)
            if (k < 60) buf[k++] = t[j + q];
        j += 4;
    }
    *decimals = 0;
    if (j + 1 < len && t[j] == '.' && is_digit((unsigned char)t[j + 1])) {
        if (k < 60) buf[k++] = '.';
        j++;
        while (j < len && is_digit((unsigned char)t[j])) {
            if (k < 60) buf[k++] = t[j];
            j++, (*decimals)++;
        }
    }
    buf[k] = 0;
    *val = strtod(buf, NULL);
    if (neg) *val = -*val;
    return j - i;
}

static int collect_numbers_in_text(values *v, const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        double d;
        int dec;
        size_t m = scan_number(s, n, i, &d, &dec);
        if (m) {
            if (add_num(v, d)) return -1;
            i += m;
        } else {
            i++;
        }
    }
    return 0;
}

static int collect(values *v, const json_t *j) {
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t n = json_string_length(j);
        return add_text(v, s, n) || collect_numbers_in_text(v, s, n);
    }
    if (json_is_number(j)) return add_num(v, json_number_value(j));
    if (json_is_array(j)) {
        size_t i;
        json_t *e;
        json_array_foreach(j, i, e) if (collect(v, e)) return -1;
    }
    if (json_is_object(j)) {
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)j, k, e) if (collect(v, e)) return -1;
    }
    return 0;
}

static void values_free(values *v) {
    for (size_t i = 0; i < v->n_text; i++) free(v->text[i]);
    free(v->text);
    free(v->text_len);
    free(v->num);
}

static int ignored(const kd_integration_opts *o, const char *s, size_t n) {
    for (size_t i = 0; i < o->n_ignore; i++)
        if (strlen(o->ignore[i]) == n && strncasecmp(o->ignore[i], s, n) == 0) return 1;
    return 0;
}

/* ---- words, for phrase runs ---- */

typedef struct word {
    size_t start, end; /* in the normalized text */
    uint64_t h;
    int value; /* index of the text value (values' words); -1 in the answer */
} word;

static size_t split_words(const char *s, size_t n, int value, word **out, size_t *cnt, size_t *cap) {
    size_t added = 0;
    for (size_t i = 0; i < n;) {
        if (!is_word_byte((unsigned char)s[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && (is_word_byte((unsigned char)s[j]) || (s[j] == '\'' && j + 1 < n && is_word_byte((unsigned char)s[j + 1])))) j++;
        if (*cnt == *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            word *nw = realloc(*out, sizeof(word) * nc);
            if (!nw) return (size_t)-1;
            *out = nw;
            *cap = nc;
        }
        (*out)[*cnt] = (word){i, j, kd_hash64(s + i, j - i), value};
        (*cnt)++;
        added++;
        i = j;
    }
    return added;
}

typedef struct widx {
    uint64_t h;
    size_t pos; /* index into the value-word array */
} widx;

static int widx_cmp_hash(const void *a, const void *b) {
    const widx *x = a, *y = b;
    return x->h < y->h ? -1 : x->h > y->h;
}

/* by hash, then by position, so "the first occurrences" of a word are the first in the text */
static int widx_cmp(const void *a, const void *b) {
    int c = widx_cmp_hash(a, b);
    if (c) return c;
    const widx *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int match_boundary(const norm *a, size_t s, size_t e) {
    if (s > 0 && is_word_byte((unsigned char)a->s[s]) && is_word_byte((unsigned char)a->s[s - 1])) return 0;
    if (e < a->n && is_word_byte((unsigned char)a->s[e - 1]) && is_word_byte((unsigned char)a->s[e])) return 0;
    return 1;
}

static int push_norm_span(kd_spans *out, const norm *a, size_t s, size_t e) {
    size_t os = a->orig[s];
    size_t oe = a->orig[e - 1] + 1;
    return kd_spans_push(out, os, oe);
}

int kd_identify_integration_spans(const char *answer, size_t len, const char *const *results, const size_t *result_lens,
                                  size_t n_results, const kd_integration_opts *opts, kd_spans *out, kd_error *err) {
    kd_integration_opts defaults;
    kd_integration_opts_default(&defaults);
    if (!opts) opts = &defaults;
    const kd_integration_opts *ig = opts->ignore ? opts : &defaults;
    values v = {0};
    norm a = {0};
    word *words = NULL;
    widx *index = NULL;
    size_t nw = 0, cw = 0;
    int rc = KD_ERR_NOMEM;
    for (size_t r = 0; r < n_results; r++) {
        json_error_t je;
        json_t *j = json_loadb(results[r], result_lens[r], JSON_DECODE_ANY, &je);
        int bad = j ? collect(&v, j) : (add_text(&v, results[r], result_lens[r]) || collect_numbers_in_text(&v, results[r], result_lens[r]));
        json_decref(j);
        if (bad) goto done;
    }
    if (normalize(answer, len, &a)) goto done;

    /* 1. whole text values */
    for (size_t i = 0; i < v.n_text; i++) {
        const char *s = v.text[i];
        size_t n = v.text_len[i];
        if (n < opts->min_chars || n == 0 || ignored(ig, s, n)) continue;
        int has_word = 0;
        for (size_t q = 0; q < n; q++) has_word |= is_word_byte((unsigned char)s[q]);
        if (!has_word) continue;
        if (!memchr(s, ' ', n) && is_stopword(s, n)) continue;
        const char *h = a.s;
        while ((h = memmem(h, a.n - (size_t)(h - a.s), s, n)) != NULL) {
            size_t st = (size_t)(h - a.s);
            if (match_boundary(&a, st, st + n) && push_norm_span(out, &a, st, st + n)) goto done;
            h++;
            if ((size_t)(h - a.s) >= a.n) break;
        }
    }

    /* 2. numbers */
    for (size_t k = 0; k < v.n_num; k++) {
        char xs[64];
        snprintf(xs, sizeof xs, "%.15g", v.num[k]);
        if (ignored(ig, xs, strlen(xs))) v.num[k] = NAN;
    }
    if (v.n_num) {
        for (size_t i = 0; i < a.n;) {
            double d;
            int dec;
            size_t m = scan_number(a.s, a.n, i, &d, &dec);
            if (!m) {
                i++;
                continue;
            }
            int hit = 0;
            for (size_t k = 0; k < v.n_num && !hit; k++) {
                double x = v.num[k];
                if (x != x) continue; /* NaN marks an ignored value */
                if (x == d) hit = 1;
                else if (dec >= 1) {
                    double sc = pow(10.0, dec);
                    if (fabs(round(x * sc) - d * sc) < 1e-6 && fabs(x - d) > 0) hit = 1;
                }
            }
            if (hit && push_norm_span(out, &a, i, i + m)) goto done;
            i += m;
        }
    }

    /* 3. phrases shared with longer values */
    if (opts->min_phrase_words > 0) {
        size_t first_answer_word;
        for (size_t i = 0; i < v.n_text; i++)
            if (split_words(v.text[i], v.text_len[i], (int)i, &words, &nw, &cw) == (size_t)-1) goto done;
        size_t nvw = nw;
        first_answer_word = nw;
        if (split_words(a.s, a.n, -1, &words, &nw, &cw) == (size_t)-1) goto done;
        if (nvw) {
            index = malloc(sizeof(widx) * nvw);
            if (!index) goto done;
            for (size_t i = 0; i < nvw; i++) index[i] = (widx){words[i].h, i};
            qsort(index, nvw, sizeof(widx), widx_cmp);
        }
        for (size_t i = first_answer_word; i < nw && nvw;) {
            widx key = {words[i].h, 0};
            widx *f = bsearch(&key, index, nvw, sizeof(widx), widx_cmp_hash);
            size_t best = 0;
            if (f) {
                while (f > index && f[-1].h == key.h) f--;
                /* a word repeated thousands of times in a value must not make this quadratic: look
                 * at its first occurrences only, and skip those that continue a run already seen */
                int looked = 0;
                for (; f < index + nvw && f->h == key.h && looked < 256; f++, looked++) {
                    size_t j = f->pos, k = 0;
                    if (i > first_answer_word && j > 0 && words[j - 1].value == words[j].value && words[j - 1].h == words[i - 1].h)
                        continue;
                    while (i + k < nw && j + k < nvw && words[j + k].value == words[j].value && words[i + k].h == words[j + k].h) k++;
                    if (k > best) best = k;
                }
            }
            if (best >= opts->min_phrase_words) {
                int content = 0;
                for (size_t k = 0; k < best && !content; k++)
                    content = !is_stopword(a.s + words[i + k].start, words[i + k].end - words[i + k].start);
                if (content && push_norm_span(out, &a, words[i].start, words[i + best - 1].end)) goto done;
                i += best;
            } else {
                i++;
            }
        }
    }
    kd_spans_merge(out);
    rc = KD_OK;
done:
    values_free(&v);
    norm_free(&a);
    free(words);
    free(index);
    if (rc) return kd_error_set(err, rc, "out of memory identifying integration spans");
    return KD_OK;
}
