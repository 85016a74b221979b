/* Dataset summary, sample rendering and seed-JSONL export: see include/kdstep/dsview.h. */
#include "kdstep/dsview.h"

#include <stdlib.h>
#include <string.h>

#define BATCH 256

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* min, p50, p90, p99, max of v[n] (sorted in place). */
static void percentiles(int64_t *v, int64_t n, int64_t out[5]) {
    memset(out, 0, 5 * sizeof *out);
    if (n <= 0) return;
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    static const double q[5] = {0, 0.5, 0.9, 0.99, 1.0};
    for (int k = 0; k < 5; k++) {
        int64_t i = (int64_t)(q[k] * (double)(n - 1) + 0.999999);
        out[k] = v[i < n ? i : n - 1];
    }
}

int kd_dataset_summarize(kd_dataset *ds, kd_dataset_summary *sum, kd_error *err) {
    memset(sum, 0, sizeof *sum);
    int64_t n = kd_dataset_count(ds);
    int64_t *lens = malloc(((size_t)n + 1) * sizeof *lens), *plens = malloc(((size_t)n + 1) * sizeof *plens);
    if (!lens || !plens) {
        free(lens);
        free(plens);
        return kd_error_set(err, KD_ERR_NOMEM, "inspect: out of memory for %lld sample lengths", (long long)n);
    }
    for (int64_t first = 0; first < n; first += BATCH) {
        int64_t cnt = n - first < BATCH ? n - first : BATCH;
        kd_batch b;
        if (kd_dataset_read(ds, first, cnt, 0, &b, err)) {
            free(lens);
            free(plens);
            return err->code;
        }
        for (int64_t i = 0; i < cnt; i++) {
            kd_sample s;
            kd_batch_sample(&b, i, &s);
            const uint8_t *m[3] = {s.tool_name_mask, s.json_mask, s.integration_mask};
            int64_t any[3] = {0, 0, 0};
            for (int64_t t = 0; t < s.n; t++) {
                sum->response_tokens += s.loss_mask[t];
                for (int k = 0; k < 3; k++) any[k] += m[k][t];
            }
            for (int k = 0; k < 3; k++) {
                sum->mask_tokens[k] += any[k];
                sum->mask_samples[k] += any[k] > 0;
            }
            sum->prompt_tokens += s.prompt_len;
            sum->policy_samples[s.policy ? 1 : 0]++;
            sum->tokens += s.n;
            lens[first + i] = s.n;
            plens[first + i] = s.prompt_len;
        }
        kd_batch_free(&b);
    }
    sum->samples = n;
    percentiles(lens, n, sum->len_pct);
    percentiles(plens, n, sum->prompt_pct);
    sum->fit_seq_len = (sum->len_pct[3] + 31) / 32 * 32;
    free(lens);
    free(plens);
    return KD_OK;
}

int kd_dataset_fit_seq_len(const char *dataset_dir, int64_t *seq_len, kd_error *err) {
    kd_dataset *ds = NULL;
    int rc = kd_dataset_open(&ds, dataset_dir, err);
    kd_dataset_summary sum;
    if (!rc) rc = kd_dataset_summarize(ds, &sum, err);
    kd_dataset_close(ds);
    if (rc) return rc;
    if (sum.samples == 0) return kd_error_set(err, KD_ERR_INVALID, "%s: no samples to pick train.seq_len from", dataset_dir);
    *seq_len = sum.fit_seq_len < 32 ? 32 : sum.fit_seq_len;
    return KD_OK;
}

static double pct(int64_t a, int64_t b) { return b > 0 ? 100.0 * (double)a / (double)b : 0.0; }

