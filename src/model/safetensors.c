/* safetensors read/write: see include/kdstep/safetensors.h. */
#include "kdstep/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kdstep/fsutil.h"

static int dtype_from_name(const char *s, size_t *size) {
    if (strcmp(s, "F32") == 0) { *size = 4; return KD_ST_F32; }
    if (strcmp(s, "F16") == 0) { *size = 2; return KD_ST_F16; }
    if (strcmp(s, "BF16") == 0) { *size = 2; return KD_ST_BF16; }
    return -1;
}

static int cmp_by_data(const void *a, const void *b) {
    const kd_st_tensor *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data ? 1 : 0;
}

static void free_tensors(kd_safetensors *st) {
    for (int i = 0; i < st->n; i++) free(st->tensors[i].name);
    free(st->tensors);
    st->tensors = NULL;
    st->n = 0;
}

int kd_safetensors_parse(kd_safetensors **out, const void *buf, size_t len, kd_error *err) {
    *out = NULL;
    const uint8_t *b = buf;
    if (len < 8) return kd_error_set(err, KD_ERR_PARSE, "safetensors: file is %zu bytes, shorter than the 8-byte header length (truncated?)", len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | b[i];
    if (hlen > KD_ST_MAX_HEADER)
        return kd_error_set(err, KD_ERR_PARSE, "safetensors: header length %llu exceeds the %u-byte limit (corrupt or not a safetensors file)",
                            (unsigned long long)hlen, KD_ST_MAX_HEADER);
    if (hlen > len - 8)
        return kd_error_set(err, KD_ERR_PARSE, "safetensors: header length %llu runs past the end of the %zu-byte file (truncated?)",
                            (unsigned long long)hlen, len);
    const uint8_t *data = b + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)b + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return kd_error_set(err, KD_ERR_PARSE, "safetensors: header is not valid JSON: %s (at byte %d)", jerr.text, jerr.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return kd_error_set(err, KD_ERR_PARSE, "safetensors: header is not a JSON object");
    }
    kd_safetensors *st = kd_calloc(1, sizeof *st);
    size_t cap = json_object_size(root);
    if (st) st->tensors = kd_calloc(cap ? cap : 1, sizeof *st->tensors);
    if (!st || !st->tensors) {
        json_decref(root);
        if (st) free(st);
        return kd_error_set(err, KD_ERR_NOMEM, "safetensors: out of memory");
    }
    const char *key;
    json_t *val;
    int rc = KD_OK;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) { rc = kd_error_set(err, KD_ERR_PARSE, "safetensors: __metadata__ is not an object"); break; }
            continue;
        }
        if (!json_is_object(val)) { rc = kd_error_set(err, KD_ERR_PARSE, "safetensors: tensor '%s' is not an object", key); break; }
        json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"), *jo = json_object_get(val, "data_offsets");
        if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) || json_array_size(jo) != 2) {
            rc = kd_error_set(err, KD_ERR_PARSE, "safetensors: tensor '%s' needs \"dtype\" (string), \"shape\" (array) and \"data_offsets\" ([begin, end])", key);
            break;
        }
        size_t esize = 0;
        int dt = dtype_from_name(json_string_value(jd), &esize);
        if (dt < 0) { rc = kd_error_set(err, KD_ERR_UNSUPPORTED, "safetensors: tensor '%s' has dtype %s; only F32, F16 and BF16 are supported", key, json_string_value(jd)); break; }
        kd_st_tensor *t = &st->tensors[st->n];
        t->dtype = dt;
        t->ndim = (int)json_array_size(js);
        if (t->ndim > KD_ST_MAX_DIMS) { rc = kd_error_set(err, KD_ERR_PARSE, "safetensors: tensor '%s' has %d dimensions (max %d)", key, t->ndim, KD_ST_MAX_DIMS); break; }
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim && rc == KD_OK; d++) {
            json_t *x = json_array_get(js, (size_t)d);
            if (!json_is_integer(x) || json_integer_value(x) < 0) { rc = kd_error_set(err, KD_ERR_PARSE, "safetensors: tensor '%s' shape[%d] is not a non-negative integer", key, d); break; }
            uint64_t s = (uint64_t)json_integer_value(x);
            if (s != 0 && numel > UINT64_MAX / 16 / s) { rc = kd_error_set(err, KD_ERR_PARSE, "safetensors: tensor '%s' shape overflows", key); break; }
            numel *= s;
            t->shape[d] = (int64_t)s;
        }
        if (rc) break;
        json_t *j0 = json_array_get(jo, 0), *j1 = json_array_get(jo, 1);
        if (!json_is_integer(j0) || !json_is_integer(j1) || json_integer_value(j0) < 0 || json_integer_value(j1) < json_integer_value(j0)) {
            rc = kd_error_set(err, KD_ERR_PARSE, "safetensors: tensor '%s' data_offsets must be integers with 0 <= begin <= end", key);
            break;
        }
        uint64_t o0 = (uint64_t)json_integer_value(j0), o1 = (uint64_t)json_integer_value(j1);
        if (o1 > data_len) {
            rc = kd_error_set(err, KD_ERR_PARSE, "safetensors: tensor '%s' data_offsets [%llu, %llu] run past the %zu data bytes (truncated file?)", key,
                              (unsigned long long)o0, (unsigned long long)o1, data_len);
            break;
        }
        if (o1 - o0 != numel * esize) {
            rc = kd_error_set(err, KD_ERR_PARSE, "safetensors: tensor '%s' spans %llu bytes but its shape and dtype need %llu", key,
                              (unsigned long long)(o1 - o0), (unsigned long long)(numel * esize));
            break;
        }
        t->name = kd_strdup(key);
        if (!t->name) { rc = kd_error_set(err, KD_ERR_NOMEM, "safetensors: out of memory"); break; }
        t->numel = numel;
        t->data = data + o0;
        t->nbytes = (size_t)(o1 - o0);
        st->n++;
    }
    json_decref(root);
    if (rc == KD_OK && st->n > 1) {
        /* Overlap check on a sorted copy; the original order stays the header's. */
        kd_st_tensor *s = kd_calloc((size_t)st->n, sizeof *s);
        if (!s) rc = kd_error_set(err, KD_ERR_NOMEM, "safetensors: out of memory");
        else {
            memcpy(s, st->tensors, (size_t)st->n * sizeof *s);
            qsort(s, (size_t)st->n, sizeof *s, cmp_by_data);
            for (int i = 1; i < st->n; i++) {
                if (s[i].data < s[i - 1].data + s[i - 1].nbytes) {
                    rc = kd_error_set(err, KD_ERR_PARSE, "safetensors: tensors '%s' and '%s' overlap in the data section (corrupt file)", s[i - 1].name, s[i].name);
                    break;
                }
            }
            free(s);
        }
    }
    if (rc != KD_OK) {
        free_tensors(st);
        free(st);
        return rc;
    }
    *out = st;
    return KD_OK;
}

