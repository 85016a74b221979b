/* A growable string buffer (in the way Redis uses sds): append bytes, strings or printf output, then
 * take the NUL-terminated result. An allocation that fails, or a length past KD_SBUF_MAX, marks
 * the buffer out of memory: later appends do nothing and kd_sbuf_take returns NULL, so a caller checks
 * once at the end. Zero-initialize it (kd_sbuf b = {0}); kd_sbuf_take or kd_sbuf_free releases it. */
#ifndef KDSTEP_SBUF_H
#define KDSTEP_SBUF_H

#include <stdarg.h>
#include <stddef.h>

/* The bound of every buffer: 1 GiB of text (the NUL not counted). */
#define KD_SBUF_MAX ((size_t)1 << 30)

typedef struct kd_sbuf {
    char *data; /* NUL-terminated once anything (even "") was added; NULL before */
    size_t len, cap;
    int oom; /* an allocation failed or KD_SBUF_MAX was passed: nothing more is added */
} kd_sbuf;

/* Append n bytes of s (s may be NULL when n is 0). */
void kd_sbuf_add(kd_sbuf *b, const char *s, size_t n);
void kd_sbuf_puts(kd_sbuf *b, const char *s);
void kd_sbuf_printf(kd_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Take the NUL-terminated string (caller frees; "" when nothing was added); the buffer is reset.
 * NULL when the buffer is out of memory (it is then freed). */
char *kd_sbuf_take(kd_sbuf *b);
void kd_sbuf_free(kd_sbuf *b);

#endif
