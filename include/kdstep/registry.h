/* The tool registry: which tools exist and what their arguments must look like.
 *
 * Loads an OpenAI `tools` array ([{"type":"function","function":{name, description, parameters}}]),
 * a BFCL `function` list ([{name, description, parameters}] with BFCL's type names), or either of
 * those under a {"tools": [...]} object. BFCL's `dict`, `float`, `tuple` and `any` are mapped to JSON
 * Schema's `object`, `number`, `array` and no type constraint, so every schema is plain JSON Schema
 * after loading. Names are looked up by exact match and may contain dots (`web.search`).
 *
 * Validation covers: type (also a list of types), required, properties, additionalProperties
 * (false or a schema), enum, items, minItems/maxItems, minimum/maximum, nested to any depth.
 * A failure names the JSON path of the first bad value: "$.filters.max_price: expected number, got string".
 */
#ifndef KDSTEP_REGISTRY_H
#define KDSTEP_REGISTRY_H

#include <jansson.h>
#include "kdstep/error.h"

typedef struct kd_tool {
    char *name;
    char *description;
    json_t *parameters; /* normalized JSON Schema, an object schema (owned) */
} kd_tool;

typedef struct kd_registry {
    kd_tool *tools;
    int count;
    int cap;
    int *slots;      /* open-addressing hash of names -> index, -1 empty */
    int nslots;
    char sha256[65]; /* of the canonical JSON of all tools, in order; updated on every load */
} kd_registry;

int kd_registry_open(kd_registry **out, kd_error *err);
void kd_registry_close(kd_registry *reg);

/* Load a file holding a JSON array (OpenAI or BFCL entries) or {"tools": [...]}. Every tool is
 * added; a name already present is an error naming the file and the entry index. */
int kd_registry_load_file(kd_registry *reg, const char *path, kd_error *err);
/* Load from a parsed JSON array (a per-prompt `tools` or BFCL `function` field). `source` names it
 * in error messages (e.g. "prompts.jsonl:12: tools"). */
int kd_registry_load_json(kd_registry *reg, const json_t *tools, const char *source, kd_error *err);
/* Build a fresh registry from a per-prompt tools array. */
int kd_registry_from_json(kd_registry **out, const json_t *tools, const char *source, kd_error *err);

const kd_tool *kd_registry_find(const kd_registry *reg, const char *name);
const kd_tool *kd_registry_find_n(const kd_registry *reg, const char *name, size_t len);

/* Validate an arguments value against the tool's parameter schema. */
int kd_registry_validate(const kd_tool *tool, const json_t *args, kd_error *err);
/* Validate against any normalized schema; `path` is the JSON path prefix, usually "$". */
int kd_schema_validate(const json_t *schema, const json_t *value, const char *path, kd_error *err);
/* Normalize a BFCL/OpenAI parameter schema into JSON Schema (returns a new reference). */
json_t *kd_schema_normalize(const json_t *schema);

/* The registry as an OpenAI `tools` array (new reference), for requests and chat templates. */
json_t *kd_registry_to_openai(const kd_registry *reg);

#endif
