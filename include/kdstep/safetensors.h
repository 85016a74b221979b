/* safetensors files (Hugging Face): an 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {..}},
 * then the data. Reading maps the file and checks the header strictly (size limits, known dtypes,
 * shape x dtype == byte span, spans inside the data and not overlapping) so that a truncated or
 * malicious file gives an error, never a crash. F32, F16 and BF16 are read (converted to float);
 * F32 is written, with {"format": "pt"} metadata and tensors in the order given.
 */
#ifndef KDSTEP_SAFETENSORS_H
#define KDSTEP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kdstep/error.h"

enum kd_st_dtype { KD_ST_F32 = 0, KD_ST_F16 = 1, KD_ST_BF16 = 2 };

#define KD_ST_MAX_DIMS 8
#define KD_ST_MAX_HEADER (100u * 1024u * 1024u) /* as the reference implementation */

typedef struct kd_st_tensor {
    char *name;
    int dtype;
    int ndim;
    int64_t shape[KD_ST_MAX_DIMS];
    uint64_t numel;
    const uint8_t *data; /* inside the mapping */
    size_t nbytes;
} kd_st_tensor;

typedef struct kd_safetensors {
    void *map;
    size_t map_len;
    int owns_map;
    int n;
    kd_st_tensor *tensors;
} kd_safetensors;

/* mmap a file and parse its header. */
int kd_safetensors_open(kd_safetensors **out, const char *path, kd_error *err);
/* Parse a buffer in memory (not copied: it must outlive the result). */
int kd_safetensors_parse(kd_safetensors **out, const void *buf, size_t len, kd_error *err);
void kd_safetensors_close(kd_safetensors *st);
const kd_st_tensor *kd_safetensors_find(const kd_safetensors *st, const char *name);
/* Convert a tensor to float into out[n]; n must equal its element count. */
int kd_st_tensor_to_f32(const kd_st_tensor *t, float *out, size_t n, kd_error *err);

typedef struct kd_st_write_tensor {
    const char *name;
    int ndim;
    int64_t shape[KD_ST_MAX_DIMS];
    const float *data;
} kd_st_write_tensor;
/* Write F32 tensors (atomically: temp file + rename). Deterministic bytes for the same input. */
int kd_safetensors_write(const char *path, const kd_st_write_tensor *t, int n, kd_error *err);
/* The same, stored as dtype (KD_ST_F32, KD_ST_BF16 or KD_ST_F16; both 16-bit types round to nearest
 * even, as torch's .to(dtype) does). F32 gives the bytes of kd_safetensors_write. */
int kd_safetensors_write_dtype(const char *path, const kd_st_write_tensor *t, int n, int dtype, kd_error *err);
uint16_t kd_f32_to_bf16(float f);
uint16_t kd_f32_to_f16(float f);
/* "float32" | "bfloat16" | "float16" (config.json's torch_dtype spelling) -> KD_ST_*; -1 if unknown. */
int kd_st_dtype_parse(const char *s, int *dtype);
const char *kd_st_dtype_name(int dtype); /* "F32", "BF16", "F16" */
size_t kd_st_dtype_size(int dtype);

/* ---- Sharded checkpoints (Hugging Face's model.safetensors.index.json) ----
 * {"metadata": {"total_size": BYTES}, "weight_map": {"tensor name": "model-00001-of-00003.safetensors", ...}}
 * Shard file names must be plain names in the same folder. */
typedef struct kd_st_index {
    int n;           /* tensors */
    char **names;    /* [n] tensor names */
    int *shard;      /* [n] index into files */
    int n_files;
    char **files;    /* [n_files] shard file names, in order of first appearance */
} kd_st_index;
int kd_st_index_load(const char *path, kd_st_index **out, kd_error *err);
void kd_st_index_close(kd_st_index *ix);

#endif
