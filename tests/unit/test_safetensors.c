/* safetensors reader/writer: good files round-trip, dtypes convert exactly, and every kind of bad
 * file (truncated, oversized header, overlapping offsets, wrong shapes ...) gives its message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdstep/model.h"
#include "kdstep/safetensors.h"
#include "testutil.h"

/* A file from a header string and n data bytes (bytes 0, 1, 2, ...). */
static const char *write_st(const char *name, const char *header, size_t ndata) {
    static char paths[8][1024];
    static int k;
    char *path = paths[k++ % 8];
    snprintf(path, 1024, "%s/%s", kd_test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    uint64_t n = strlen(header);
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(n >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, n, f);
    for (size_t i = 0; i < ndata; i++) fputc((int)(i & 0xff), f);
    fclose(f);
    return path;
}

static void expect_error(const char *path, int code, const char *needle) {
    kd_safetensors *st = (kd_safetensors *)1;
    kd_error err = {0};
    int rc = kd_safetensors_open(&st, path, &err);
    CU_ASSERT_EQUAL(rc, code);
    CU_ASSERT_PTR_NULL(st);
    KD_ASSERT_CONTAINS(err.msg, needle);
    KD_ASSERT_CONTAINS(err.msg, path); /* the file is named */
}

static void test_roundtrip(void) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {-1.5f, 0.25f, 1e-30f};
    kd_st_write_tensor t[2] = {{"x.weight", 2, {2, 3}, a}, {"y", 1, {3}, b}};
    char path[1024];
    snprintf(path, sizeof path, "%s/rt.safetensors", kd_test_tmpdir());
    kd_error err = {0};
    CU_ASSERT_EQUAL_FATAL(kd_safetensors_write(path, t, 2, &err), KD_OK);
    kd_safetensors *st = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_safetensors_open(&st, path, &err), KD_OK);
    CU_ASSERT_EQUAL(st->n, 2);
    const kd_st_tensor *x = kd_safetensors_find(st, "x.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_EQUAL(x->ndim, 2);
    CU_ASSERT_EQUAL(x->shape[0], 2);
    CU_ASSERT_EQUAL(x->shape[1], 3);
    CU_ASSERT_EQUAL(((uintptr_t)x->data - (uintptr_t)st->map) % 8, 0); /* header padded to 8 */
    float got[6];
    CU_ASSERT_EQUAL(kd_st_tensor_to_f32(x, got, 6, &err), KD_OK);
    CU_ASSERT_EQUAL(memcmp(got, a, sizeof a), 0);
    CU_ASSERT_EQUAL(kd_st_tensor_to_f32(x, got, 5, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "tensor 'x.weight' has 6 elements, expected 5");
    CU_ASSERT_PTR_NULL(kd_safetensors_find(st, "z"));
    /* metadata as HF writes it */
    KD_ASSERT_CONTAINS((const char *)st->map + 8, "{\"__metadata__\":{\"format\":\"pt\"}");
    kd_safetensors_close(st);
    kd_st_write_tensor bad = {"a\"b", 1, {3}, b};
    CU_ASSERT_EQUAL(kd_safetensors_write(path, &bad, 1, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "tensor name 'a\"b' is too long or needs escaping");
    snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", kd_test_tmpdir());
    CU_ASSERT_EQUAL(kd_safetensors_write(path, t, 2, &err), KD_ERR_IO);
    KD_ASSERT_CONTAINS(err.msg, "cannot create");
}

static void test_half_dtypes(void) {
    /* F16: 1.0, -2.0, smallest subnormal 2^-24, 65504; BF16: 1.0, -3.0 */
    const char *h = "{\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]}}";
    uint8_t data[12] = {0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0xff, 0x7b, 0x80, 0x3f, 0x40, 0xc0};
    size_t hl = strlen(h);
    uint8_t *buf = calloc(1, 8 + hl + 12);
    buf[0] = (uint8_t)hl;
    memcpy(buf + 8, h, hl);
    memcpy(buf + 8 + hl, data, 12);
    kd_safetensors *st = NULL;
    kd_error err = {0};
    CU_ASSERT_EQUAL_FATAL(kd_safetensors_parse(&st, buf, 8 + hl + 12, &err), KD_OK);
    float f[4];
    CU_ASSERT_EQUAL(kd_st_tensor_to_f32(kd_safetensors_find(st, "h"), f, 4, &err), KD_OK);
    CU_ASSERT_EQUAL(f[0], 1.0f);
    CU_ASSERT_EQUAL(f[1], -2.0f);
    CU_ASSERT_EQUAL(f[2], 0x1p-24f);
    CU_ASSERT_EQUAL(f[3], 65504.0f);
    CU_ASSERT_EQUAL(kd_st_tensor_to_f32(kd_safetensors_find(st, "b"), f, 2, &err), KD_OK);
    CU_ASSERT_EQUAL(f[0], 1.0f);
    CU_ASSERT_EQUAL(f[1], -3.0f);
    kd_safetensors_close(st);
    free(buf);
}

static void test_bad_files(void) {
    const char *ok1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    /* truncated: less than the length prefix */
    char path[1024];
    snprintf(path, sizeof path, "%s/short.safetensors", kd_test_tmpdir());
    FILE *f = fopen(path, "wb");
    fwrite("\x10\x00\x00", 1, 3, f);
    fclose(f);
    expect_error(path, KD_ERR_PARSE, "file is 3 bytes, shorter than the 8-byte header length (truncated?)");
    /* truncated: header cut */
    const char *p = write_st("cut.safetensors", ok1, 0);
    f = fopen(p, "r+b");
    CU_ASSERT_EQUAL(ftruncate(fileno(f), 20), 0);
    fclose(f);
    expect_error(p, KD_ERR_PARSE, "runs past the end of the 20-byte file (truncated?)");
    /* truncated: data cut */
    expect_error(write_st("data.safetensors", ok1, 5), KD_ERR_PARSE, "tensor 'a' data_offsets [0, 8] run past the 5 data bytes (truncated file?)");
    /* oversized header length */
    snprintf(path, sizeof path, "%s/huge.safetensors", kd_test_tmpdir());
    f = fopen(path, "wb");
    fwrite("\x00\x00\x00\x40\x00\x00\x00\x00{}", 1, 10, f);
    fclose(f);
    expect_error(path, KD_ERR_PARSE, "header length 1073741824 exceeds the 104857600-byte limit");
    /* overlapping offsets */
    expect_error(write_st("overlap.safetensors",
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                          12),
                 KD_ERR_PARSE, "tensors 'a' and 'b' overlap in the data section (corrupt file)");
    /* shape disagrees with the span */
    expect_error(write_st("span.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8), KD_ERR_PARSE,
                 "tensor 'a' spans 8 bytes but its shape and dtype need 12");
    expect_error(write_st("json.safetensors", "{\"a\":", 0), KD_ERR_PARSE, "header is not valid JSON");
    expect_error(write_st("dup.safetensors", "{\"a\":{},\"a\":{}}", 0), KD_ERR_PARSE, "duplicate object key");
    expect_error(write_st("arr.safetensors", "[1]", 0), KD_ERR_PARSE, "header is not a JSON object");
    expect_error(write_st("meta.safetensors", "{\"__metadata__\":3}", 0), KD_ERR_PARSE, "__metadata__ is not an object");
    expect_error(write_st("tobj.safetensors", "{\"a\":3}", 0), KD_ERR_PARSE, "tensor 'a' is not an object");
    expect_error(write_st("fields.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), KD_ERR_PARSE,
                 "tensor 'a' needs \"dtype\" (string), \"shape\" (array) and \"data_offsets\" ([begin, end])");
    expect_error(write_st("dtype.safetensors", "{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8), KD_ERR_UNSUPPORTED,
                 "tensor 'a' has dtype I64; only F32, F16 and BF16 are supported");
    expect_error(write_st("dims.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4),
                 KD_ERR_PARSE, "tensor 'a' has 9 dimensions (max 8)");
    expect_error(write_st("neg.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4), KD_ERR_PARSE,
                 "tensor 'a' shape[0] is not a non-negative integer");
    expect_error(write_st("ovf.safetensors",
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4),
                 KD_ERR_PARSE, "tensor 'a' shape overflows");
    expect_error(write_st("order.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8), KD_ERR_PARSE,
                 "tensor 'a' data_offsets must be integers with 0 <= begin <= end");
    snprintf(path, sizeof path, "%s/missing.safetensors", kd_test_tmpdir());
    expect_error(path, KD_ERR_IO, "cannot open");
}

/* Loading into a model: a missing tensor and a wrong shape are named. */
static void test_model_load_errors(void) {
    kd_model_config cfg;
    kd_error err = {0};
    CU_ASSERT_EQUAL_FATAL(kd_model_config_preset("tiny", &cfg, &err), KD_OK);
    kd_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_model_new(&m, &cfg, 1, 4, &err), KD_OK);
    float w[64 * 4] = {0};
    kd_st_write_tensor t = {"model.embed_tokens.weight", 2, {4, 64}, w};
    char path[1024];
    snprintf(path, sizeof path, "%s/shape.safetensors", kd_test_tmpdir());
    CU_ASSERT_EQUAL_FATAL(kd_safetensors_write(path, &t, 1, &err), KD_OK);
    CU_ASSERT_EQUAL(kd_model_load_safetensors(m, path, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "tensor 'model.embed_tokens.weight' has shape [4, 64] but the model config needs [512, 64]");
    t.name = "model.norm.weight";
    t.ndim = 1;
    t.shape[0] = 64;
    CU_ASSERT_EQUAL_FATAL(kd_safetensors_write(path, &t, 1, &err), KD_OK);
    CU_ASSERT_EQUAL(kd_model_load_safetensors(m, path, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "tensor 'model.embed_tokens.weight' is missing (is this a Qwen3 checkpoint of the same shape?)");
    kd_model_free(m);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("safetensors", NULL, NULL);
    CU_add_test(s, "roundtrip", test_roundtrip);
    CU_add_test(s, "half_dtypes", test_half_dtypes);
    CU_add_test(s, "bad_files", test_bad_files);
    CU_add_test(s, "model_load_errors", test_model_load_errors);
    return kd_test_main();
}