int kd_safetensors_open(kd_safetensors **out, const char *path, kd_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kd_error_errno(err, errno, "cannot open %s", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return kd_error_errno(err, e, "cannot stat %s", path);
    }
    size_t len = (size_t)sb.st_size;
    void *map = NULL;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return kd_error_errno(err, e, "cannot mmap %s", path);
        }
    }
    close(fd);
    int rc = kd_safetensors_parse(out, map ? map : "", len, err);
    if (rc != KD_OK) {
        if (map) munmap(map, len);
        if (err) kd_error_prefix(err, "%s: ", path);
        return rc;
    }
    (*out)->map = map;
    (*out)->map_len = len;
    (*out)->owns_map = 1;
    return KD_OK;
}

void kd_safetensors_close(kd_safetensors *st) {
    if (!st) return;
    if (st->owns_map && st->map) munmap(st->map, st->map_len);
    free_tensors(st);
    free(st);
}

const kd_st_tensor *kd_safetensors_find(const kd_safetensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: renormalize */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            man &= 0x3ff;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int kd_st_tensor_to_f32(const kd_st_tensor *t, float *out, size_t n, kd_error *err) {
    if (t->numel != n)
        return kd_error_set(err, KD_ERR_INVALID, "safetensors: tensor '%s' has %llu elements, expected %zu", t->name, (unsigned long long)t->numel, n);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case KD_ST_F32: memcpy(out, p, n * 4); break; /* little-endian host assumed (x86/ARM) */
    case KD_ST_F16:
        for (size_t i = 0; i < n; i++) out[i] = half_to_float((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        break;
    case KD_ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)(p[2 * i] | (p[2 * i + 1] << 8)) << 16;
            memcpy(&out[i], &bits, 4);
        }
        break;
    default: return kd_error_set(err, KD_ERR_UNSUPPORTED, "safetensors: tensor '%s' has an unsupported dtype", t->name);
    }
    return KD_OK;
}

