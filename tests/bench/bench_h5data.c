/* HDF5 dataset driver and benchmark.
 *   bench_h5data write DIR RANKS SAMPLES [SEAL_EVERY]  write h5gen samples, id i to shard i % RANKS, finalize
 *   bench_h5data bench DIR SAMPLES TOKENS_PER_SAMPLE K [MODE]  MODE 0 no compression, 1 default, 2 all; time append+seal+finalize and a full read
 * The write mode is what tests/e2e/h5py_reads.sh checks from Python. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "h5gen.h"
#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "kdstep/h5data.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static kd_dataset_info info_for(int k, int deflate) {
    kd_dataset_info info;
    kd_dataset_info_init(&info);
    info.topk = k;
    info.deflate_level = deflate > 0 ? 1 : 0;
    info.compress_token_data = deflate > 1; /* bench modes: 0 none, 1 light columns only, 2 everything (the default) */
    snprintf(info.tokenizer_sha256, 65, "%064d", 1);
    snprintf(info.registry_sha256, 65, "%064d", 2);
    snprintf(info.config_sha256, 65, "%064d", 3);
    info.config_yaml = "kd:\n  topk: 4\n";
    return info;
}

static int die(const kd_error *e) {
    fprintf(stderr, "bench_h5data: %s\n", e->msg);
    return 1;
}

static int cmd_write(const char *dir, int ranks, int64_t samples, int seal_every) {
    kd_error e;
    int k = 4;
    kd_dataset_info info = info_for(k, 1);
    if (kd_dataset_prepare(dir, &info, &e)) return die(&e);
    for (int r = 0; r < ranks; r++) {
        kd_shard *sh;
        if (kd_shard_open(&sh, dir, r, &info, seal_every, &e)) return die(&e);
        for (int64_t id = r; id < samples; id += ranks) {
            h5gen g;
            h5gen_fill(&g, id, k);
            if (kd_shard_append(sh, &g.s, &e)) return die(&e);
        }
        if (kd_shard_close(sh, &e)) return die(&e);
    }
    int64_t total;
    if (kd_dataset_finalize(dir, &total, &e)) return die(&e);
    printf("wrote %lld samples in %d shards to %s\n", (long long)total, ranks, dir);
    return 0;
}

static uint64_t dir_bytes(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "du -sb '%s'", dir);
    FILE *p = popen(cmd, "r");
    unsigned long long b = 0;
    if (p) {
        if (fscanf(p, "%llu", &b) != 1) b = 0;
        pclose(p);
    }
    return b;
}

static int cmd_bench(const char *dir, int64_t samples, int64_t tps, int k, int deflate) {
    kd_error e;
    kd_rm_rf(dir, NULL);
    kd_dataset_info info = info_for(k, deflate);
    if (kd_dataset_prepare(dir, &info, &e)) return die(&e);
    int32_t *ids = malloc((size_t)tps * 4), *tk = malloc((size_t)(tps * k) * 4);
    uint8_t *loss = malloc((size_t)tps), *span = calloc((size_t)tps, 1);
    float *lp = malloc((size_t)(tps * k) * 4), *tail = malloc((size_t)tps * 4);
    uint64_t rng = 42;
    char teacher[2048];
    memset(teacher, 'a', sizeof teacher - 1);
    teacher[sizeof teacher - 1] = 0;
    double t0 = now();
    kd_shard *sh;
    if (kd_shard_open(&sh, dir, 0, &info, 256, &e)) return die(&e);
    for (int64_t s = 0; s < samples; s++) {
        for (int64_t t = 0; t < tps; t++) {
            /* token-like values: small ids, realistic logprobs, so compression is not flattered */
            ids[t] = (int32_t)(kd_splitmix64(&rng) % 150000);
            loss[t] = t >= tps / 4;
            for (int j = 0; j < k; j++) {
                tk[t * k + j] = (int32_t)(kd_splitmix64(&rng) % 150000);
                lp[t * k + j] = -kd_rand_uniform(&rng) * (float)(j + 1) * 2.0f;
            }
            tail[t] = -3.0f - kd_rand_uniform(&rng);
        }
        kd_sample smp = {.prompt_id = s, .prompt_len = tps / 4, .n = tps, .input_ids = ids, .loss_mask = loss,
                         .tool_name_mask = span, .json_mask = span, .integration_mask = span, .topk_ids = tk,
                         .topk_logprobs = lp, .tail_logprob = tail, .prompt_key = "k", .prompt_text = teacher + 1500,
                         .teacher_text = teacher, .metadata = "{}"};
        if (kd_shard_append(sh, &smp, &e)) return die(&e);
    }
    if (kd_shard_close(sh, &e)) return die(&e);
    if (kd_dataset_finalize(dir, NULL, &e)) return die(&e);
    double t1 = now();
    kd_dataset *ds;
    if (kd_dataset_open(&ds, dir, &e)) return die(&e);
    int64_t tokens = 0;
    for (int64_t f = 0; f < samples; f += 64) {
        kd_batch b;
        int64_t c = samples - f < 64 ? samples - f : 64;
        if (kd_dataset_read(ds, f, c, 0, &b, &e)) return die(&e);
        tokens += b.offsets[c];
        kd_batch_free(&b);
    }
    kd_dataset_close(ds);
    double t2 = now();
    double total_tokens = (double)samples * (double)tps;
    uint64_t bytes = dir_bytes(dir);
    double raw = total_tokens * (4 + 4 + 4 + 8.0 * k) + (double)samples * 2048;
    printf("samples %lld, tokens/sample %lld, K %d, compression mode %d\n", (long long)samples, (long long)tps, k, deflate);
    printf("write+seal+finalize: %.2f s, %.0f tokens/s\n", t1 - t0, total_tokens / (t1 - t0));
    printf("read (batches of 64, masks checked): %.2f s, %.0f tokens/s (%lld tokens)\n", t2 - t1,
           total_tokens / (t2 - t1), (long long)tokens);
    printf("bytes on disk: %llu, %.2f bytes/token (raw %.2f)\n", (unsigned long long)bytes, (double)bytes / total_tokens,
           raw / total_tokens);
    printf("{\"write_tokens_s\": %.0f, \"read_tokens_s\": %.0f, \"bytes_per_token\": %.2f, \"raw_bytes_per_token\": %.2f, "
           "\"mode\": %d}\n",
           total_tokens / (t1 - t0), total_tokens / (t2 - t1), (double)bytes / total_tokens, raw / total_tokens, deflate);
    free(ids);
    free(tk);
    free(loss);
    free(span);
    free(lp);
    free(tail);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "write") == 0)
        return cmd_write(argv[2], atoi(argv[3]), atoll(argv[4]), argc > 5 ? atoi(argv[5]) : 16);
    if (argc >= 6 && strcmp(argv[1], "bench") == 0)
        return cmd_bench(argv[2], atoll(argv[3]), atoll(argv[4]), atoi(argv[5]), argc > 6 ? atoi(argv[6]) : 1);
    fprintf(stderr, "usage: bench_h5data write DIR RANKS SAMPLES [SEAL_EVERY]\n"
                    "       bench_h5data bench DIR SAMPLES TOKENS_PER_SAMPLE K [MODE 0|1|2]\n");
    return 2;
}
