/* kdstep teacher serve: run the stub teacher as an OpenAI-compatible server with fault injection. */
#include <arpa/inet.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "kdstep/log.h"
#include "kdstep/registry.h"
#include "kdstep/server.h"
#include "kdstep/teacher.h"

static const char USAGE[] =
    "usage: kdstep teacher serve [--port P] [--host ADDR] [options]\n"
    "       kdstep teacher answer --prompts FILE -o PREDS.jsonl   (the stub's answers as predictions; --help)\n"
    "\n"
    "Serves the built-in stub teacher over the OpenAI API: POST /v1/chat/completions (tools, tool_calls,\n"
    "logprobs, usage), POST /v1/completions with vLLM's prompt_logprobs, GET /v1/models, GET /stats.\n"
    "  --port P             port (default 8000; 0 picks a free one, printed on stdout)\n"
    "  --host ADDR          address to bind (default 127.0.0.1, loopback only); another address needs\n"
    "                       --api-key or --insecure\n"
    "  --api-key KEY        require \"Authorization: Bearer KEY\" on every request (401 otherwise)\n"
    "  --insecure           allow a non-loopback --host without --api-key (anyone who can reach it may use it)\n"
    "  --tools FILE         registry used when a request carries no tools (default configs/tools.json)\n"
    "  --tokenizer PATH     student tokenizer.json (or folder): logprobs over its tokens (default: one per byte)\n"
    "  --served-model-name NAMES  the model names served, comma-separated (default: teacher.model, stub-teacher);\n"
    "                       a request naming another model gets 404 model_not_found, as from vLLM\n"
    "  --config FILE        YAML config (teacher.* keys: seed, tool_call_format, malformed_rate, temperature)\n"
    "  --set K=V            override a config key (repeatable)\n"
    "  --latency-ms MS      answer every request MS after it came in\n"
    "  --fail-rate R        share of requests answered 500\n"
    "  --rate-limit R       share of requests answered 429 with Retry-After\n"
    "  --retry-after S      Retry-After seconds sent with a 429 (default 1)\n"
    "  --malformed-rate R   share answered 200 with a broken JSON body\n"
    "  --truncate-rate R    share whose body is cut off mid-transfer\n"
    "  --drop-rate R        share whose connection is closed without an answer\n"
    "  --stall-rate R       share that never get an answer\n"
    "  --duration S         stop after S seconds (default: run until SIGINT/SIGTERM)\n"
    "Fault counts are logged every 10 s and at exit.\n";

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int parse_rate(const char *flag, const char *v, double *out) {
    char *end;
    double x = strtod(v, &end);
    if (*end || x < 0 || x > 1) return kd_cli_usage_error(USAGE, "teacher serve: %s wants a rate between 0 and 1, got '%s'", flag, v);
    *out = x;
    return 0;
}

