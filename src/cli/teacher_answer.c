/* kdstep teacher answer: the stub teacher's answers to a prompt set as predictions for `kdstep score`
 * (its ceiling: what a student distilled from it could reach). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kdstep/prompts.h"
#include "kdstep/registry.h"
#include "kdstep/teacher.h"

static const char USAGE[] =
    "usage: kdstep teacher answer --prompts FILE -o PREDS.jsonl [--tools FILE] [--config FILE] [--set K=V]\n"
    "\n"
    "Answers every prompt of FILE with the built-in stub teacher (first turn only, no malformed answers)\n"
    "and writes one prediction a line, {\"id\", \"tool_calls\": [{\"name\", \"arguments\"}]}, for\n"
    "`kdstep score --predictions PREDS.jsonl --answers FILE --tools FILE`. The stub reads each prompt's\n"
    "text and tools only, never its metadata.\n"
    "  --tools FILE   registry for prompts without their own tools (default configs/tools.json when it exists)\n";

static int write_prediction(FILE *f, const kd_prompt *p, const kd_teacher_completion *c) {
    json_t *calls = json_array();
    for (int i = 0; i < c->n_tool_calls; i++) {
        json_t *args = json_loads(c->tool_calls[i].arguments ? c->tool_calls[i].arguments : "", 0, NULL);
        json_array_append_new(calls, json_pack("{s:s, s:o}", "name", c->tool_calls[i].name ? c->tool_calls[i].name : "",
                                               "arguments", args ? args : json_string(c->tool_calls[i].arguments ? c->tool_calls[i].arguments : "")));
    }
    char idx[32];
    snprintf(idx, sizeof idx, "%lld", (long long)p->index);
    json_t *rec = json_pack("{s:s, s:o}", "id", p->id && p->id[0] ? p->id : idx, "tool_calls", calls);
    char *s = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(rec);
    int bad = !s || fputs(s, f) < 0 || fputc('\n', f) == EOF;
    free(s);
    return bad;
}

int kd_cmd_teacher_answer(int argc, char **argv) {
    static const struct option opts[] = {{"prompts", required_argument, 0, 'p'}, {"tools", required_argument, 0, 't'},
                                         {"config", required_argument, 0, 'c'},  {"set", required_argument, 0, 's'},
                                         {"output", required_argument, 0, 'o'},  {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *prompts = NULL, *tools = "configs/tools.json", *cfg_path = NULL, *out = NULL;
    char *sets[64];
    int nsets = 0, c, tools_default = 1;
    while ((c = getopt_long(argc, argv, "+o:", opts, NULL)) != -1) {
        switch (c) {
        case 'p': prompts = optarg; break;
        case 't': tools = optarg, tools_default = 0; break;
        case 'c': cfg_path = optarg; break;
        case 's':
            if (nsets == 64) return kd_cli_usage_error(USAGE, "teacher answer: too many --set flags");
            sets[nsets++] = optarg;
            break;
        case 'o': out = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "teacher answer: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return kd_cli_usage_error(USAGE, "teacher answer: unexpected argument '%s'", argv[optind]);
    if (!prompts || !out) return kd_cli_usage_error(USAGE, "teacher answer: --prompts and -o are required");
    kd_config cfg;
    kd_error err;
    kd_registry *reg = NULL;
    kd_stub_teacher *stub = NULL;
    kd_prompt_reader *r = NULL;
    /* the default registry is optional: prompts that carry their own tools need none */
    int load = !tools_default || access(tools, R_OK) == 0;
    if (kd_cli_load_config(&cfg, cfg_path, sets, nsets, &err) || kd_registry_open(&reg, &err) ||
        (load && kd_registry_load_file(reg, tools, &err))) {
        kd_registry_close(reg);
        kd_config_free(&cfg);
        return kd_cli_fail(&err);
    }
    kd_stub_options o = {0};
    o.temperature = cfg.teacher.temperature;
    o.seed = cfg.teacher.seed;
    int rc = kd_tool_format_from_name(cfg.teacher.tool_call_format, &o.tool_call_format, &err);
    if (!rc) rc = kd_stub_open(&stub, &o, reg, NULL, &err);
    if (!rc) rc = kd_prompts_open(&r, prompts, &err);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid());
    FILE *f = rc ? NULL : fopen(tmp, "w");
    if (!rc && !f) rc = kd_error_errno(&err, errno, "%s: cannot create", tmp);
    kd_prompt p;
    int more;
    long n = 0, bad = 0;
    while (!rc && (more = kd_prompts_next(r, &p, &err)) != 0) {
        if (more < 0) {
            rc = err.code;
            break;
        }
        if (p.status) {
            bad++;
        } else {
            /* the first turn: the messages up to the first user message's answer */
            kd_teacher_completion comp;
            memset(&comp, 0, sizeof comp);
            rc = kd_stub_complete(stub, p.messages, p.tools, 0, cfg.teacher.seed, &comp, &err);
            if (!rc && write_prediction(f, &p, &comp)) rc = kd_error_set(&err, KD_ERR_IO, "%s: write failed (disk full?)", out);
            kd_teacher_completion_free(&comp);
            n++;
        }
        kd_prompt_clear(&p);
    }
    if (f && fclose(f) != 0 && !rc) rc = kd_error_errno(&err, errno, "%s: write failed", tmp);
    if (!rc && rename(tmp, out) != 0) rc = kd_error_errno(&err, errno, "cannot rename %s to %s", tmp, out);
    if (rc && f) unlink(tmp);
    kd_prompts_close(r);
    kd_stub_close(stub);
    kd_registry_close(reg);
    kd_config_free(&cfg);
    if (rc) return kd_cli_fail(&err);
    fprintf(stderr, "teacher answer: %ld prompts answered into %s (%ld bad lines skipped)\n", n, out, bad);
    return 0;
}
