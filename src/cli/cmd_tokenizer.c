/* kdstep tokenizer: `tokenizer train` trains a byte-level BPE (src/text/bpe_train.c);
 * `tokenizer corpus` writes the deterministic synthetic tool-use corpus (src/text/tokenizer_corpus.c). */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kdstep/bpe_train.h"
#include "kdstep/log.h"
#include "kdstep/tokenizer_corpus.h"

static const char USAGE[] =
    "usage: kdstep tokenizer train --vocab-size N [--special-token T]... [--min-frequency F] -o DIR FILE...\n"
    "\n"
    "Trains a byte-level BPE on the text FILEs and writes DIR/tokenizer.json (Hugging Face format,\n"
    "Qwen2's pre-tokenizer) and DIR/tokenizer_config.json (Qwen3's chat_template).\n"
    "  --vocab-size N       total ids, added tokens included\n"
    "  --special-token T    an extra special token, after the defaults (repeatable). The defaults are\n"
    "                       <|endoftext|> <|im_start|> <|im_end|> (special) and <tool_call> </tool_call>\n"
    "                       <tool_response> </tool_response> <think> </think> (added, not special, as in Qwen3)\n"
    "  --min-frequency F    stop merging when the best pair occurs fewer than F times (default 2)\n"
    "  -o, --output DIR     output folder (created)\n"
    "  --quiet              no progress output\n";

