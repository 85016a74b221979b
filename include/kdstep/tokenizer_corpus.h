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

/* The default student tokenizer, the same bytes as jobs/make-student-tokenizer.sh makes (and so the
 * quickstart): a byte-level BPE of `vocab_size` ids trained on KD_STUDENT_CORPUS_MB MB of this corpus
 * over the tools in tools_path, seed KD_STUDENT_CORPUS_SEED. Writes dir/tokenizer.json and
 * tokenizer_config.json through a private temporary folder renamed into place, so processes making
 * it at once do not clash; does nothing when dir/tokenizer.json exists. */
#define KD_STUDENT_CORPUS_MB 20
#define KD_STUDENT_CORPUS_SEED 1
int kd_tokenizer_make_student(const char *dir, const char *tools_path, int vocab_size, kd_error *err);

#endif
