/* kdstep serve: a student checkpoint behind an OpenAI-compatible API. Parsing and wiring only. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kdstep/log.h"
#include "kdstep/runtime.h"
#include "kdstep/serve.h"
#include "kdstep/toolguide.h"

static const char USAGE[] =
    "usage: kdstep serve --model DIR [--port P] [--host 127.0.0.1] [--name NAME] [--api-key-env VAR]\n"
    "                    [--max-tokens N] [--max-body BYTES] [--max-batch N] [--max-kv-mb MB] [--threads N]\n"
    "                    [--guide none|names|json|schema]\n"
    "\n"
    "Serves a kdstep (or any Qwen3-architecture) model folder with an OpenAI-compatible API:\n"
    "GET /v1/models, POST /v1/chat/completions (tools, tool_calls, logprobs, stream) and\n"
    "POST /v1/completions (with vLLM's prompt_logprobs, so it can be a teacher for kdstep generate).\n"
    "Requests are batched continuously. See docs/serve.md.\n"
    "  --model DIR        config.json, model.safetensors (or shards + index), tokenizer.json\n"
    "  --port P           TCP port (default 8000; 0 picks a free one, printed on stdout)\n"
    "  --host ADDR        address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)\n"
    "  --name NAME        the model name requests must give (default: DIR as written)\n"
    "  --api-key-env VAR  require \"Authorization: Bearer $VAR\" (the key is read from that variable,\n"
    "                     never from the command line)\n"
    "  --max-tokens N     the most tokens one request may generate (default 4096, capped by the context)\n"
    "  --max-body BYTES   the largest request body accepted (default 8388608)\n"
    "  --max-batch N      sequences decoded together (default 16)\n"
    "  --max-kv-mb MB     KV cache budget of all waiting and running requests together (default 2048);\n"
    "                     a request that would pass it gets 503 + Retry-After (400 if it alone needs more)\n"
    "  --threads N        compute threads (default: all cores)\n"
    "  --log-requests F   append every answered request (prompt ids + response JSON) to F (JSON Lines;\n"
    "                     it holds the prompts: for audits and tests)\n"
    "  --guide LEVEL      guided tool calls for chat requests with tools (default none): names, json or\n"
    "                     schema mask what would break the call's name, JSON or parameters (docs/eval.md)\n";

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

int kd_cmd_serve(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},      {"port", required_argument, 0, 'p'},
                                         {"host", required_argument, 0, 'H'},       {"name", required_argument, 0, 'n'},
                                         {"api-key-env", required_argument, 0, 'k'}, {"max-tokens", required_argument, 0, 't'},
                                         {"max-body", required_argument, 0, 'b'},   {"max-batch", required_argument, 0, 'B'},
                                         {"threads", required_argument, 0, 'T'},    {"log-requests", required_argument, 0, 'L'},
                                         {"max-kv-mb", required_argument, 0, 'K'}, {"guide", required_argument, 0, 'G'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    kd_serve_options o = {0};
    o.port = 8000;
    const char *key_env = NULL;
    int threads = 0, c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o.model_dir = optarg; break;
        case 'p': o.port = atoi(optarg); break;
        case 'H': o.host = optarg; break;
        case 'n': o.model_name = optarg; break;
        case 'k': key_env = optarg; break;
        case 't': o.max_tokens = atoi(optarg); break;
        case 'b': o.max_body = (size_t)strtoull(optarg, NULL, 10); break;
        case 'B': o.engine.max_batch = atoi(optarg); break;
        case 'K': {
            char *end = NULL;
            double mb = strtod(optarg, &end);
            if (*end || !(mb >= 1 && mb <= 1048576)) return kd_cli_usage_error(USAGE, "serve: --max-kv-mb wants MiB from 1 to 1048576, got '%s'", optarg);
            o.engine.max_kv_bytes = (size_t)(mb * 1024 * 1024);
            break;
        }
        case 'T': threads = atoi(optarg); break;
        case 'L': o.log_requests = optarg; break;
        case 'G':
            if ((o.guide = kd_guide_mode_parse(optarg)) < 0)
                return kd_cli_usage_error(USAGE, "serve: --guide takes none, names, json or schema, got '%s'", optarg);
            break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "serve: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return kd_cli_usage_error(USAGE, "serve: unexpected argument '%s'", argv[optind]);
    if (!o.model_dir) return kd_cli_usage_error(USAGE, "serve: --model DIR is required");
    if (o.port < 0 || o.port > 65535) return kd_cli_usage_error(USAGE, "serve: --port %d is not a TCP port (0..65535)", o.port);
    if (o.max_tokens < 0 || o.engine.max_batch < 0 || threads < 0) return kd_cli_usage_error(USAGE, "serve: sizes must be positive");
    if (key_env) {
        o.api_key = getenv(key_env);
        if (!o.api_key || !o.api_key[0]) {
            kd_error err;
            kd_error_set(&err, KD_ERR_INVALID, "serve: --api-key-env %s names an unset or empty variable; export %s=<key> first", key_env, key_env);
            return kd_cli_fail(&err);
        }
    }
    kd_runtime_set_threads(1, threads);
    kd_error err;
    kd_serve *s = NULL;
    if (kd_serve_start(&o, &s, &err)) return kd_cli_fail(&err);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    printf("kdstep serve: listening on http://%s:%d (model \"%s\")\n", o.host ? o.host : "127.0.0.1", kd_serve_port(s),
           o.model_name ? o.model_name : o.model_dir);
    fflush(stdout);
    if (o.host && strcmp(o.host, "127.0.0.1") != 0 && !o.api_key)
        KD_WARN("serve: listening on %s without an API key: anyone who reaches this address can use the model", o.host);
    while (!g_stop) usleep(100000);
    kd_engine_stats st;
    kd_engine_get_stats(kd_serve_engine(s), &st);
    kd_serve_stop(s);
    KD_INFO("serve: stopped; %lld requests finished, %lld cancelled, %lld steps, %lld decode rows, %lld prompt rows, at most %lld at once",
            (long long)st.finished, (long long)st.cancelled, (long long)st.steps, (long long)st.decode_rows, (long long)st.prefill_rows,
            (long long)st.max_live);
    return 0;
}
