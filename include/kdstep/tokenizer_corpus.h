/* A deterministic synthetic corpus for training a small student tokenizer without outside data:
 * tool-use conversations over a tool registry rendered in the chat template (tools block, user
 * requests, <tool_call> JSON built from each tool's parameter schema, <tool_response> results,
 * final answers), plus English prose, code, JSON, numbers and short lines in a dozen scripts.
 * The same (tools, bytes, seed) always gives the same bytes.
 */
#ifndef KDSTEP_TOKENIZER_CORPUS_H
#define KDSTEP_TOKENIZER_CORPUS_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "kdstep/error.h"

/* Write about `bytes` bytes (stops after the document that crosses it) to `out`. `tools` is an
 * OpenAI tools array (e.g. configs/tools.json); NULL or empty gives prose only. */
int kd_tokenizer_corpus_write(FILE *out, const json_t *tools, size_t bytes, uint64_t seed, kd_error *err);

#endif
