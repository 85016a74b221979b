/* kdstep score: score predicted tool calls against answers with BFCL's AST rules. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kdstep/fsutil.h"
#include "kdstep/score.h"

static const char USAGE[] =
    "usage: kdstep score --predictions FILE --answers FILE [--tools FILE] [--markdown FILE] [--details FILE]\n"
    "\n"
    "Scores predicted tool calls with BFCL's AST rules and prints a JSON report to stdout:\n"
    "tool_name_accuracy, json_validity, schema_validity, ast_accuracy, no_call_accuracy (fractions,\n"
    "null where no item applies), count and by_category.\n"
    "  --predictions FILE  JSON Lines: {\"id\", \"tool_calls\": [{\"name\", \"arguments\"}]}, or {\"id\", \"text\"}\n"
    "                      with raw model output (calls found by the extractor, any format it knows)\n"
    "  --answers FILE      BFCL possible_answer JSONL, or a synthesized prompt set with metadata.tool_calls\n"
    "  --tools FILE        a tool registry, or a prompt set with per-prompt tools matched by id\n"
    "                      (a BFCL question file as it is); enables schema checks\n"
    "  --markdown FILE     also write the report as a Markdown table\n"
    "  --details FILE      write each item's verdicts and the reason it failed, as JSON Lines\n";

int kd_cmd_score(int argc, char **argv) {
    static const struct option opts[] = {{"predictions", required_argument, 0, 'p'}, {"answers", required_argument, 0, 'a'},
                                         {"tools", required_argument, 0, 't'},       {"markdown", required_argument, 0, 'm'},
                                         {"details", required_argument, 0, 'd'},
                                         {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    const char *preds = NULL, *answers = NULL, *tools = NULL, *md = NULL, *details = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'p': preds = optarg; break;
        case 'a': answers = optarg; break;
        case 't': tools = optarg; break;
        case 'm': md = optarg; break;
        case 'd': details = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "score: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return kd_cli_usage_error(USAGE, "score: unexpected argument '%s'", argv[optind]);
    if (!preds || !answers) return kd_cli_usage_error(USAGE, "score: --predictions and --answers are required");
    kd_error err;
    kd_scorer *s = NULL;
    if (kd_scorer_open(&s, answers, tools, &err)) return kd_cli_fail(&err);
    FILE *df = NULL;
    if (details && !(df = fopen(details, "w"))) {
        kd_error_errno(&err, errno, "cannot write --details %s", details);
        kd_scorer_close(s);
        return kd_cli_fail(&err);
    }
    kd_scorer_set_details(s, df);
    if (kd_scorer_add_file(s, preds, &err)) {
        kd_scorer_close(s);
        if (df) fclose(df);
        return kd_cli_fail(&err);
    }
    json_t *rep = kd_scorer_report(s);
    kd_scorer_close(s);
    if (df && fclose(df) != 0) {
        json_decref(rep);
        kd_error_errno(&err, errno, "cannot write --details %s", details);
        return kd_cli_fail(&err);
    }
    int rc = 0;
    if (md) {
        char *table = kd_score_markdown(rep);
        if (!table) {
            kd_error_set(&err, KD_ERR_NOMEM, "out of memory rendering the Markdown table");
            rc = kd_cli_fail(&err);
        } else if (kd_write_file_atomic(md, table, strlen(table), &err)) {
            rc = kd_cli_fail(&err);
        }
        free(table);
    }
    if (rc == 0) {
        char *out = json_dumps(rep, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        if (out) puts(out);
        free(out);
    }
    json_decref(rep);
    return rc;
}