uint16_t kd_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays a (quiet) NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);                 /* round to nearest even */
}

uint16_t kd_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);       /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);      /* rounds to >= 65520: infinity */
    if (a < 0x38800000u) {                                        /* below 2^-14: subnormal or zero */
        if (a < 0x33000000u) return (uint16_t)sign;               /* below half the smallest subnormal */
        uint32_t e = a >> 23, man = (a & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)e; /* value = man * 2^(e-150) = q * 2^-24 (the subnormal unit) */
        uint32_t q = man >> shift, rem = man & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u); /* round the 13 dropped bits to nearest even */
    return (uint16_t)(sign | (((r >> 23) - 112u) << 10 | ((r >> 13) & 0x3ffu)));
}

const char *kd_st_dtype_name(int dtype) { return dtype == KD_ST_F16 ? "F16" : dtype == KD_ST_BF16 ? "BF16" : "F32"; }
size_t kd_st_dtype_size(int dtype) { return dtype == KD_ST_F32 ? 4 : 2; }

int kd_st_dtype_parse(const char *s, int *dtype) {
    if (strcmp(s, "float32") == 0) *dtype = KD_ST_F32;
    else if (strcmp(s, "bfloat16") == 0) *dtype = KD_ST_BF16;
    else if (strcmp(s, "float16") == 0) *dtype = KD_ST_F16;
    else return -1;
    return 0;
}

/* Write n floats as dtype, converting through a bounded buffer. */
static int write_converted(FILE *f, const float *x, size_t n, int dtype) {
    if (dtype == KD_ST_F32) return fwrite(x, 4, n, f) == n;
    uint16_t buf[4096];
    for (size_t i = 0; i < n;) {
        size_t k = n - i < 4096 ? n - i : 4096;
        for (size_t j = 0; j < k; j++) buf[j] = dtype == KD_ST_BF16 ? kd_f32_to_bf16(x[i + j]) : kd_f32_to_f16(x[i + j]);
        if (fwrite(buf, 2, k, f) != k) return 0;
        i += k;
    }
    return 1;
}

int kd_safetensors_write(const char *path, const kd_st_write_tensor *t, int n, kd_error *err) {
    return kd_safetensors_write_dtype(path, t, n, KD_ST_F32, err);
}

