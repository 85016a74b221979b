/* A growable string buffer: see include/kdstep/sbuf.h. */
#include "kdstep/sbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/error.h"

void kd_sbuf_add(kd_sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (n > KD_SBUF_MAX - b->len) { /* len never exceeds KD_SBUF_MAX */
        b->oom = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            b->oom = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void kd_sbuf_puts(kd_sbuf *b, const char *s) { kd_sbuf_add(b, s, strlen(s)); }

void kd_sbuf_printf(kd_sbuf *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) { /* an output error: the text would be incomplete */
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        kd_sbuf_add(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    kd_sbuf_add(b, big, (size_t)n);
    free(big);
}

char *kd_sbuf_take(kd_sbuf *b) {
    if (b->oom) {
        kd_sbuf_free(b);
        return NULL;
    }
    char *d = b->data ? b->data : kd_strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

void kd_sbuf_free(kd_sbuf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}
