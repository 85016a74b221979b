/* kdstep prompts: `synth` writes a synthetic prompt set over a registry; `check` reads a prompt set
 * and reports the lines that would go to failures.jsonl. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kdstep/prompts.h"
#include "kdstep/registry.h"
#include "kdstep/synth.h"

static const char USAGE[] =
    "usage: kdstep prompts synth --tools FILE -n N [--seed S] [--tools-per-prompt MIN-MAX]\n"
    "                           [--rename-tools PCT] -o FILE\n"
    "       kdstep prompts check FILE\n"
    "\n"
    "synth  writes N prompts (JSON Lines) that call the registry's tools: varied phrasings and argument\n"
    "       values, ~10% needing no tool, ~10% needing two. Each record carries its intended calls in\n"
    "       metadata.tool_calls. The same --seed gives the same file.\n"
    "         --tools FILE   the registry (default configs/tools.json)\n"
    "         -n N           how many prompts\n"
    "         --seed S       RNG seed (default 1)\n"
    "         --tools-per-prompt MIN-MAX\n"
    "                        each prompt carries its own \"tools\": MIN..MAX tools of the registry (the\n"
    "                        pool, e.g. configs/tool_pool.train.json): the one(s) it needs plus\n"
    "                        distractors; ~10% small talk, ~10% ask for a tool that is not offered\n"
    "         --rename-tools PCT\n"
    "                        with --tools-per-prompt: in about PCT% of the prompts every tool gets a\n"
    "                        made-up name (pieces of other pool names), so a student trained on them\n"
    "                        must read names from the prompt's tools instead of recalling them\n"
    "         -o FILE        output file, '-' for standard output (written atomically)\n"
    "check  reads a prompt set (prompt / messages / BFCL question lines) and prints one JSON line per bad\n"
    "       line (what generate writes to failures.jsonl), then a summary; exit 1 when any line is bad.\n";

static int parse_i64(const char *s, int64_t *v) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || *end || end == s) return -1;
    *v = x;
    return 0;
}

/* The largest synthetic set: 10^8 prompts is about 25 GB; past that a typo (-n 99999999999999) would
 * fill the disk. Larger sets are several runs with different --seed. */
#define KD_SYNTH_MAX 100000000LL

/* The temporary file being written, removed when SIGINT/SIGTERM stops the run (unlink is
 * async-signal-safe); then the signal's default action. */
