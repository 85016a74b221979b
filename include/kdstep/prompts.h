/* Prompt sets: a streaming JSON Lines reader.
 *
 * One prompt a line: {"id", "prompt": "..."} or chat {"id", "messages": [{role, content}...]}, or a
 * BFCL record {"id", "question": [[{role, content}...]], "function": [...]} as it is. Optional
 * per-prompt "tools" (OpenAI tools array; BFCL's "function" list is taken the same way) and
 * "metadata" (an object). The file is read one line at a time: memory holds one line, never the set,
 * so 10 million prompts cost no more than ten.
 *
 * Prompt ids: a record's `index` is its 0-based line number (blank lines are skipped but keep their
 * number), so ids are stable whatever fails to parse and whoever reads the file. A line that fails
 * gives an error record (line, index, reason) instead of stopping the stream; the caller writes it to
 * failures.jsonl (kd_prompt_failure_json) or, in strict mode, stops.
 *
 * For the MPI job rank 0 is the only reader: it streams the file and sends each chunk's records to
 * workers serialized with kd_prompt_to_json / kd_prompt_from_json, so workers never open the prompt
 * set (no shared-filesystem requirement, no seeking on workers). kd_prompts_seek exists for tools and
 * restarts: it keeps a sparse index (a byte offset every 65536 lines) while reading and jumps to the
 * nearest point before the target, then skips lines without parsing them.
 */
#ifndef KDSTEP_PROMPTS_H
#define KDSTEP_PROMPTS_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "kdstep/error.h"

typedef struct kd_prompt {
    int64_t index;     /* 0-based line number: the prompt id index */
    int64_t line;      /* 1-based line number, for messages */
    int status;        /* KD_OK, or the error kind (KD_ERR_PARSE / KD_ERR_INVALID) of a bad line */
    char reason[512];  /* why the line failed ("invalid JSON at column 12: ..."), empty when ok */
    char *id;          /* the record's "id" (a number is printed as text); "" when absent */
    json_t *messages;  /* array of {"role", "content"} (owned) */
    json_t *tools;     /* per-prompt OpenAI tools or BFCL function list, NULL when absent (owned) */
    json_t *metadata;  /* object, NULL when absent (owned) */
} kd_prompt;

typedef struct kd_prompt_reader kd_prompt_reader;

/* `path` "-" reads stdin (no seeking then). */
int kd_prompts_open(kd_prompt_reader **out, const char *path, kd_error *err);
void kd_prompts_close(kd_prompt_reader *r);
/* Fill *p with the next record (good or bad). Returns 1 when a record was filled, 0 at end of file,
 * or -status on a read error (err filled). *p is cleared first; free with kd_prompt_clear. */
int kd_prompts_next(kd_prompt_reader *r, kd_prompt *p, kd_error *err);
/* Position the reader so the next record has index >= `index`. */
int kd_prompts_seek(kd_prompt_reader *r, int64_t index, kd_error *err);
/* Count the lines of a prompt set quickly (for progress totals); blank lines included. */
int kd_prompts_count_lines(const char *path, int64_t *lines, kd_error *err);

void kd_prompt_clear(kd_prompt *p);

/* Parse one line as line number `line` (1-based) into *p; never fails: a bad line sets p->status and
 * p->reason. Used by the reader and by tests. */
void kd_prompt_parse(const char *text, size_t len, int64_t line, kd_prompt *p);

/* Serialize a good record for sending (compact JSON: index, line, id, messages, tools, metadata), and
 * back. Returns malloc'd text / a status. */
char *kd_prompt_to_json(const kd_prompt *p);
int kd_prompt_from_json(kd_prompt *p, const char *text, size_t len, kd_error *err);
/* The failures.jsonl record of a bad line: {"line", "index", "id"?, "reason", "source": "prompts"}. */
char *kd_prompt_failure_json(const kd_prompt *p, const char *path);

#endif