void kd_dataset_summary_print(const kd_dataset *ds, const kd_dataset_summary *s, FILE *out) {
    const kd_dataset_info *info = kd_dataset_get_info(ds);
    fprintf(out, "dataset   %s\n", kd_dataset_path(ds));
    fprintf(out, "written   by kdstep %s, format %d, teacher top-k %d, process supervision %s\n",
            kd_dataset_kdstep_version(ds), KD_DATASET_FORMAT_VERSION, info->topk,
            info->process_supervision ? "on" : "off");
    fprintf(out, "hashes    tokenizer %.16s  registry %.16s  config %.16s\n", info->tokenizer_sha256,
            info->registry_sha256, info->config_sha256);
    fprintf(out, "samples   %lld (written by the teacher %lld, by the student %lld)\n", (long long)s->samples,
            (long long)s->policy_samples[0], (long long)s->policy_samples[1]);
    fprintf(out, "tokens    %lld (%.1f per sample): %lld prompt, %lld after it, %lld of those in loss_mask\n",
            (long long)s->tokens, s->samples ? (double)s->tokens / (double)s->samples : 0.0,
            (long long)s->prompt_tokens, (long long)(s->tokens - s->prompt_tokens), (long long)s->response_tokens);
    fprintf(out, "lengths   tokens     min     p50     p90     p99     max\n");
    fprintf(out, "  sample        %7lld %7lld %7lld %7lld %7lld\n", (long long)s->len_pct[0], (long long)s->len_pct[1],
            (long long)s->len_pct[2], (long long)s->len_pct[3], (long long)s->len_pct[4]);
    fprintf(out, "  prompt        %7lld %7lld %7lld %7lld %7lld\n", (long long)s->prompt_pct[0], (long long)s->prompt_pct[1],
            (long long)s->prompt_pct[2], (long long)s->prompt_pct[3], (long long)s->prompt_pct[4]);
    fprintf(out, "  full context: train.seq_len %lld fits 99%% of the samples whole (train.seq_len: 0 in a job picks it)\n",
            (long long)s->fit_seq_len);
    static const char *names[3] = {"tool name", "JSON", "integration"};
    fprintf(out, "mask coverage          tokens  of loss_mask  samples with any\n");
    for (int k = 0; k < 3; k++)
        fprintf(out, "  %-12s %14lld  %10.2f%%   %lld (%.1f%%)\n", names[k], (long long)s->mask_tokens[k],
                pct(s->mask_tokens[k], s->response_tokens), (long long)s->mask_samples[k],
                pct(s->mask_samples[k], s->samples));
}

static int kind_at(const kd_sample *s, int64_t t) {
    if (s->tool_name_mask[t]) return 1;
    if (s->json_mask[t]) return 2;
    if (s->integration_mask[t]) return 3;
    return 0;
}

static int print_run(const kd_sample *s, int64_t a, int64_t b, int64_t end, int kind, const kd_tokenizer *tok,
                     int color, FILE *out, kd_error *err) {
    static const char *tags[4] = {"", "tool", "json", "integration"};
    static const char *colors[4] = {"", "\033[1;33m", "\033[1;36m", "\033[1;32m"};
    if (kind) fputs(color ? colors[kind] : "[[", out);
    if (kind && !color) fprintf(out, "%s:", tags[kind]);
    if (tok) {
        char *text = NULL;
        size_t len = 0;
        if (kd_tokenizer_decode(tok, s->input_ids + a, (size_t)(b - a), 0, &text, &len, err)) return err->code;
        fwrite(text, 1, len, out);
        free(text);
    } else {
        for (int64_t t = a; t < b; t++) fprintf(out, t > a ? " %d" : "%d", s->input_ids[t]);
        if (!kind && b < end) fputc(' ', out);
    }
    if (kind) fputs(color ? "\033[0m" : "]]", out);
    if (!tok && kind && b < end) fputc(' ', out);
    return KD_OK;
}