int kd_safetensors_write_dtype(const char *path, const kd_st_write_tensor *t, int n, int dtype, kd_error *err) {
    /* Header built by hand so the bytes are deterministic: metadata first, then tensors in order. */
    size_t cap = 256 + (size_t)n * (KD_ST_MAX_DIMS * 24 + 200), used = 0, es = kd_st_dtype_size(dtype);
    char *h = malloc(cap);
    if (!h) return kd_error_set(err, KD_ERR_NOMEM, "safetensors: out of memory");
    used += (size_t)snprintf(h + used, cap - used, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (strlen(t[i].name) > 150 || strpbrk(t[i].name, "\"\\")) {
            free(h);
            return kd_error_set(err, KD_ERR_INVALID, "safetensors: tensor name '%.60s' is too long or needs escaping", t[i].name);
        }
        uint64_t numel = 1;
        used += (size_t)snprintf(h + used, cap - used, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t[i].name, kd_st_dtype_name(dtype));
        for (int d = 0; d < t[i].ndim; d++) {
            numel *= (uint64_t)t[i].shape[d];
            used += (size_t)snprintf(h + used, cap - used, "%s%lld", d ? "," : "", (long long)t[i].shape[d]);
        }
        used += (size_t)snprintf(h + used, cap - used, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                 (unsigned long long)(off + numel * es));
        off += numel * es;
    }
    used += (size_t)snprintf(h + used, cap - used, "}");
    while (used % 8) h[used++] = ' '; /* data starts 8-aligned, as the reference writer pads */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(h);
        return kd_error_errno(err, errno, "cannot create %s", tmp);
    }
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)((uint64_t)used >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(h, 1, used, f) == used;
    free(h);
    for (int i = 0; ok && i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        ok = write_converted(f, t[i].data, numel, dtype);
    }
    int e = errno;
    if (ok && fflush(f) != 0) { ok = 0; e = errno; }
    if (ok && fsync(fileno(f)) != 0) { ok = 0; e = errno; }
    if (fclose(f) != 0 && ok) { ok = 0; e = errno; }
    if (!ok || rename(tmp, path) != 0) {
        if (ok) e = errno;
        unlink(tmp);
        return kd_error_errno(err, e, "cannot write %s", path);
    }
    return KD_OK;
}

/* ---- model.safetensors.index.json ---- */

void kd_st_index_close(kd_st_index *ix) {
    if (!ix) return;
    for (int i = 0; i < ix->n; i++) free(ix->names[i]);
    for (int i = 0; i < ix->n_files; i++) free(ix->files[i]);
    free(ix->names);
    free(ix->shard);
    free(ix->files);
    free(ix);
}

static int shard_name_ok(const char *f) {
    return f[0] && f[0] != '.' && !strchr(f, '/') && !strchr(f, '\\') && strlen(f) < 256;
}

int kd_st_index_load(const char *path, kd_st_index **out, kd_error *err) {
    *out = NULL;
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return kd_error_set(err, KD_ERR_PARSE, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        json_decref(root);
        return kd_error_set(err, KD_ERR_PARSE, "%s: no \"weight_map\" object (a Hugging Face index maps every tensor name to its shard file)", path);
    }
    size_t n = json_object_size(wm);
    kd_st_index *ix = kd_calloc(1, sizeof *ix);
    if (ix) {
        ix->names = kd_calloc(n, sizeof *ix->names);
        ix->shard = kd_calloc(n, sizeof *ix->shard);
        ix->files = kd_calloc(n, sizeof *ix->files);
    }
    int rc = KD_OK;
    if (!ix || !ix->names || !ix->shard || !ix->files) rc = kd_error_set(err, KD_ERR_NOMEM, "%s: out of memory", path);
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        if (rc) break;
        const char *f = json_string_value(val);
        if (!f || !shard_name_ok(f)) {
            rc = kd_error_set(err, KD_ERR_PARSE, "%s: weight_map[\"%.80s\"] must be a file name in the same folder (no '/', not hidden)", path, key);
            break;
        }
        int s = -1;
        for (int i = 0; i < ix->n_files && s < 0; i++)
            if (strcmp(ix->files[i], f) == 0) s = i;
        if (s < 0) {
            if (!(ix->files[ix->n_files] = kd_strdup(f))) { rc = kd_error_set(err, KD_ERR_NOMEM, "%s: out of memory", path); break; }
            s = ix->n_files++;
        }
        if (!(ix->names[ix->n] = kd_strdup(key))) { rc = kd_error_set(err, KD_ERR_NOMEM, "%s: out of memory", path); break; }
        ix->shard[ix->n++] = s;
    }
    json_decref(root);
    if (rc) {
        kd_st_index_close(ix);
        return rc;
    }
    *out = ix;
    return KD_OK;
}
