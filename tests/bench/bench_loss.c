/* Loss driver for the PyTorch reference test and the grammar-term benchmark.
 *
 *   bench_loss ref DIR     write random cases (inputs + our losses and gradients) to DIR for
 *                          tests/reference/loss_ref.py; DIR/cases.json lists them
 *   bench_loss states GLAIVE.json [V]
 *                          distinct automaton states over real tool calls (cache misses to expect)
 *   bench_loss grammar [V B T json_share steps]
 *                          time the grammar term on a synthetic vocabulary and batch; prints figures
 *                          and one JSON line
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdstep/hash.h"
#include "kdstep/jsonprefix.h"
#include "kdstep/loss.h"

static uint64_t rng = 42;
static double unif(void) { return (double)(kd_splitmix64(&rng) >> 11) * (1.0 / 9007199254740992.0); }
static double normal(void) {
    double u = unif(), v = unif();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

static int write_bin(const char *dir, const char *name, const void *p, size_t bytes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes) {
        fprintf(stderr, "bench_loss: cannot write %s\n", path);
        if (f) fclose(f);
        return 1;
    }
    return fclose(f) != 0;
}

static void hexenc(const char *s, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", (unsigned char)s[i]);
    out[2 * n] = '\0';
}

typedef struct batch {
    int B, T, V;
    float *logits, *dlogits;
    int32_t *ids;
    uint8_t *mask;
} batch;

static void random_batch(batch *b, int B, int T, int V, double spread) {
    b->B = B, b->T = T, b->V = V;
    size_t N = (size_t)B * T;
    b->logits = malloc(N * V * sizeof(float));
    b->dlogits = calloc(N * V, sizeof(float));
    b->ids = malloc(N * sizeof(int32_t));
    b->mask = malloc(N);
    for (size_t i = 0; i < N * V; i++) b->logits[i] = (float)(spread * normal());
    for (size_t i = 0; i < N; i++) {
        b->ids[i] = (int32_t)(kd_splitmix64(&rng) % (uint64_t)V);
        b->mask[i] = unif() < 0.6;
    }
}

static void free_batch(batch *b) {
    free(b->logits);
    free(b->dlogits);
    free(b->ids);
    free(b->mask);
}

static json_t *case_header(const char *name, const char *kind, const batch *b, double loss, int64_t count,
                           float scale) {
    return json_pack("{s:s,s:s,s:i,s:i,s:i,s:f,s:I,s:f}", "name", name, "kind", kind, "B", b->B, "T", b->T, "V",
                     b->V, "loss_sum", loss, "count", (json_int_t)count, "grad_scale", (double)scale);
}

static int dump_batch(const char *dir, const char *name, const batch *b) {
    size_t N = (size_t)b->B * b->T;
    char f[256];
    int rc = 0;
    snprintf(f, sizeof f, "%s_logits.bin", name);
    rc |= write_bin(dir, f, b->logits, N * b->V * sizeof(float));
    snprintf(f, sizeof f, "%s_dlogits.bin", name);
    rc |= write_bin(dir, f, b->dlogits, N * b->V * sizeof(float));
    snprintf(f, sizeof f, "%s_ids.bin", name);
    rc |= write_bin(dir, f, b->ids, N * sizeof(int32_t));
    snprintf(f, sizeof f, "%s_mask.bin", name);
    rc |= write_bin(dir, f, b->mask, N);
    return rc;
}

static int ce_case(const char *dir, json_t *cases, const char *name, double weight) {
    batch b;
    random_batch(&b, 3, 9, 50, 3.0);
    int64_t n = kd_loss_count(b.mask, b.B, b.T);
    float scale = (float)(weight / (double)n);
    double loss;
    int64_t c = kd_loss_ce(b.logits, b.ids, b.mask, b.B, b.T, b.V, scale, b.dlogits, &loss);
    if (c != n) return 1;
    json_array_append_new(cases, case_header(name, "ce", &b, loss, c, scale));
    int rc = dump_batch(dir, name, &b);
    free_batch(&b);
    return rc;
}

static int kd_case(const char *dir, json_t *cases, const char *name, kd_divergence div, float temp, float beta) {
    batch b;
    random_batch(&b, 2, 11, 40, 2.0);
    const int K = 6;
    size_t N = (size_t)b.B * b.T;
    int32_t *tid = malloc(N * K * sizeof *tid);
    float *tlp = malloc(N * K * sizeof *tlp);
    float *tail = malloc(N * sizeof *tail);
    uint8_t *has = malloc(N);
    double *tz = malloc((size_t)b.V * sizeof *tz);
    for (size_t j = 0; j < N; j++) {
        /* a teacher correlated with the student, top-k by sorting its log-probs */
        double mx = -1e300, s = 0;
        for (int i = 0; i < b.V; i++) {
            tz[i] = 0.7 * b.logits[(j > 0 ? j - 1 : 0) * b.V + i] + 1.5 * normal();
            mx = fmax(mx, tz[i]);
        }
        for (int i = 0; i < b.V; i++) s += exp(tz[i] - mx);
        double top_mass = 0;
        uint8_t used[64] = {0};
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int i = 0; i < b.V; i++)
                if (!used[i] && (best < 0 || tz[i] > tz[best])) best = i;
            used[best] = 1;
            tid[j * K + k] = best;
            tlp[j * K + k] = (float)(tz[best] - mx - log(s));
            top_mass += exp(tz[best] - mx) / s;
        }
        tail[j] = (float)log1p(-top_mass);
        has[j] = unif() < 0.85 && j % 5 != 2;
        if (j % 7 == 3) tid[j * K + K - 1] = -1;       /* a token the student lacks: its mass goes to the tail */
        if (j % 6 == 1) tid[j * K + K - 2] = -1, tlp[j * K + K - 2] = -INFINITY; /* padding */
        if (j % 9 == 4) tid[j * K + 2] = tid[j * K + 1]; /* a repeat: its mass joins the bucket */
        if (j % 13 == 5) tail[j] = -INFINITY;           /* the teacher claims its top-k is everything */
    }
    kd_teacher_topk teacher = {K, tid, tlp, tail, has};
    kd_kd_opts o = {div, temp, beta};
    int64_t n = kd_loss_count(b.mask, b.B, b.T), fb = 0;
    float scale = (float)(1.0 / (double)n);
    double loss;
    int64_t c = kd_loss_kd(b.logits, b.ids, b.mask, b.B, b.T, b.V, &teacher, &o, scale, b.dlogits, &loss, &fb);
    if (c != n || fb == 0) {
        fprintf(stderr, "bench_loss: %s: count %lld of %lld, fallback %lld\n", name, (long long)c, (long long)n,
                (long long)fb);
        return 1;
    }
    json_t *h = case_header(name, "kd", &b, loss, c, scale);
    json_object_set_new(h, "K", json_integer(K));
    json_object_set_new(h, "divergence", json_string(kd_divergence_name(div)));
    json_object_set_new(h, "temperature", json_real(temp));
    json_object_set_new(h, "beta", json_real(beta));
    json_object_set_new(h, "fallback", json_integer(fb));
    json_array_append_new(cases, h);
    int rc = dump_batch(dir, name, &b);
    char f[256];
    snprintf(f, sizeof f, "%s_tid.bin", name);
    rc |= write_bin(dir, f, tid, N * K * sizeof *tid);
    snprintf(f, sizeof f, "%s_tlp.bin", name);
    rc |= write_bin(dir, f, tlp, N * K * sizeof *tlp);
    snprintf(f, sizeof f, "%s_tail.bin", name);
    rc |= write_bin(dir, f, tail, N * sizeof *tail);
    snprintf(f, sizeof f, "%s_has.bin", name);
    rc |= write_bin(dir, f, has, N);
    free(tid), free(tlp), free(tail), free(has), free(tz);
    free_batch(&b);
    return rc;
}

