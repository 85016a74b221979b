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

int kd_safetensors_write(const char *path, const kd_st_write_tensor *t, int n, kd_error *err) {
    /* Header built by hand so the bytes are deterministic: metadata first, then tensors in order. */
    size_t cap = 256 + (size_t)n * (KD_ST_MAX_DIMS * 24 + 200), used = 0;
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
        used += (size_t)snprintf(h + used, cap - used, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", t[i].name);
        for (int d = 0; d < t[i].ndim; d++) {
            numel *= (uint64_t)t[i].shape[d];
            used += (size_t)snprintf(h + used, cap - used, "%s%lld", d ? "," : "", (long long)t[i].shape[d]);
        }
        used += (size_t)snprintf(h + used, cap - used, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                 (unsigned long long)(off + numel * 4));
        off += numel * 4;
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
        ok = fwrite(t[i].data, 4, numel, f) == numel;
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
