/* kdstep extract: tool calls, argument spans and integration spans of teacher texts, JSON Lines
 * in and out; with --tokenizer also the token ids and the aligned masks. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kdstep/extract.h"
#include "kdstep/registry.h"
#include "kdstep/targets.h"
#include "kdstep/tokenizer.h"


static const char USAGE[] =
    "usage: kdstep extract --tools FILE [--tokenizer DIR]\n"
    "\n"
    "Reads JSON Lines on stdin, one teacher output a line:\n"
    "  {\"text\": \"<teacher output>\", \"tool_results\": [\"<result>\", ...]}\n"
    "and writes one JSON line per input with every tool call (format, name and arguments byte\n"
    "spans, registered, json_valid, schema_valid, schema_error), the integration spans (searched\n"
    "after the last call, or in all the text when there is none) and errors. Spans are byte\n"
    "offsets into text, end-exclusive. A line that is not valid JSON gives an errors entry with\n"
    "its line number and the run goes on.\n"
    "  --tools FILE      tool registry (OpenAI `tools` array or BFCL `function` list)\n"
    "  --tokenizer DIR   tokenizer.json (or its folder): add input_ids, offsets and the masks\n"
    "                    loss_mask, tool_name_mask, json_mask, integration_mask\n";

static json_t *span_json(size_t s, size_t e) { return json_pack("[I, I]", (json_int_t)s, (json_int_t)e); }

static json_t *mask_json(const uint8_t *m, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(m[i]));
    return a;
}

/* Process one input record into `out`; problems with the record go to `errors`. */
static void process(const json_t *in, long line, const kd_registry *reg, const kd_tokenizer *tok, kd_encoding *enc,
                    json_t *out, json_t *errors) {
    char msg[KD_ERROR_MSG_MAX + 64];
    const json_t *jt = json_object_get(in, "text");
    if (!json_is_string(jt)) {
        snprintf(msg, sizeof msg, "line %ld: missing string \"text\"", line);
        json_array_append_new(errors, json_string(msg));
        return;
    }
    const char *text = json_string_value(jt);
    size_t len = json_string_length(jt);
    const json_t *jr = json_object_get(in, "tool_results");
    if (jr && !json_is_array(jr)) {
        snprintf(msg, sizeof msg, "line %ld: \"tool_results\" must be an array of strings (or JSON values)", line);
        json_array_append_new(errors, json_string(msg));
        jr = NULL;
    }
    kd_error e;
    kd_tool_calls calls = {0};
    if (kd_extract_tool_calls(text, len, reg, &calls, &e)) {
        snprintf(msg, sizeof msg, "line %ld: %s", line, e.msg);
        json_array_append_new(errors, json_string(msg));
    }
    json_t *jc = json_object_get(out, "tool_calls");
    for (size_t i = 0; i < calls.count; i++) {
        const kd_tool_call *c = &calls.v[i];
        json_array_append_new(
            jc, json_pack("{s:s, s:s, s:o, s:o, s:b, s:b, s:b, s:o}", "name", c->name_text, "format", kd_call_format_name(c->format),
                          "name_span", span_json(c->name.start, c->name.end), "arguments_span",
                          span_json(c->arguments.start, c->arguments.end), "registered", c->registered, "json_valid",
                          c->json_valid, "schema_valid", c->schema_valid, "schema_error",
                          c->schema_error ? json_string(c->schema_error) : json_null()));
    }
    size_t from = calls.count ? calls.v[calls.count - 1].call.end : 0;
    size_t nr = json_array_size(jr);
    const char **rs = calloc(nr + 1, sizeof *rs);
    size_t *rl = calloc(nr + 1, sizeof *rl);
    char **owned = calloc(nr + 1, sizeof *owned);
    kd_spans integ = {0};
    for (size_t i = 0; i < nr; i++) {
        const json_t *r = json_array_get(jr, i);
        if (json_is_string(r)) {
            rs[i] = json_string_value(r);
            rl[i] = json_string_length(r);
        } else {
            owned[i] = json_dumps(r, JSON_ENCODE_ANY | JSON_COMPACT);
            rs[i] = owned[i] ? owned[i] : "";
            rl[i] = strlen(rs[i]);
        }
    }
    if (kd_identify_integration_spans(text + from, len - from, rs, rl, nr, NULL, &integ, &e)) {
        snprintf(msg, sizeof msg, "line %ld: %s", line, e.msg);
        json_array_append_new(errors, json_string(msg));
    }
    json_t *ji = json_object_get(out, "integration_spans");
    for (size_t i = 0; i < integ.count; i++) json_array_append_new(ji, span_json(integ.v[i].start + from, integ.v[i].end + from));
    if (tok) {
        kd_target_spans sp = {0};
        kd_targets t = {0};
        if (kd_tokenizer_encode(tok, text, len, 0, enc, &e) || kd_spans_push(&sp.response, 0, len) ||
            kd_targets_add_calls(&sp, &calls, 0, &e) || kd_targets_add_shifted(&sp.integration, &integ, from, &e) ||
            kd_targets_build((const int32_t(*)[2])enc->offsets, enc->count, len, &sp, 1, &t, &e)) {
            snprintf(msg, sizeof msg, "line %ld: %s", line, e.msg);
            json_array_append_new(errors, json_string(msg));
        } else {
            json_t *ids = json_array(), *offs = json_array();
            for (size_t i = 0; i < enc->count; i++) {
                json_array_append_new(ids, json_integer(enc->ids[i]));
                json_array_append_new(offs, span_json((size_t)enc->offsets[i][0], (size_t)enc->offsets[i][1]));
            }
            json_object_set_new(out, "input_ids", ids);
            json_object_set_new(out, "offsets", offs);
            json_object_set_new(out, "loss_mask", mask_json(t.loss_mask, t.n));
            json_object_set_new(out, "tool_name_mask", mask_json(t.tool_name_mask, t.n));
            json_object_set_new(out, "json_mask", mask_json(t.json_mask, t.n));
            json_object_set_new(out, "integration_mask", mask_json(t.integration_mask, t.n));
        }
        kd_targets_free(&t);
        kd_target_spans_free(&sp);
    }
    for (size_t i = 0; i < nr; i++) free(owned[i]);
    free(owned);
    free(rs);
    free(rl);
    kd_spans_free(&integ);
    kd_tool_calls_free(&calls);
}