/* Toy vocabulary: structural, multi-byte (split UTF-8), mixed and non-JSON tokens. */
static const char *TOY[] = {"{", "}", "[", "]", ":", ",", "\"", " ", "\n", "{\"", "\":", "\",", "\"}", "}}", "]}",
                            "\":\"", "name", "city", "Paris", "caf", "\xc3", "\xa9", "\xc3\xa9", "\xe2\x82", "\xac",
                            "0", "12", "-", ".", "e", "true", "tr", "ue", "null", "\\", "n", "u", "00e9", "\\u",
                            "<|im_end|>", "", " {\"", "\"}\n", "}<", "x", "1,", ">{\"", "a", "b", "5", "\":[", "],",
                            "\":{\"", "\xf0\x9f", "\x98\x80", "false", "days"};
#define NTOY ((int)(sizeof TOY / sizeof *TOY))

/* Greedy longest-match tokenization over TOY; -1 if a byte cannot be covered. */
static int toy_tokenize(const char *s, int32_t *out, int cap) {
    int n = 0;
    size_t i = 0, len = strlen(s);
    while (i < len) {
        int best = -1;
        size_t bl = 0;
        for (int v = 0; v < NTOY; v++) {
            size_t l = strlen(TOY[v]);
            if (l > bl && l <= len - i && memcmp(s + i, TOY[v], l) == 0) best = v, bl = l;
        }
        if (best < 0 || n == cap) return -1;
        out[n++] = best;
        i += bl;
    }
    return n;
}

