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

#endif