static char g_tmp[4200];
static void on_stop(int sig) {
    if (g_tmp[0]) unlink(g_tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int cmd_synth(int argc, char **argv) {
    static const struct option opts[] = {{"tools", required_argument, 0, 't'}, {"seed", required_argument, 0, 's'},
                                         {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
                                         {"tools-per-prompt", required_argument, 0, 'p'},
                                         {"rename-tools", required_argument, 0, 'r'},
                                         {0, 0, 0, 0}};
    const char *tools = "configs/tools.json", *out = NULL;
    int64_t n = -1, seed = 1;
    kd_synth_options so = {0, 0, 0};
    int c;
    while ((c = getopt_long(argc, argv, "+n:o:", opts, NULL)) != -1) {
        switch (c) {
        case 't': tools = optarg; break;
        case 'n':
            if (parse_i64(optarg, &n) || n < 0)
                return kd_cli_usage_error(USAGE, "prompts synth: -n needs a count >= 0, got '%s'", optarg);
            if (n > KD_SYNTH_MAX)
                return kd_cli_usage_error(USAGE, "prompts synth: -n %s is more than the limit of %lld prompts (about 25 GB); "
                                          "make larger sets as several files with different --seed", optarg, KD_SYNTH_MAX);
            break;
        case 's':
            if (parse_i64(optarg, &seed)) return kd_cli_usage_error(USAGE, "prompts synth: --seed needs an integer, got '%s'", optarg);
            break;
        case 'o': out = optarg; break;
        case 'p': {
            char tail = 0;
            int m = sscanf(optarg, "%d-%d%c", &so.tools_min, &so.tools_max, &tail);
            if (m == 1) so.tools_max = so.tools_min;
            if ((m != 1 && m != 2) || so.tools_min < 1 || so.tools_max < so.tools_min || so.tools_max > 64)
                return kd_cli_usage_error(USAGE, "prompts synth: --tools-per-prompt wants MIN-MAX with 1 <= MIN <= MAX <= 64, got '%s'",
                                          optarg);
            break;
        }
        case 'r': {
            int64_t v;
            if (parse_i64(optarg, &v) || v < 0 || v > 100)
                return kd_cli_usage_error(USAGE, "prompts synth: --rename-tools wants a share 0..100, got '%s'", optarg);
            so.rename_pct = (int)v;
            break;
        }
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "prompts synth: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return kd_cli_usage_error(USAGE, "prompts synth: unexpected argument '%s'", argv[optind]);
    if (n < 0) return kd_cli_usage_error(USAGE, "prompts synth: -n N is required");
    if (!out) return kd_cli_usage_error(USAGE, "prompts synth: -o FILE is required");
    if (so.rename_pct && !so.tools_max)
        return kd_cli_usage_error(USAGE, "prompts synth: --rename-tools needs --tools-per-prompt (per-prompt tool sets)");
    kd_registry *reg = NULL;
    kd_error err;
    if (kd_registry_open(&reg, &err) || kd_registry_load_file(reg, tools, &err)) {
        kd_registry_close(reg);
        return kd_cli_fail(&err);
    }
    char tmp[4200];
    FILE *f = stdout;
    if (strcmp(out, "-") != 0) {
        snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid());
        memcpy(g_tmp, tmp, sizeof g_tmp);
        signal(SIGINT, on_stop);
        signal(SIGTERM, on_stop);
        f = fopen(tmp, "w");
        if (!f) {
            kd_error_errno(&err, errno, "%s: cannot create", out);
            kd_registry_close(reg);
            return kd_cli_fail(&err);
        }
    }
    int rc = kd_synth_write_opts(reg, &so, (uint64_t)seed, n, f, &err);
    kd_registry_close(reg);
    if (f != stdout) {
        if (fclose(f) != 0 && !rc) rc = kd_error_errno(&err, errno, "%s: write failed", out);
        if (!rc && rename(tmp, out) != 0) rc = kd_error_errno(&err, errno, "cannot rename %s to %s", tmp, out);
        if (rc) unlink(tmp);
        g_tmp[0] = 0;
    }
    if (rc) return kd_cli_fail(&err);
    if (f != stdout) fprintf(stderr, "wrote %" PRId64 " prompts to %s (seed %" PRId64 ")\n", n, out, seed);
    return 0;
}

static int cmd_check(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(USAGE, stdout);
            return 0;
        }
        return kd_cli_usage_error(USAGE, "prompts check: unknown or incomplete flag '%s'", argv[optind - 1]);
    }
    if (optind != argc - 1) return kd_cli_usage_error(USAGE, "prompts check: needs exactly one FILE");
    const char *path = argv[optind];
    kd_prompt_reader *r;
    kd_error err;
    if (kd_prompts_open(&r, path, &err)) return kd_cli_fail(&err);
    kd_prompt p;
    int64_t good = 0, bad = 0;
    int rc;
    while ((rc = kd_prompts_next(r, &p, &err)) == 1) {
        if (p.status) {
            char *s = kd_prompt_failure_json(&p, path);
            printf("%s\n", s ? s : "");
            free(s);
            bad++;
        } else {
            good++;
        }
        kd_prompt_clear(&p);
    }
    kd_prompts_close(r);
    if (rc < 0) return kd_cli_fail(&err);
    fprintf(stderr, "%s: %" PRId64 " prompts, %" PRId64 " bad lines\n", path, good, bad);
    return bad ? 1 : 0;
}

int kd_cmd_prompts(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(USAGE, stdout);
            return 0;
        }
        return kd_cli_usage_error(USAGE, "prompts: unknown or incomplete flag '%s'", argv[optind - 1]);
    }
    if (optind >= argc) return kd_cli_usage_error(USAGE, "prompts: missing subcommand (synth or check)");
    const char *sub = argv[optind];
    int sargc = argc - optind;
    char **sargv = argv + optind;
    optind = 1; /* getopt restarts on the subcommand's own argv */
    if (strcmp(sub, "synth") == 0) return cmd_synth(sargc, sargv);
    if (strcmp(sub, "check") == 0) return cmd_check(sargc, sargv);
    return kd_cli_usage_error(USAGE, "prompts: unknown subcommand '%s' (synth or check)", sub);
}
