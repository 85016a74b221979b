/* The scorer: predicted tool calls against ground truth, with BFCL's AST rules.
 *
 * Answers are BFCL `possible_answer` records ({"id", "ground_truth": [{"fn": {"param": [acceptable
 * values...]}}]}) or synthesizer prompt records ({"id", "metadata": {"tool_calls": [{"name",
 * "arguments"}], "category"?}}, exact values). An answer record without either, whose category
 * (the id without its trailing "_<number>", e.g. irrelevance_12 -> irrelevance) names an
 * irrelevance set, expects no call; so does an empty ground truth.
 * Tools (optional) are one registry for every item, or a prompt set whose records carry their own
 * "function"/"tools" list, matched by id (a BFCL question file as it is).
 *
 * Rules (BFCL ast_checker): calls match in any order with the same count; every required parameter
 * is present and none is outside the schema or the answer; types are exact except an int for a
 * float (the registry turns BFCL "float" into JSON Schema "number", so "number" means float here);
 * strings compare after lowercasing and removing " ,./-_*^" (and ' becomes "); a value passes when
 * it is one of the acceptable values; "" among them means the parameter may be omitted; dicts are
 * checked key by key, lists of dicts element by element.
 *
 * Metrics per item (1 pass, 0 fail, -1 does not apply):
 *   tool_name    items expecting calls: the predicted names equal the expected ones as a multiset;
 *   json_valid   items with predicted calls: every call's arguments are a JSON object;
 *   schema_valid items with predicted calls and known tools: every call names a known tool and its
 *                arguments validate against its JSON Schema (kd_registry_validate);
 *   ast          every item: the full AST check (for a no-call item: no call was made);
 *   no_call      items expecting no call: no call was made.
 */
#ifndef KDSTEP_SCORE_H
#define KDSTEP_SCORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "kdstep/error.h"

enum { KD_SCORE_TOOL_NAME, KD_SCORE_JSON, KD_SCORE_SCHEMA, KD_SCORE_AST, KD_SCORE_NO_CALL, KD_SCORE_NMETRICS };

/* Report keys, in enum order: "tool_name_accuracy", "json_validity", ... */
extern const char *const kd_score_metric_names[KD_SCORE_NMETRICS];

typedef struct kd_score_item {
    char category[64];
    int verdict[KD_SCORE_NMETRICS]; /* 1 pass, 0 fail, -1 not applicable */
    char reason[512];               /* why the AST check failed, "" when it passed */
} kd_score_item;

typedef struct kd_scorer kd_scorer;

/* Load the answers (required) and the tools (NULL for none). */
int kd_scorer_open(kd_scorer **out, const char *answers_path, const char *tools_path, kd_error *err);
void kd_scorer_close(kd_scorer *s);

/* Score one prediction record {"id", "tool_calls": [{"name", "arguments"}...]} (arguments an object
 * or a JSON string; OpenAI's {"function": {...}} wrapper is accepted) or {"id", "text"}: raw model
 * output whose calls kd_extract_tool_calls finds (any of its five formats; a call whose arguments
 * do not parse counts against JSON validity). "tool_calls" wins when both are given. `where`
 * names it in errors ("preds.jsonl:3"). `item` (may be NULL) receives the verdicts. An id without
 * an answer is an error unless its category is an irrelevance set; a repeated id is an error. */
int kd_scorer_add(kd_scorer *s, const json_t *prediction, const char *where, kd_score_item *item, kd_error *err);
/* Write one JSON line per scored item ({"id", "category", <metric>: true/false/null, "reason"}) to f. */
void kd_scorer_set_details(kd_scorer *s, FILE *f);
/* Every record of a predictions JSONL file. */
int kd_scorer_add_file(kd_scorer *s, const char *path, kd_error *err);

/* The report (new reference): the five metrics (a fraction or null), "count", "by_category".
 * Answers that got no prediction are scored as "no call" (and counted in "missing"). */
json_t *kd_scorer_report(kd_scorer *s);

/* The report as a Markdown table (malloc'd), one row per category and one for all. */
char *kd_score_markdown(const json_t *report);

/* One call against one BFCL answer entry {"fn": {"param": [acceptable...]}}. `params` is the
 * tool's normalized parameter schema, or NULL to check against the answer alone. Returns 1 when
 * it matches, else 0 with the reason in `why`. */
int kd_score_check_call(const json_t *params, const char *name, const json_t *args, const json_t *answer, char *why,
                        size_t whylen);

/* BFCL's string normalization (malloc'd): lowercase, drop " ,./-_*^", ' -> ". */
char *kd_score_standardize(const char *s);

#endif
