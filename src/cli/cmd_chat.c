/* kdstep chat: an interactive terminal session with a model folder, tool calls shown as parsed.
 * The conversation goes through the same path as `kdstep serve` (request JSON -> chat template ->
 * engine -> Hermes tool-call parser), so what it shows is what an API client would get. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kdstep/runtime.h"
#include "kdstep/serve_api.h"

static const char USAGE[] =
    "usage: kdstep chat --model DIR [--tools FILE] [--system TEXT] [--max-tokens N] [--temperature T] [--seed S]\n"
    "\n"
    "Chat with a model folder in the terminal. Each line you type is a user message; the answer is\n"
    "printed with its tool calls as they are parsed (name and JSON arguments). After a tool call,\n"
    "type the tool's result (one line, JSON or text) at the `result>` prompt, or an empty line to skip.\n"
    "  /reset starts a new conversation, /quit (or end of input) leaves.\n"
    "  --tools FILE      OpenAI tools array (e.g. configs/tools.json) offered to the model\n"
    "  --system TEXT     a system message first\n"
    "  --max-tokens N    per answer (default 256)\n"
    "  --temperature T   0 = greedy (default)\n";

/* One model turn: the request through the API parser, the engine, the tool-call parser. */
static int turn(kd_engine *e, const json_t *messages, const json_t *tools, int max_tokens, double temp, long long seed,
                char **content, json_t **calls, kd_error *err) {
    json_t *req = json_pack("{s:s, s:O, s:i, s:f, s:I}", "model", "chat", "messages", messages, "max_tokens", max_tokens,
                            "temperature", temp, "seed", (json_int_t)seed);
    if (tools) json_object_set(req, "tools", (json_t *)tools);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    kd_api_limits lim = {max_tokens, "chat", KD_GUIDE_NONE};
    kd_api_request r;
    kd_api_status st;
    const kd_student *stu = kd_engine_student(e);
    int rc = kd_api_parse(stu, KD_API_CHAT, body ? body : "", body ? strlen(body) : 0, &lim, &r, &st, err);
    free(body);
    if (rc) return rc;
    kd_seq *seq = NULL;
    if ((rc = kd_engine_submit(e, r.ids, r.n_ids, &r.gp, &seq, err))) {
        kd_api_request_free(&r);
        return rc;
    }
    int state = KD_SEQ_RUNNING, n = 0;
    while (state == KD_SEQ_RUNNING) n = kd_seq_wait(seq, n, 5.0, &state);
    const kd_gen_token *t = kd_seq_tokens(seq);
    int32_t *ids = calloc((size_t)n + 1, sizeof(int32_t));
    int nv = 0;
    for (int i = 0; ids && i < n; i++) {
        int stop = 0;
        for (int j = 0; j < stu->n_stop; j++) stop |= t[i].id == stu->stop[j];
        if (!stop) ids[nv++] = t[i].id;
    }
    rc = ids ? kd_api_split_output(stu, ids, nv, tools != NULL, 1, "call", content, calls, err) : kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    free(ids);
    kd_seq_release(seq);
    kd_api_request_free(&r);
    return rc;
}

static char *read_line(const char *prompt, char *buf, size_t cap) {
    fputs(prompt, stdout);
    fflush(stdout);
    if (!fgets(buf, (int)cap, stdin)) return NULL;
    buf[strcspn(buf, "\r\n")] = 0;
    return buf;
}

int kd_cmd_chat(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"tools", required_argument, 0, 't'},
                                         {"system", required_argument, 0, 's'}, {"max-tokens", required_argument, 0, 'n'},
                                         {"temperature", required_argument, 0, 'T'}, {"seed", required_argument, 0, 'S'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model = NULL, *tools_path = NULL, *system = NULL;
    int max_tokens = 256, c;
    double temp = 0.0;
    long long seed = 0;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 't': tools_path = optarg; break;
        case 's': system = optarg; break;
        case 'n': max_tokens = atoi(optarg); break;
        case 'T': temp = atof(optarg); break;
        case 'S': seed = atoll(optarg); break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "chat: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (!model) return kd_cli_usage_error(USAGE, "chat: --model DIR is required");
    if (max_tokens < 1) return kd_cli_usage_error(USAGE, "chat: --max-tokens must be at least 1");
    kd_error err;
    json_t *tools = NULL;
    if (tools_path) {
        json_error_t je;
        tools = json_load_file(tools_path, 0, &je);
        if (!json_is_array(tools)) {
            kd_error_set(&err, KD_ERR_PARSE, "%s:%d:%d: %s", tools_path, je.line, je.column, tools ? "expected an OpenAI tools array" : je.text);
            json_decref(tools);
            return kd_cli_fail(&err);
        }
    }
    kd_runtime_set_threads(1, 0);
    kd_engine *e = NULL;
    if (kd_engine_open(model, NULL, &e, &err)) {
        json_decref(tools);
        return kd_cli_fail(&err);
    }
    printf("kdstep chat: %s%s. /reset starts over, /quit leaves.\n", model, tools ? " with tools" : "");
    json_t *msgs = json_array();
    if (system) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", system));
    char line[16384];
    int rc = 0, need_answer = 0, turn_no = 0;
    for (;;) {
        if (!need_answer) {
            if (!read_line("you> ", line, sizeof line) || strcmp(line, "/quit") == 0) break;
            if (strcmp(line, "/reset") == 0) {
                json_array_clear(msgs);
                if (system) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", system));
                puts("(new conversation)");
                continue;
            }
            if (!line[0]) continue;
            json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", line));
        }
        need_answer = 0;
        char *content = NULL;
        json_t *calls = NULL;
        if (turn(e, msgs, tools, max_tokens, temp, seed + turn_no++, &content, &calls, &err)) {
            fprintf(stderr, "kdstep chat: %s\n", err.msg);
            json_decref(calls);
            json_array_remove(msgs, json_array_size(msgs) - 1);
            continue;
        }
        if (content) printf("assistant> %s\n", content);
        json_t *am = json_pack("{s:s, s:s?}", "role", "assistant", "content", content);
        size_t nc = json_array_size(calls);
        if (nc) json_object_set(am, "tool_calls", calls);
        json_array_append_new(msgs, am);
        for (size_t i = 0; i < nc; i++) {
            json_t *f = json_object_get(json_array_get(calls, i), "function");
            printf("tool call> %s %s\n", json_string_value(json_object_get(f, "name")), json_string_value(json_object_get(f, "arguments")));
        }
        for (size_t i = 0; i < nc; i++) {
            json_t *f = json_object_get(json_array_get(calls, i), "function");
            char prompt[256];
            snprintf(prompt, sizeof prompt, "result of %.200s> ", json_string_value(json_object_get(f, "name")));
            if (!read_line(prompt, line, sizeof line)) break;
            if (!line[0]) continue;
            json_array_append_new(msgs, json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id",
                                                  json_string_value(json_object_get(json_array_get(calls, i), "id")), "content", line));
            need_answer = 1;
        }
        if (!content && !nc) puts("assistant> (empty answer)");
        free(content);
        json_decref(calls);
        if (feof(stdin)) break;
    }
    json_decref(msgs);
    json_decref(tools);
    kd_engine_close(e);
    return rc;
}