int kd_cmd_extract(int argc, char **argv) {
    static const struct option opts[] = {{"tools", required_argument, 0, 't'}, {"tokenizer", required_argument, 0, 'k'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *tools = NULL, *tokdir = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 't': tools = optarg; break;
        case 'k': tokdir = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "extract: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return kd_cli_usage_error(USAGE, "extract: unexpected argument '%s'", argv[optind]);
    if (!tools) return kd_cli_usage_error(USAGE, "extract: --tools FILE is required (the registry names are checked against)");
    kd_error err;
    kd_registry *reg = NULL;
    if (kd_registry_open(&reg, &err) || kd_registry_load_file(reg, tools, &err)) {
        kd_registry_close(reg);
        return kd_cli_fail(&err);
    }
    kd_tokenizer *tok = NULL;
    if (tokdir) {
        if (kd_tokenizer_open(&tok, tokdir, &err)) {
            kd_registry_close(reg);
            return kd_cli_fail(&err);
        }
    }
    kd_encoding enc = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        lineno++;
        size_t l = (size_t)n;
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) l--;
        size_t sp = 0;
        while (sp < l && (line[sp] == ' ' || line[sp] == '\t')) sp++;
        if (sp == l) continue; /* blank lines are not inputs */
        json_t *out = json_pack("{s:[], s:[], s:[]}", "tool_calls", "integration_spans", "errors");
        json_t *errors = json_object_get(out, "errors");
        json_error_t je;
        json_t *in = json_loadb(line, l, 0, &je);
        char msg[300];
        if (!in) {
            snprintf(msg, sizeof msg, "line %ld: invalid JSON at column %d: %s", lineno, je.column, je.text);
            json_array_append_new(errors, json_string(msg));
        } else if (!json_is_object(in)) {
            snprintf(msg, sizeof msg, "line %ld: expected an object {\"text\": ..., \"tool_results\": [...]}", lineno);
            json_array_append_new(errors, json_string(msg));
        } else {
            process(in, lineno, reg, tok, &enc, out, errors);
        }
        json_decref(in);
        char *s = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (s) {
            fputs(s, stdout);
            fputc('\n', stdout);
        }
        free(s);
        json_decref(out);
    }
    free(line);
    if (tok) {
        kd_encoding_free(&enc);
        kd_tokenizer_close(tok);
    }
    kd_registry_close(reg);
    if (fflush(stdout) != 0) {
        kd_error_errno(&err, errno, "extract: writing stdout failed");
        return kd_cli_fail(&err);
    }
    return 0;
}
