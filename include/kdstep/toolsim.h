/* The tool simulator: deterministic fake results for tool calls, so a generation run can send a
 * result back to the teacher and get the final answer that integration spans come from.
 *
 * Results depend only on the tool name and the arguments (canonical JSON), never on time or order.
 * Known kinds get realistic shapes: read_file -> file-like content, web.search -> a list of results,
 * weather/forecast -> numbers with units; any other tool gets an object built from its name and
 * arguments. A fixtures file (JSON array of {"name", "arguments"?, "result"}) overrides: an entry
 * with "arguments" matches those exact arguments, one without matches any call of that tool.
 */
#ifndef KDSTEP_TOOLSIM_H
#define KDSTEP_TOOLSIM_H

#include <jansson.h>

#include "kdstep/error.h"
#include "kdstep/registry.h"

typedef struct kd_toolsim kd_toolsim;

/* reg may be NULL; fixtures_path may be NULL or "" (no fixtures). */
int kd_toolsim_open(kd_toolsim **out, const kd_registry *reg, const char *fixtures_path, kd_error *err);
void kd_toolsim_close(kd_toolsim *sim);
/* The result for one call, as a JSON value (new reference) in *result. arguments_json is the call's
 * arguments text; invalid JSON is an error (the generation job records it as the teacher's fault). */
int kd_toolsim_run(const kd_toolsim *sim, const char *name, const char *arguments_json, json_t **result, kd_error *err);
/* Same, as compact JSON text (malloc'd), what goes into a `tool` message. */
int kd_toolsim_run_text(const kd_toolsim *sim, const char *name, const char *arguments_json, char **text, kd_error *err);

#endif