static int cmd_train(int argc, char **argv) {
    static const struct option opts[] = {{"vocab-size", required_argument, 0, 'v'},
                                         {"special-token", required_argument, 0, 's'},
                                         {"min-frequency", required_argument, 0, 'm'},
                                         {"output", required_argument, 0, 'o'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL;
    const char *specials[256];
    kd_bpe_train_options o = {.progress = 1, .special_tokens = specials};
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "+o:", opts, NULL)) != -1) {
        switch (c) {
        case 'v':
            o.vocab_size = (int)strtol(optarg, &end, 10);
            if (*end || o.vocab_size <= 0)
                return kd_cli_usage_error(USAGE, "tokenizer train: --vocab-size wants a positive integer, not '%s'",
                                          optarg);
            break;
        case 'm':
            o.min_frequency = (int)strtol(optarg, &end, 10);
            if (*end || o.min_frequency <= 0)
                return kd_cli_usage_error(USAGE,
                                          "tokenizer train: --min-frequency wants a positive integer, not '%s'", optarg);
            break;
        case 's':
            if (o.n_special_tokens == 256) return kd_cli_usage_error(USAGE, "tokenizer train: too many --special-token");
            specials[o.n_special_tokens++] = optarg;
            break;
        case 'o': out = optarg; break;
        case 'q': o.progress = 0; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default:
            return kd_cli_usage_error(USAGE, "tokenizer train: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (!o.vocab_size) return kd_cli_usage_error(USAGE, "tokenizer train: --vocab-size is required");
    if (!out) return kd_cli_usage_error(USAGE, "tokenizer train: -o DIR is required");
    if (optind >= argc) return kd_cli_usage_error(USAGE, "tokenizer train: no training FILE given");
    kd_error err;
    kd_bpe_trainer *t;
    if (kd_bpe_trainer_new(&t, &o, &err)) return kd_cli_fail(&err);
    for (int i = optind; i < argc; i++)
        if (kd_bpe_trainer_add_file(t, argv[i], &err)) {
            kd_bpe_trainer_free(t);
            return kd_cli_fail(&err);
        }
    kd_bpe_train_stats st;
    kd_bpe_trainer_stats(t, &st);
    KD_INFO("bpe: %.1f MB, %zu words (%zu distinct) in %.2f s", (double)st.bytes / 1e6, st.words, st.unique_words,
            st.pretokenize_s);
    if (kd_bpe_trainer_train(t, &err) || kd_bpe_trainer_save(t, out, &err)) {
        kd_bpe_trainer_free(t);
        return kd_cli_fail(&err);
    }
    kd_bpe_trainer_stats(t, &st);
    KD_INFO("bpe: %d merges, %d ids in %.2f s; wrote %s/tokenizer.json", st.merges, st.vocab_size, st.merge_s, out);
    kd_bpe_trainer_free(t);
    return 0;
}

static const char CORPUS_USAGE[] =
    "usage: kdstep tokenizer corpus [--tools FILE] [--mb N] [--seed S] -o FILE\n"
    "\n"
    "Writes a deterministic synthetic corpus for `tokenizer train`: tool-use conversations over the\n"
    "tools in FILE rendered in the chat template, English prose, code, JSON and a dozen scripts.\n"
    "  --tools FILE    OpenAI tools array (default: none, prose only)\n"
    "  --mb N          size in megabytes (default 8)\n"
    "  --seed S        RNG seed (default 1)\n"
    "  -o, --output F  output file (- for stdout)\n";

static int cmd_corpus(int argc, char **argv) {
    static const struct option opts[] = {{"tools", required_argument, 0, 't'}, {"mb", required_argument, 0, 'm'},
                                         {"seed", required_argument, 0, 's'},  {"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *tools_path = NULL, *out = NULL;
    double mb = 8;
    unsigned long long seed = 1;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "+o:", opts, NULL)) != -1) {
        switch (c) {
        case 't': tools_path = optarg; break;
        case 'm':
            mb = strtod(optarg, &end);
            if (*end || !(mb > 0)) return kd_cli_usage_error(CORPUS_USAGE, "tokenizer corpus: bad --mb '%s'", optarg);
            break;
        case 's':
            seed = strtoull(optarg, &end, 10);
            if (*end) return kd_cli_usage_error(CORPUS_USAGE, "tokenizer corpus: bad --seed '%s'", optarg);
            break;
        case 'o': out = optarg; break;
        case 'h': fputs(CORPUS_USAGE, stdout); return 0;
        default:
            return kd_cli_usage_error(CORPUS_USAGE, "tokenizer corpus: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return kd_cli_usage_error(CORPUS_USAGE, "tokenizer corpus: unexpected argument '%s'", argv[optind]);
    if (!out) return kd_cli_usage_error(CORPUS_USAGE, "tokenizer corpus: -o FILE is required");
    kd_error err;
    json_t *tools = NULL;
    if (tools_path) {
        json_error_t je;
        tools = json_load_file(tools_path, 0, &je);
        if (!tools) {
            kd_error_set(&err, KD_ERR_PARSE, "%s:%d:%d: %s", tools_path, je.line, je.column, je.text);
            return kd_cli_fail(&err);
        }
    }
    int to_stdout = !strcmp(out, "-");
    FILE *f = to_stdout ? stdout : fopen(out, "wb");
    if (!f) {
        kd_error_errno(&err, errno, "cannot write %s", out);
        json_decref(tools);
        return kd_cli_fail(&err);
    }
    int rc = kd_tokenizer_corpus_write(f, tools, (size_t)(mb * 1e6), seed, &err);
    if ((to_stdout ? fflush(f) : fclose(f)) && !rc) rc = kd_error_errno(&err, errno, "cannot write %s", out);
    json_decref(tools);
    return rc ? kd_cli_fail(&err) : 0;
}

static const char TOP_USAGE[] = "usage: kdstep tokenizer train|corpus ... (see kdstep tokenizer train --help)\n";

int kd_cmd_tokenizer(int argc, char **argv) {
    if (argc < 2) return kd_cli_usage_error(TOP_USAGE, "tokenizer: missing subcommand (train or corpus)");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(TOP_USAGE, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "corpus")) return cmd_corpus(argc - 1, argv + 1);
    return kd_cli_usage_error(TOP_USAGE, "tokenizer: unknown subcommand '%s'", argv[1]);
}
