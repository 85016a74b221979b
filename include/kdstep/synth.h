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

/* Record `index` of the set for `seed` (new reference in *record). */
int kd_synth_record(const kd_registry *reg, uint64_t seed, int64_t index, json_t **record, kd_error *err);
/* Write records [0, n) as JSON Lines. */
int kd_synth_write(const kd_registry *reg, uint64_t seed, int64_t n, FILE *out, kd_error *err);

#endif