static int cmd_serve(int argc, char **argv) {
    static const struct option opts[] = {
        {"port", required_argument, 0, 'p'},          {"host", required_argument, 0, 'H'},
        {"tools", required_argument, 0, 't'},         {"config", required_argument, 0, 'c'},
        {"set", required_argument, 0, 's'},           {"latency-ms", required_argument, 0, 'l'},
        {"fail-rate", required_argument, 0, 'f'},     {"rate-limit", required_argument, 0, 'r'},
        {"retry-after", required_argument, 0, 'R'},   {"malformed-rate", required_argument, 0, 'm'},
        {"truncate-rate", required_argument, 0, 'T'}, {"drop-rate", required_argument, 0, 'd'},
        {"stall-rate", required_argument, 0, 'S'},    {"duration", required_argument, 0, 'D'},
        {"echo-auth-for-tests", no_argument, 0, 'E'}, {"api-key", required_argument, 0, 'A'}, {"insecure", no_argument, 0, 'I'}, {"tokenizer", required_argument, 0, 'k'}, {"help", no_argument, 0, 'h'},
        {"served-model-name", required_argument, 0, 'M'},
        {0, 0, 0, 0}};
    kd_server_options so;
    memset(&so, 0, sizeof so);
    so.port = 8000;
    so.retry_after_s = 1;
    const char *tools = "configs/tools.json", *cfg_path = NULL, *tok_path = NULL, *names = NULL;
    char *sets[64];
    int nsets = 0, c, rc;
    double duration = 0;
    int insecure = 0;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'p':
            so.port = (int)strtol(optarg, &end, 10);
            if (*end || so.port < 0 || so.port > 65535) return kd_cli_usage_error(USAGE, "teacher serve: bad --port '%s'", optarg);
            break;
        case 'H': so.host = optarg; break;
        case 't': tools = optarg; break;
        case 'c': cfg_path = optarg; break;
        case 's':
            if (nsets == 64) return kd_cli_usage_error(USAGE, "teacher serve: too many --set flags");
            sets[nsets++] = optarg;
            break;
        case 'l':
            so.latency_ms = strtod(optarg, &end);
            if (*end || so.latency_ms < 0) return kd_cli_usage_error(USAGE, "teacher serve: bad --latency-ms '%s'", optarg);
            break;
        case 'f': if ((rc = parse_rate("--fail-rate", optarg, &so.fail_rate))) return rc; break;
        case 'r': if ((rc = parse_rate("--rate-limit", optarg, &so.rate_limit))) return rc; break;
        case 'm': if ((rc = parse_rate("--malformed-rate", optarg, &so.malformed_rate))) return rc; break;
        case 'T': if ((rc = parse_rate("--truncate-rate", optarg, &so.truncate_rate))) return rc; break;
        case 'd': if ((rc = parse_rate("--drop-rate", optarg, &so.drop_rate))) return rc; break;
        case 'S': if ((rc = parse_rate("--stall-rate", optarg, &so.stall_rate))) return rc; break;
        case 'R':
            so.retry_after_s = (int)strtol(optarg, &end, 10);
            if (*end || so.retry_after_s < 0) return kd_cli_usage_error(USAGE, "teacher serve: bad --retry-after '%s'", optarg);
            break;
        case 'D':
            duration = strtod(optarg, &end);
            if (*end || duration < 0) return kd_cli_usage_error(USAGE, "teacher serve: bad --duration '%s'", optarg);
            break;
        case 'E': so.echo_auth = 1; break;
        case 'A': so.api_key = optarg; break;
        case 'I': insecure = 1; break;
        case 'k': tok_path = optarg; break;
        case 'M': names = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "teacher serve: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return kd_cli_usage_error(USAGE, "teacher serve: unexpected argument '%s'", argv[optind]);
    for (const char *p = so.api_key; p && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F)
            return kd_cli_usage_error(USAGE, "teacher serve: --api-key holds a control character; give one line of printable characters");
    if (so.api_key && !so.api_key[0]) return kd_cli_usage_error(USAGE, "teacher serve: --api-key is empty");
    struct in_addr a4;
    int loopback = !so.host || strncmp(so.host, "127.", 4) == 0;
    if (!loopback && inet_pton(AF_INET, so.host, &a4) == 1) { /* not an address: the server start says so */
        if (!so.api_key && !insecure)
            return kd_cli_usage_error(USAGE,
                                      "teacher serve: --host %s is reachable from other machines; give --api-key KEY so that only "
                                      "clients with the key are answered, or --insecure to serve anyone who can reach it",
                                      so.host);
        KD_WARN("teacher serve: listening on %s, not loopback: %s", so.host,
                so.api_key ? "requests without the API key get 401" : "--insecure: anyone who can reach it may use it");
    }
    kd_config cfg;
    kd_error err;
    kd_registry *reg = NULL;
    kd_stub_teacher *stub = NULL;
    kd_server *srv = NULL;
    kd_tokenizer *tok = NULL;
    if (kd_cli_load_config(&cfg, cfg_path, sets, nsets, &err) || kd_registry_open(&reg, &err) ||
        kd_registry_load_file(reg, tools, &err) || (tok_path && kd_tokenizer_open(&tok, tok_path, &err))) {
        kd_registry_close(reg);
        kd_config_free(&cfg);
        return kd_cli_fail(&err);
    }
    kd_stub_options o = {0};
    o.malformed_rate = cfg.teacher.malformed_rate;
    o.temperature = cfg.teacher.temperature;
    o.seed = cfg.teacher.seed;
    so.seed = cfg.teacher.seed;
    if (kd_tool_format_from_name(cfg.teacher.tool_call_format, &o.tool_call_format, &err) ||
        kd_stub_open(&stub, &o, reg, tok, &err) || kd_server_start(&srv, &so, stub, names ? names : cfg.teacher.model, &err)) {
        kd_stub_close(stub);
        kd_tokenizer_close(tok);
        kd_registry_close(reg);
        kd_config_free(&cfg);
        return kd_cli_fail(&err);
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    printf("kdstep teacher: listening on http://%s:%d\n", so.host ? so.host : "127.0.0.1", kd_server_port(srv));
    fflush(stdout);
    KD_INFO("teacher serve: stub teacher on %s:%d (latency %.0f ms, faults fail=%.2f 429=%.2f malformed=%.2f truncate=%.2f "
            "drop=%.2f stall=%.2f)",
            so.host ? so.host : "127.0.0.1", kd_server_port(srv), so.latency_ms, so.fail_rate, so.rate_limit,
            so.malformed_rate, so.truncate_rate, so.drop_rate, so.stall_rate);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double last_log = 0;
    char line[512];
    kd_server_counts k;
    while (!g_stop) {
        usleep(50000);
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el = (double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) * 1e-9;
        if (duration > 0 && el >= duration) break;
        if (el - last_log >= 10) {
            last_log = el;
            kd_server_get_counts(srv, &k);
            kd_server_format_counts(&k, line, sizeof line);
            KD_INFO("teacher serve: %s", line);
        }
    }
    kd_server_get_counts(srv, &k);
    kd_server_format_counts(&k, line, sizeof line);
    kd_server_stop(srv);
    KD_INFO("teacher serve: stopped; %s", line);
    kd_stub_close(stub);
    kd_tokenizer_close(tok);
    kd_registry_close(reg);
    kd_config_free(&cfg);
    return 0;
}

int kd_cmd_teacher(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc < 2) return kd_cli_usage_error(USAGE, "teacher: missing subcommand (serve)");
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(argv[1], "serve") == 0) return cmd_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "answer") == 0) return kd_cmd_teacher_answer(argc - 1, argv + 1);
    return kd_cli_usage_error(USAGE, "teacher: unknown subcommand '%s' (known: serve, answer)", argv[1]);
}
