/* kdstep tokenize: encode stdin with a Hugging Face tokenizer.json and print JSON. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kdstep/tokenizer.h"

static const char USAGE[] =
    "usage: kdstep tokenize --tokenizer PATH [--offsets] [--add-special-tokens] [--lines | --json-lines]\n"
    "\n"
    "Reads stdin and prints one JSON object per input: {\"ids\": [...], \"offsets\": [[s, e], ...]}.\n"
    "  --tokenizer PATH      tokenizer.json, or a folder holding one\n"
    "  --offsets             also print each token's byte range [start, end) in the input\n"
    "  --add-special-tokens  apply the post-processor's template (e.g. Llama 3's BOS)\n"
    "  --lines               each line of stdin (without its newline) is one input\n"
    "  --json-lines          each line of stdin is a JSON string, decoded, as one input\n"
    "Without --lines/--json-lines all of stdin is one input.\n";

static void put_int(FILE *f, long v) {
    char b[24];
    int n = 0;
    unsigned long u = v < 0 ? (unsigned long)(-v) : (unsigned long)v;
    do {
        b[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) putc_unlocked('-', f);
    while (n) putc_unlocked(b[--n], f);
}

static int encode_one(const kd_tokenizer *tok, const char *s, size_t n, int offsets, int special, kd_encoding *enc,
                      kd_error *err) {
    if (kd_tokenizer_encode(tok, s, n, special, enc, err)) return -1;
    fputs("{\"ids\": [", stdout);
    for (size_t k = 0; k < enc->count; k++) {
        if (k) fputs(", ", stdout);
        put_int(stdout, enc->ids[k]);
    }
    putc_unlocked(']', stdout);
    if (offsets) {
        fputs(", \"offsets\": [", stdout);
        for (size_t k = 0; k < enc->count; k++) {
            if (k) fputs(", ", stdout);
            putc_unlocked('[', stdout);
            put_int(stdout, enc->offsets[k][0]);
            fputs(", ", stdout);
            put_int(stdout, enc->offsets[k][1]);
            putc_unlocked(']', stdout);
        }
        putc_unlocked(']', stdout);
    }
    fputs("}\n", stdout);
    return 0;
}

int kd_cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {{"tokenizer", required_argument, 0, 't'},
                                         {"offsets", no_argument, 0, 'o'},
                                         {"add-special-tokens", no_argument, 0, 's'},
                                         {"lines", no_argument, 0, 'l'},
                                         {"json-lines", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *path = NULL;
    int offsets = 0, special = 0, lines = 0, jlines = 0, c;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 't': path = optarg; break;
        case 'o': offsets = 1; break;
        case 's': special = 1; break;
        case 'l': lines = 1; break;
        case 'j': jlines = 1; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "tokenize: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return kd_cli_usage_error(USAGE, "tokenize: unexpected argument '%s'", argv[optind]);
    if (!path) return kd_cli_usage_error(USAGE, "tokenize: --tokenizer PATH is required");
    if (lines && jlines) return kd_cli_usage_error(USAGE, "tokenize: --lines and --json-lines exclude each other");
    kd_error err;
    kd_tokenizer *tok;
    if (kd_tokenizer_open(&tok, path, &err)) return kd_cli_fail(&err);
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            kd_tokenizer_close(tok);
            kd_error_set(&err, KD_ERR_NOMEM, "out of memory reading stdin");
            return kd_cli_fail(&err);
        }
        size_t r = fread(buf + n, 1, cap - n, stdin);
        n += r;
        if (r == 0) break;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    kd_encoding enc = {0};
    int rc = 0;
    if (!lines && !jlines) {
        rc = encode_one(tok, buf, n, offsets, special, &enc, &err);
    } else {
        size_t i = 0, lineno = 0;
        while (i < n && !rc) {
            const char *nl = memchr(buf + i, '\n', n - i);
            size_t e = nl ? (size_t)(nl - buf) : n;
            lineno++;
            if (lines) {
                rc = encode_one(tok, buf + i, e - i, offsets, special, &enc, &err);
            } else if (e > i) {
                json_error_t je;
                json_t *v = json_loadb(buf + i, e - i, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
                if (!v || !json_is_string(v)) {
                    kd_error_set(&err, KD_ERR_PARSE, "stdin:%zu: --json-lines expects one JSON string per line%s%s", lineno,
                                 v ? "" : ": ", v ? "" : je.text);
                    rc = -1;
                } else {
                    rc = encode_one(tok, json_string_value(v), json_string_length(v), offsets, special, &enc, &err);
                }
                json_decref(v);
            }
            i = e + 1;
        }
    }
    free(buf);
    kd_encoding_free(&enc);
    kd_tokenizer_close(tok);
    if (fflush(stdout) != 0 && !rc) {
        kd_error_set(&err, KD_ERR_IO, "writing stdout failed");
        rc = -1;
    }
    return rc ? kd_cli_fail(&err) : 0;
}
