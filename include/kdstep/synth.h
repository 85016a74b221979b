/* Prompt synthesizer: a varied, deterministic prompt set over a tool registry.
 *
 * Each record is {"id", "prompt", "metadata": {"tool_calls": [{"name", "arguments"}...]}}: about 10%
 * need no tool (empty list), about 10% need two tools, the rest one. Arguments are drawn from the
 * tool's schema with values chosen by parameter name (paths, queries, URLs, numbers, dates, times,
 * cities, e-mail addresses, units, tickers, language codes, shell commands ...), always valid against
 * the schema, and every argument value appears verbatim in the prompt so a good teacher can fill it
 * in. Tools of the shipped registry (configs/tools.json) have hand-written phrasings; any other tool
 * is phrased from its description and parameter names.
 *
 * Record i depends only on (seed, i), so a set can be generated in pieces or in parallel and
 * `kdstep prompts synth -n 1000` is a prefix of `-n 2000` with the same seed.
 */
#ifndef KDSTEP_SYNTH_H
#define KDSTEP_SYNTH_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "kdstep/error.h"
#include "kdstep/registry.h"

/* Per-prompt tool sets (`kdstep prompts synth --tools-per-prompt MIN-MAX`). With tools_max > 0 every
 * record carries its own OpenAI "tools" array of MIN..MAX tools drawn from the registry (the pool):
 * the tool(s) the request needs plus distractors, in random order. About 70% need one tool, 10% two,
 * 10% are small talk and 10% ask for a pool tool that is NOT offered (no fitting tool: the right
 * answer is no call). Requests are phrased from the tool's description gist and name every argument
 * by its parameter words (include/kdstep/toolwords.h): "I want to retrieve the weather with city
 * "Paris" and days 3.", "(city: Paris; days: 3)", ", setting city to Paris", "where the city is ...".
 * metadata: {"tool_calls": [...], "category": "call" | "two_calls" | "no_call_chat" | "no_call_unfit"}.
 * Gold arguments are validated against the schema before a record is written.
 *
 * rename_pct (`--rename-tools PCT`, job key prompts.rename_tools): in about PCT% of the records every
 * tool (offered, or asked for and not offered) gets a made-up name of two or three pieces of other
 * pool names ("weather_badge_transfer"), unique within the record; the request, the tools array
 * and metadata.tool_calls use it, descriptions and schemas stay. A student trained on such records
 * cannot answer by naming a tool it has memorized: it must read the name from the prompt's tools.
 * The roll and the names come from their own stream, so records the roll passes over are the same
 * bytes as with rename_pct 0. */
typedef struct kd_synth_options {
    int tools_min, tools_max; /* 0, 0: no per-prompt tools (the registry's regime above) */
    int rename_pct;           /* 0..100: share of records whose tools get made-up names */
} kd_synth_options;

int kd_synth_record_opts(const kd_registry *reg, const kd_synth_options *o, uint64_t seed, int64_t index, json_t **record,
                         kd_error *err);
int kd_synth_write_opts(const kd_registry *reg, const kd_synth_options *o, uint64_t seed, int64_t n, FILE *out, kd_error *err);

/* Arguments for one call of `tool` drawn from its schema with the generator state *rng (always an
 * object; new reference). Valid against the schema for every tool of configs/tool_pool.json
 * (tests/unit/test_synth.c); callers still validate, as the synthesizer does before writing. */
json_t *kd_synth_gen_args(const kd_tool *tool, uint64_t *rng);

/* Record `index` of the set for `seed` (new reference in *record). */
int kd_synth_record(const kd_registry *reg, uint64_t seed, int64_t index, json_t **record, kd_error *err);
/* Write records [0, n) as JSON Lines. */
int kd_synth_write(const kd_registry *reg, uint64_t seed, int64_t n, FILE *out, kd_error *err);

#endif
