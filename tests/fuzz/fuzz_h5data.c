/* libFuzzer target: the HDF5 dataset reader on files with bad offsets, masks, lengths and attributes.
 *
 * HDF5's own metadata parser is not ours to fuzz (random bytes mostly exercise libhdf5), so the input
 * is a list of edits applied to a valid small shard written once with kd_shard_*: each edit sets one
 * element of one column (offsets, prompt_len, masks, top-k, text offsets ...), resizes a column, or
 * rewrites the topk / format_version attribute. The edited file is then opened with kd_dataset_open
 * and read whole and in pieces with kd_dataset_read(KD_READ_TEXT): every outcome must be KD_OK or an
 * error naming the file, never a crash, a leak or an out-of-bounds read.
 *
 * Edit record (11 bytes): op, column, row (u16 LE), value (i56 LE in 7 bytes).
 *   op % 4 == 0,1: set element; 2: resize the column to `row` rows; 3: set attribute (column % 2: topk
 *   or format_version) to value. */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdstep/fsutil.h"
#include "kdstep/h5data.h"

static const char *COLS[] = {"/samples/prompt_id",        "/samples/prompt_len",     "/samples/offsets",
                             "/tokens/input_ids",         "/tokens/loss_mask",       "/tokens/tool_name_mask",
                             "/tokens/json_mask",         "/tokens/integration_mask", "/teacher/topk_ids",
                             "/teacher/topk_logprobs",    "/teacher/tail_logprob",   "/text/prompt_key_offsets",
                             "/text/prompt_key",          "/text/prompt_offsets",    "/text/prompt",
                             "/text/teacher_text_offsets", "/text/teacher_text",     "/text/metadata_offsets",
                             "/text/metadata"};
#define NCOLS (int)(sizeof COLS / sizeof COLS[0])

static char g_dir[256], g_base[512], g_work[512];
static void *g_bytes;
static size_t g_len;

static void make_base(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/kd-fuzz-h5-XXXXXX");
    if (!mkdtemp(g_dir)) abort();
    kd_dataset_info info;
    kd_dataset_info_init(&info);
    info.topk = 2;
    kd_shard *sh;
    kd_error err;
    if (kd_shard_open(&sh, g_dir, 0, &info, 2, &err)) abort();
    for (int s = 0; s < 3; s++) {
        int n = 4 + s;
        int32_t ids[8], topk[16];
        uint8_t loss[8], tool[8], json[8];
        float lp[16], tail[8];
        for (int t = 0; t < n; t++) {
            ids[t] = 10 + t + s;
            loss[t] = t >= 2;
            tool[t] = t == 2;
            json[t] = t == 3;
            tail[t] = -3.0f;
            for (int j = 0; j < 2; j++) topk[2 * t + j] = ids[t] + j, lp[2 * t + j] = -0.5f - (float)j;
        }
        kd_sample smp = {.prompt_id = s, .prompt_len = 2, .n = n, .input_ids = ids, .loss_mask = loss,
                         .tool_name_mask = tool, .json_mask = json, .topk_ids = topk, .topk_logprobs = lp,
                         .tail_logprob = tail, .prompt_key = "k", .prompt_text = "prompt", .teacher_text = "answer",
                         .metadata = "{}"};
        if (kd_shard_append(sh, &smp, &err)) abort();
    }
    if (kd_shard_close(sh, &err)) abort();
    snprintf(g_base, sizeof g_base, "%s/shard-00000.h5", g_dir);
    snprintf(g_work, sizeof g_work, "%s/work.h5", g_dir);
    if (kd_read_file(g_base, (char **)&g_bytes, &g_len, &err)) abort();
}

static int64_t get_i56(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 7; i++) v |= (uint64_t)p[i] << (8 * i);
    if (v & (1ull << 55)) v |= 0xffull << 56; /* sign-extend */
    return (int64_t)v;
}

static void set_attr(hid_t f, const char *name, int64_t v) {
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        H5Awrite(a, H5T_NATIVE_INT64, &v);
        H5Aclose(a);
    }
    H5Sclose(sp);
}

static void apply(hid_t f, const uint8_t *e) {
    int op = e[0] % 4, col = e[1] % NCOLS;
    hsize_t row = (hsize_t)e[2] | (hsize_t)e[3] << 8;
    int64_t value = get_i56(e + 4);
    if (op == 3) {
        set_attr(f, (e[1] & 1) ? "format_version" : "topk", value);
        return;
    }
    hid_t d = H5Dopen2(f, COLS[col], H5P_DEFAULT);
    if (d < 0) return;
    hid_t sp = H5Dget_space(d);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[2] = {0, 0};
    H5Sget_simple_extent_dims(sp, dims, NULL);
    if (op == 2) {
        dims[0] = row % 64;
        H5Dset_extent(d, dims);
    } else if (dims[0] > 0) {
        hsize_t start[2] = {row % dims[0], rank == 2 ? (hsize_t)(e[1] / NCOLS) % dims[1] : 0}, count[2] = {1, 1};
        H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL);
        hid_t ms = H5Screate_simple(rank, count, NULL);
        double dv = (double)value / 16.0;
        hid_t ft = H5Dget_type(d);
        int is_float = H5Tget_class(ft) == H5T_FLOAT;
        H5Tclose(ft);
        H5Dwrite(d, is_float ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64, ms, sp, H5P_DEFAULT,
                 is_float ? (void *)&dv : (void *)&value);
        H5Sclose(ms);
    }
    H5Sclose(sp);
    H5Dclose(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_bytes) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        make_base();
    }
    kd_error err;
    if (kd_write_file_atomic(g_work, g_bytes, g_len, &err)) abort();
    hid_t f = H5Fopen(g_work, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) abort();
    for (size_t i = 0; i + 11 <= size && i < 11 * 32; i += 11) apply(f, data + i);
    H5Fclose(f);

    kd_dataset *ds;
    if (kd_dataset_open(&ds, g_work, &err) == KD_OK) {
        int64_t n = kd_dataset_count(ds);
        kd_batch b;
        if (kd_dataset_read(ds, 0, n, KD_READ_TEXT, &b, &err) == KD_OK) {
            for (int64_t i = 0; i < b.count; i++) {
                kd_sample v;
                kd_batch_sample(&b, i, &v);
                if (v.n < 0 || v.prompt_len > v.n) abort();
            }
            kd_batch_free(&b);
        } else if (!strstr(err.msg, g_work)) {
            abort(); /* an error must name the file */
        }
        for (int64_t i = 0; i < n; i++)
            if (kd_dataset_read(ds, i, 1, KD_READ_TEXT, &b, &err) == KD_OK) kd_batch_free(&b);
        kd_dataset_close(ds);
    } else if (!strstr(err.msg, g_work)) {
        abort();
    }
    return 0;
}
