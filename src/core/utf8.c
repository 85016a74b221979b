/* UTF-8 encoding and JSON \u escapes: see include/kdstep/utf8.h. */
#include "kdstep/utf8.h"

int kd_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int kd_hex_digit(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One \uXXXX at p; 0 when it is not there in full. */
static int read_u(const char *p, const char *end, uint32_t *v) {
    if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return 0;
    uint32_t x = 0;
    for (int k = 2; k < 6; k++) {
        int h = kd_hex_digit((unsigned char)p[k]);
        if (h < 0) return 0;
        x = x * 16 + (uint32_t)h;
    }
    *v = x;
    return 1;
}

size_t kd_json_unescape_u(const char *p, const char *end, uint32_t *cp) {
    uint32_t hi, lo;
    if (!read_u(p, end, &hi)) return 0;
    *cp = hi;
    if (kd_utf16_is_high(hi) && read_u(p + 6, end, &lo) && kd_utf16_is_low(lo)) {
        *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
        return 12;
    }
    return 6;
}