static int grammar_case(const char *dir, json_t *cases) {
    /* Each sequence: optional non-JSON tokens, a JSON run (json_mask), then non-JSON tokens. */
    const char *pre[] = {"x", "", "a b", "x"};
    const char *js[] = {
        " {\"name\":\"Paris\",\"days\":12}",
        "{\"city\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\",\"b\":[true,null,-12.5e0]}",
        ">{\"name\":{\"a\":[12,{\"b\":\"\\u00e9\\n\"}]},\"x\":false}",
        "{\"city\":12}<",
    };
    const int B = 4, T = 40;
    batch b;
    random_batch(&b, B, T, NTOY, 2.5);
    memset(b.mask, 0, (size_t)B * T);
    for (int s = 0; s < B; s++) {
        int32_t *ids = b.ids + (size_t)s * T;
        int n0 = toy_tokenize(pre[s], ids, T);
        int n1 = toy_tokenize(js[s], ids + n0, T - n0);
        if (n0 < 0 || n1 < 0 || n0 + n1 + 1 > T) {
            fprintf(stderr, "bench_loss: toy sample %d does not fit\n", s);
            return 1;
        }
        memset(b.mask + (size_t)s * T + n0, 1, (size_t)n1);
        for (int t = n0 + n1; t < T; t++) ids[t] = 39; /* <|im_end|> */
    }
    size_t lens[NTOY];
    for (int v = 0; v < NTOY; v++) lens[v] = strlen(TOY[v]);
    kd_jsongrammar *g;
    kd_error err;
    if (kd_jsongrammar_new(&g, TOY, lens, NTOY, 0, &err) != KD_OK) {
        fprintf(stderr, "bench_loss: %s\n", err.msg);
        return 1;
    }
    int64_t n = kd_loss_count(b.mask, B, T), skipped;
    float scale = (float)(0.3 / (double)n);
    double loss;
    int64_t c = kd_loss_json_grammar(g, b.logits, b.ids, b.mask, B, T, NTOY, scale, b.dlogits, &loss, &skipped);
    json_t *h = case_header("grammar", "grammar", &b, loss, c, scale);
    json_object_set_new(h, "skipped", json_integer(skipped));
    json_t *vocab = json_array();
    for (int v = 0; v < NTOY; v++) {
        char hx[64];
        hexenc(TOY[v], lens[v], hx);
        json_array_append_new(vocab, json_string(hx));
    }
    json_object_set_new(h, "vocab", vocab);
    json_array_append_new(cases, h);
    int rc = dump_batch(dir, "grammar", &b);
    kd_jsongrammar_free(g);
    free_batch(&b);
    return rc || c != n || skipped == 0;
}

