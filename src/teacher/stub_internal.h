/* The stub teacher's parts, shared by its files (not a public API):
 *   stub.c         open/close, the tools a request offers, choosing the tool
 *   stub_words.c   the words of a text (stop words dropped, stemmed), how words match
 *   stub_args.c    finding values in a prompt and filling a tool's arguments from them
 *   stub_tokens.c  tokens: the student tokenizer's, or one per byte
 *   stub_answer.c  writing the answer (calls, final answers, thinking) and kd_stub_complete
 *   stub_score.c   tokens and the top-k log-probabilities of an answer (one position's top-k)
 *   stub_judge.c   scoring a whole conversation (kd_stub_score), each turn held against the stub's own reply
 */
#ifndef KD_STUB_INTERNAL_H
#define KD_STUB_INTERNAL_H

#include <jansson.h>
#include <stdint.h>

#include "kdstep/teacher.h"

/* The words of a text, lower case, without stop words, stemmed, each once (stub_words.c). */
#define STUB_MAXW 256
typedef struct words {
    char w[STUB_MAXW][32];
    int n;
} words;
void stub_stem(char *w);
void stub_split_words(const char *text, words *out, int append);
/* Equal, or the same first 6 bytes. */
int stub_word_match(const char *a, const char *b);
int stub_has_word(const words *w, const char *x);

/* Values in a prompt (stub_args.c): a span of the prompt's text. */
typedef struct span {
    const char *p;
    size_t n;
} span;
/* The i-th "quoted" or 'quoted' or `quoted` string. */
int stub_nth_quoted(const char *text, int i, span *out);
/* The nth bare token (whitespace separated, trailing punctuation stripped) that satisfies pred. */
int stub_find_token(const char *text, int (*pred)(const char *, size_t), span *out, int nth);
int stub_pred_url(const char *b, size_t n);
int stub_pred_path(const char *b, size_t n);
int stub_pred_email(const char *b, size_t n);
int stub_pred_date(const char *b, size_t n);
int stub_pred_time(const char *b, size_t n);
int stub_pred_ticker(const char *b, size_t n);
int stub_pred_number(const char *b, size_t n);
/* A run like "12 * (3 + 4)": digits and operators with at least one operator between digits. */
int stub_find_expression(const char *text, span *out);
/* Known city and language names, NULL-terminated. */
extern const char *STUB_CITIES[];
extern const char *STUB_LANGS[];
/* A whole word of hay equal to needle ignoring case. */
const char *stub_ci_find(const char *hay, const char *needle);
/* First word of `list` found in text (the earliest occurrence after `after` when given). */
const char *stub_find_listed(const char *text, const char **list, const char *after, const char **at);

struct kd_stub_teacher {
    kd_stub_options opt;
    const kd_registry *reg;
    const kd_tokenizer *tok;
    int32_t vocab;
    int32_t json_alts[24];
    int n_json_alts;
    int32_t text_alts[16];
    int n_text_alts;
    struct tool_view *reg_tools; /* index of the registry, built at open */
    int n_reg_tools;
};

/* The tools a request offers, with their words and weights precomputed. */
typedef struct tool_view tool_view;
struct tool_view {
    const char *name;
    const char *description;
    const json_t *parameters;
    words *tw;          /* name, description, then parameter-name words */
    int n_name, first_param;
    double *weight;     /* per word: idf across the offered tools x (3 name | 1 description | 1.2 parameter) */
    int32_t *name_ids;  /* the name as the student tokenizer splits it */
    int n_name_ids;
};

/* The registry's index is built once at open and shared (read-only) by every request. */
int index_tools(const kd_stub_teacher *s, const json_t *tools, tool_view **out);
void free_tools(tool_view *v, int n);
int request_tools(const kd_stub_teacher *s, const json_t *tools, tool_view **out);
void release_tools(const kd_stub_teacher *s, tool_view *tv, int n);
/* Split a prompt into requests and pick a tool for each (-1: none); returns the number of parts. */
int split_requests(const tool_view *tv, int ntools, const char *text, char parts[][1024], int *picks, int maxp);
/* Arguments for a tool's parameters schema, filled from the text. */
json_t *fill_args(const char *text, const json_t *params);

/* Tokens: the student tokenizer's, or one per byte without one. */
int stub_encode(const kd_stub_teacher *s, const char *text, size_t len, kd_encoding *enc, kd_error *err);
void stub_encoding_free(const kd_stub_teacher *s, kd_encoding *enc);
char *stub_token_text(const kd_stub_teacher *s, int32_t id);
int32_t first_token(const kd_stub_teacher *s, const char *text);
int add_unique(int32_t *arr, int n, int cap, int32_t id);

/* Spans of a written answer (offsets in the answer's text). */
enum { SPAN_TEXT = 0, SPAN_NAME = 1, SPAN_ARGS = 2 };
typedef struct kspan {
    size_t b, e;
    int kind;
    int tool; /* index in the offered tools for NAME spans */
} kspan;

/* The top-k of one row: the written token `actual` at actual_logit, the stub's own token `pref` when it
 * differs (>= 0; -1: none) at pref_logit, and `alts` at descending logits from alt_base; the rest of
 * the vocabulary at logit 0 (stub_score.c). */
void stub_position_topk(const kd_stub_teacher *s, kd_teacher_logprobs *lp, int row, int32_t actual, double actual_logit,
                        int32_t pref, double pref_logit, const int32_t *alts, int nalts, double alt_base, uint64_t seed,
                        size_t pos);
/* The boosted runner-ups of a row in a span of `kind` (SPAN_NAME: the name_index-th token of the other
 * offered names; SPAN_ARGS: JSON structure; SPAN_TEXT: common words) and their base logit (*base, from
 * L = log V); returns how many (at most 48). */
int stub_span_alternatives(const kd_stub_teacher *s, const tool_view *tv, int ntools, int kind, int tool, size_t name_index,
                           double L, int32_t alts[48], double *base);

/* The top-k of `text`'s tokens from response_start on (all rows when keep_prompt), with boosted
 * alternatives inside `spans` (offsets from response_start). */
int stub_build_logprobs(const kd_stub_teacher *s, const char *text, size_t len, size_t response_start, const kspan *spans,
                        int nspans, const tool_view *tv, int ntools, int k, uint64_t seed, int keep_prompt,
                        kd_teacher_logprobs *lp, int64_t *ntokens, kd_error *err);

#endif