int kd_sample_render(const kd_sample *s, const kd_tokenizer *tok, int color, FILE *out, kd_error *err) {
    int64_t resp = 0, m[3] = {0, 0, 0};
    for (int64_t t = 0; t < s->n; t++) {
        resp += s->loss_mask[t];
        m[0] += s->tool_name_mask[t];
        m[1] += s->json_mask[t];
        m[2] += s->integration_mask[t];
    }
    fprintf(out, "sample    prompt id %lld, id \"%s\"\n", (long long)s->prompt_id, s->prompt_key ? s->prompt_key : "");
    fprintf(out, "tokens    %lld: %lld prompt, %lld after it; %lld in loss_mask (tool name %lld, JSON %lld, "
                 "integration %lld)\n",
            (long long)s->n, (long long)s->prompt_len, (long long)(s->n - s->prompt_len), (long long)resp,
            (long long)m[0], (long long)m[1], (long long)m[2]);
    if (s->metadata) fprintf(out, "metadata  %s\n", s->metadata);
    if (!tok) fprintf(out, "(no tokenizer: token ids shown)\n");
    if (color)
        fprintf(out, "legend    \033[1;33mtool name\033[0m \033[1;36mJSON\033[0m \033[1;32mintegration\033[0m\n");
    else
        fprintf(out, "legend    [[tool:...]] [[json:...]] [[integration:...]]\n");
    fprintf(out, "--- prompt (%lld tokens) ---\n", (long long)s->prompt_len);
    int64_t a = 0;
    while (a < s->prompt_len) {
        int64_t b = a;
        int k = kind_at(s, a);
        while (b < s->prompt_len && kind_at(s, b) == k) b++;
        if (print_run(s, a, b, s->prompt_len, k, tok, color, out, err)) return err->code;
        a = b;
    }
    fprintf(out, "\n--- response (%lld tokens) ---\n", (long long)(s->n - s->prompt_len));
    a = s->prompt_len;
    while (a < s->n) {
        int64_t b = a;
        int k = kind_at(s, a);
        while (b < s->n && kind_at(s, b) == k) b++;
        if (print_run(s, a, b, s->n, k, tok, color, out, err)) return err->code;
        a = b;
    }
    fputc('\n', out);
    return KD_OK;
}

/* ids under mask, and a mask of ones aligned with them; NULL when the mask is empty */
static void add_masked(json_t *rec, const kd_sample *s, const uint8_t *mask, const char *ids_key, const char *mask_key) {
    json_t *ids = json_array(), *ones = json_array();
    for (int64_t t = 0; t < s->n; t++)
        if (mask[t]) {
            json_array_append_new(ids, json_integer(s->input_ids[t]));
            json_array_append_new(ones, json_integer(1));
        }
    if (json_array_size(ids) > 0) {
        json_object_set_new(rec, ids_key, ids);
        json_object_set_new(rec, mask_key, ones);
    } else {
        json_decref(ids);
        json_decref(ones);
    }
}

json_t *kd_sample_to_seed_json(const kd_sample *s) {
    json_t *rec = json_object();
    json_object_set_new(rec, "id", json_string(s->prompt_key ? s->prompt_key : ""));
    json_object_set_new(rec, "prompt_id", json_integer(s->prompt_id));
    json_object_set_new(rec, "prompt", json_string(s->prompt_text ? s->prompt_text : ""));
    json_object_set_new(rec, "teacher_text", json_string(s->teacher_text ? s->teacher_text : ""));
    add_masked(rec, s, s->tool_name_mask, "tool_name_ids", "tool_name_mask");
    add_masked(rec, s, s->json_mask, "gold_json_text_ids", "mask_valid_json_tokens");
    add_masked(rec, s, s->integration_mask, "tool_result_fields", "integration_mask");
    json_t *meta = s->metadata ? json_loads(s->metadata, 0, NULL) : NULL;
    json_object_set_new(rec, "metadata", meta ? meta : json_object());
    return rec;
}

int kd_dataset_export_jsonl(kd_dataset *ds, FILE *out, int64_t *written, kd_error *err) {
    int64_t n = kd_dataset_count(ds);
    if (written) *written = 0;
    for (int64_t first = 0; first < n; first += BATCH) {
        int64_t cnt = n - first < BATCH ? n - first : BATCH;
        kd_batch b;
        if (kd_dataset_read(ds, first, cnt, KD_READ_TEXT, &b, err)) return err->code;
        for (int64_t i = 0; i < cnt; i++) {
            kd_sample s;
            kd_batch_sample(&b, i, &s);
            json_t *rec = kd_sample_to_seed_json(&s);
            char *line = json_dumps(rec, JSON_COMPACT);
            json_decref(rec);
            int bad = !line || fputs(line, out) < 0 || fputc('\n', out) == EOF;
            free(line);
            if (bad) {
                kd_batch_free(&b);
                return kd_error_set(err, KD_ERR_IO, "export: write failed (disk full?)");
            }
        }
        kd_batch_free(&b);
        if (written) *written += cnt;
    }
    return KD_OK;
}