static int cmd_ref(const char *dir) {
    json_t *cases = json_array();
    int rc = 0;
    rc |= ce_case(dir, cases, "ce_loss", 1.0);
    rc |= ce_case(dir, cases, "ce_tool", 0.7);
    rc |= ce_case(dir, cases, "ce_json", 0.3);
    rc |= ce_case(dir, cases, "ce_integration", 0.5);
    rc |= kd_case(dir, cases, "kd_forward_t1", KD_DIV_FORWARD_KL, 1.0f, 0.5f);
    rc |= kd_case(dir, cases, "kd_forward_t2", KD_DIV_FORWARD_KL, 2.0f, 0.5f);
    rc |= kd_case(dir, cases, "kd_reverse_t2", KD_DIV_REVERSE_KL, 2.0f, 0.5f);
    rc |= kd_case(dir, cases, "kd_jsd_b03_t15", KD_DIV_JSD, 1.5f, 0.3f);
    rc |= kd_case(dir, cases, "kd_jsd_b09_t1", KD_DIV_JSD, 1.0f, 0.9f);
    rc |= grammar_case(dir, cases);
    char path[4096];
    snprintf(path, sizeof path, "%s/cases.json", dir);
    if (json_dump_file(cases, path, JSON_INDENT(1)) != 0) rc = 1;
    json_decref(cases);
    if (rc) fprintf(stderr, "bench_loss: writing the reference cases failed\n");
    return rc;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A synthetic byte-level vocabulary shaped like a BPE one: all 256 bytes, JSON punctuation merges,
 * words with and without a leading space, numbers, quoted fragments and a few special tokens. */
static char **synth_vocab(int V, size_t *lens) {
    static const char *pieces[] = {"{\"", "\":", "\",", "\"}", "}}", "]}", "\":\"", "\": \"", "\", \"", "\":[", "],",
                                   "\":{\"", "},{\"", "null", "true", "false", "\\n", "\\\"", "\\u", "<|im_end|>",
                                   "<tool_call>", "</tool_call>", "\n\n", "  ", "    "};
    static const char *syll[] = {"na", "me", "ci", "ty", "ar", "gu", "ment", "s", "qu", "ery", "lo", "ca", "tion",
                                 "da", "te", "un", "it", "get", "_", "wea", "ther", "id", "ser", "ch", "to", "ol"};
    char **tok = calloc((size_t)V, sizeof *tok);
    int v = 0;
    for (; v < 256 && v < V; v++) {
        tok[v] = malloc(2);
        tok[v][0] = (char)v;
        lens[v] = 1;
    }
    for (size_t k = 0; k < sizeof pieces / sizeof *pieces && v < V; k++, v++) {
        tok[v] = strdup(pieces[k]);
        lens[v] = strlen(pieces[k]);
    }
    while (v < V) {
        char buf[32];
        int n = 0, kind = (int)(kd_splitmix64(&rng) % 6);
        if (kind == 0) buf[n++] = ' ';
        if (kind == 1) buf[n++] = '"';
        if (kind == 2) n += sprintf(buf + n, "%d", (int)(kd_splitmix64(&rng) % 1000));
        int syl = 1 + (int)(kd_splitmix64(&rng) % 3);
        for (int k = 0; k < syl && kind != 2; k++) n += sprintf(buf + n, "%s", syll[kd_splitmix64(&rng) % 26]);
        if (kind == 3) buf[n++] = '"';
        if (kind == 4) n += sprintf(buf + n, "\":");
        buf[n] = '\0';
        tok[v] = strdup(buf);
        lens[v] = (size_t)n;
        v++;
    }
    return tok;
}

static int cmd_grammar(int V, int B, int T, double share, int steps) {
    size_t *lens = calloc((size_t)V, sizeof *lens);
    char **tok = synth_vocab(V, lens);
    kd_jsongrammar *g;
    kd_error err;
    if (kd_jsongrammar_new(&g, (const char **)tok, lens, V, 0, &err) != KD_OK) {
        fprintf(stderr, "bench_loss: %s\n", err.msg);
        return 1;
    }
    /* Sequences: prose, then a tool-call JSON tokenized with the synthetic vocabulary (single bytes
     * and punctuation merges), about `share` of the positions. */
    size_t N = (size_t)B * T;
    float *logits = malloc(N * V * sizeof *logits), *dlogits = calloc(N * V, sizeof *dlogits);
    int32_t *ids = malloc(N * sizeof *ids);
    uint8_t *mask = calloc(N, 1);
    for (size_t i = 0; i < N * V; i++) logits[i] = (float)(2.0 * normal());
    const char *keys[] = {"city", "query", "location", "date", "unit", "id", "limit", "tags", "options"};
    for (int s = 0; s < B; s++) {
        int json_len = (int)(share * T);
        int start = (T - json_len) / 2;
        for (int t = 0; t < T; t++) ids[(size_t)s * T + t] = 256 + 25 + (int)(kd_splitmix64(&rng) % (uint64_t)(V - 281));
        /* build JSON text long enough, then encode bytewise with the punctuation merges */
        char text[8192];
        int n = sprintf(text, "{\"name\": \"get_weather_%d\", \"arguments\": {", s);
        for (int k = 0; n < (int)sizeof text - 200; k++)
            n += sprintf(text + n, "%s\"%s_%d\": %s", k ? ", " : "", keys[k % 9], k,
                         k % 3 == 0 ? "[1, 2.5, {\"deep\": null}]" : k % 3 == 1 ? "\"some text \\\"quoted\\\"\"" : "true");
        int t = start;
        for (int i = 0; i < n && t < start + json_len; t++) {
            int best = (unsigned char)text[i];
            size_t bl = 1;
            for (int v = 256; v < 256 + 25 && v < V; v++)
                if (lens[v] > bl && memcmp(text + i, tok[v], lens[v]) == 0) best = v, bl = lens[v];
            ids[(size_t)s * T + t] = best;
            mask[(size_t)s * T + t] = 1;
            i += (int)bl;
        }
    }
    int64_t npos = kd_loss_count(mask, B, T);
    /* the trainer reuses its dlogits buffer: touch it first so "cold" measures the empty cache, not the
     * kernel handing out fresh pages */
    memset(dlogits, 0, N * V * sizeof *dlogits);
    double loss = 0, t_first = 0, t_rest = 0;
    int64_t skipped = 0;
    for (int it = 0; it < steps; it++) {
        double t0 = now_s();
        kd_loss_json_grammar(g, logits, ids, mask, B, T, V, (float)(1.0 / npos), dlogits, &loss, &skipped);
        double dt = now_s() - t0;
        if (it == 0)
            t_first = dt;
        else
            t_rest += dt;
    }
    double steady = steps > 1 ? t_rest / (steps - 1) : t_first;
    /* peer in the same run: one CE pass over the same positions (softmax over V per position) */
    double tc0 = now_s(), ce;
    for (int it = 0; it < steps; it++) kd_loss_ce(logits, ids, mask, B, T, V, (float)(1.0 / npos), dlogits, &ce);
    double ce_s = (now_s() - tc0) / steps;
    kd_jsongrammar_stats st;
    kd_jsongrammar_get_stats(g, &st);
    printf("grammar term: V=%d batch %dx%d, %lld JSON positions (%.1f%%), %lld skipped\n", V, B, T,
           (long long)npos, 100.0 * npos / (double)N, (long long)skipped);
    printf("  first step (cold cache): %.2f ms, of which building %lld validity sets: %.2f ms\n", 1e3 * t_first,
           (long long)st.misses, 1e3 * st.build_s);
    printf("  steady step (warm cache): %.2f ms = %.2f us per JSON position\n", 1e3 * steady, 1e6 * steady / npos);
    printf("  masked CE over the same positions (peer): %.2f ms; grammar/CE = %.2f\n", 1e3 * ce_s, steady / ce_s);
    printf("  mean grammar loss %.4f\n", loss / npos);
    printf("{\"vocab\": %d, \"batch\": \"%dx%d\", \"json_positions\": %lld, \"cold_step_ms\": %.3f, "
           "\"steady_step_ms\": %.3f, \"us_per_position\": %.3f, \"sets_built\": %lld, \"set_build_ms\": %.3f, "
           "\"ce_step_ms\": %.3f, \"grammar_over_ce\": %.3f}\n",
           V, B, T, (long long)npos, 1e3 * t_first, 1e3 * steady, 1e6 * steady / npos, (long long)st.misses,
           1e3 * st.build_s, 1e3 * ce_s, steady / ce_s);
    int ok = npos > 0 && isfinite(loss) && loss > 0;
    kd_jsongrammar_free(g);
    for (int v = 0; v < V; v++) free(tok[v]);
    free(tok), free(lens), free(logits), free(dlogits), free(ids), free(mask);
    return ok ? 0 : 1;
}

/* Distinct automaton states that real tool calls visit: every glaive function_call JSON, tokenized with
 * the synthetic vocabulary (punctuation merges, byte fallback) and, as an upper bound, byte by byte. */
static int cmd_states(const char *path, int V) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root || !json_is_array(root)) {
        fprintf(stderr, "bench_loss: %s: %s\n", path, je.text);
        return 1;
    }
    size_t *lens = calloc((size_t)V, sizeof *lens);
    char **tok = synth_vocab(V, lens);
    kd_jsongrammar *g, *gb;
    kd_error err;
    const char *one_byte[1] = {""};
    size_t zero[1] = {0};
    if (kd_jsongrammar_new(&g, (const char **)tok, lens, V, 0, &err) != KD_OK ||
        kd_jsongrammar_new(&gb, one_byte, zero, 1, 1 << 16, &err) != KD_OK) {
        fprintf(stderr, "bench_loss: %s\n", err.msg);
        return 1;
    }
    int64_t calls = 0, positions = 0, bytes = 0, invalid = 0;
    size_t i;
    json_t *conv;
    json_array_foreach(root, i, conv) {
        size_t k;
        json_t *turn;
        json_array_foreach(json_object_get(conv, "conversations"), k, turn) {
            if (strcmp(json_string_value(json_object_get(turn, "from")), "function_call") != 0) continue;
            const char *text = json_string_value(json_object_get(turn, "value"));
            size_t n = strlen(text);
            calls++;
            kd_jsonprefix st;
            kd_jsonprefix_init(&st);
            for (size_t b = 0; b < n && kd_jsonprefix_valid(&st); b++) { /* byte-level states */
                kd_jsongrammar_valid_set(gb, &st);
                kd_jsonprefix_feed(&st, text + b, 1);
                bytes++;
            }
            kd_jsonprefix_init(&st);
            for (size_t b = 0; b < n && kd_jsonprefix_valid(&st);) { /* token-level, the real lookups */
                int best = (unsigned char)text[b];
                size_t bl = 1;
                for (int v = 256; v < 256 + 25 && v < V; v++)
                    if (lens[v] > bl && lens[v] <= n - b && memcmp(text + b, tok[v], lens[v]) == 0) best = v, bl = lens[v];
                kd_jsongrammar_valid_set(g, &st);
                kd_jsongrammar_feed_token(g, &st, best);
                positions++;
                b += bl;
            }
            invalid += !kd_jsonprefix_valid(&st);
        }
    }
    kd_jsongrammar_stats st_tok, st_byte;
    kd_jsongrammar_get_stats(g, &st_tok);
    kd_jsongrammar_get_stats(gb, &st_byte);
    printf("glaive function calls: %lld (%lld not valid JSON), %lld token positions, %lld bytes\n", (long long)calls,
           (long long)invalid, (long long)positions, (long long)bytes);
    printf("  distinct states at token boundaries: %lld (sets built in %.2f ms, %.1f us each, V=%d)\n",
           (long long)st_tok.misses, 1e3 * st_tok.build_s, 1e6 * st_tok.build_s / (double)st_tok.misses, V);
    printf("  distinct states at byte boundaries (upper bound): %lld\n", (long long)st_byte.misses);
    printf("{\"calls\": %lld, \"token_positions\": %lld, \"token_states\": %lld, \"byte_states\": %lld, "
           "\"us_per_new_state\": %.1f}\n",
           (long long)calls, (long long)positions, (long long)st_tok.misses, (long long)st_byte.misses,
           1e6 * st_tok.build_s / (double)st_tok.misses);
    kd_jsongrammar_free(g);
    kd_jsongrammar_free(gb);
    for (int v = 0; v < V; v++) free(tok[v]);
    free(tok), free(lens);
    json_decref(root);
    return calls > 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "ref")) return cmd_ref(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "grammar")) {
        int V = argc > 2 ? atoi(argv[2]) : 8192, B = argc > 3 ? atoi(argv[3]) : 8, T = argc > 4 ? atoi(argv[4]) : 256;
        double share = argc > 5 ? atof(argv[5]) : 0.3;
        int steps = argc > 6 ? atoi(argv[6]) : 5;
        return cmd_grammar(V, B, T, share, steps);
    }
    if (argc >= 3 && !strcmp(argv[1], "states")) return cmd_states(argv[2], argc > 3 ? atoi(argv[3]) : 8192);
    fprintf(stderr, "usage: bench_loss ref DIR | bench_loss grammar [V B T json_share steps] | bench_loss states GLAIVE.json [V]\n");
    return 2;
}
