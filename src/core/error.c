/* Error records: see include/kdstep/error.h. */
#include "kdstep/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kd_error_set(kd_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int kd_error_errno(kd_error *err, int errnum, const char *fmt, ...) {
    int code = (errnum == ENOSPC || errnum == EDQUOT) ? KD_ERR_NOSPACE : KD_ERR_IO;
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        if (n < 0) n = 0;
        if ((size_t)n < sizeof err->msg)
            snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s%s", strerror(errnum),
                     code == KD_ERR_NOSPACE ? " (free space, then rerun with --resume)" : "");
        err->code = code;
    }
    return code;
}

int kd_error_prefix(kd_error *err, const char *fmt, ...) {
    if (!err) return KD_ERR_INVALID;
    char prefix[KD_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[KD_ERROR_MSG_MAX];
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s%s", prefix, old);
    return err->code;
}

void kd_error_clear(kd_error *err) {
    if (err) {
        err->code = KD_OK;
        err->msg[0] = '\0';
    }
}

const char *kd_status_name(int code) {
    switch (code) {
    case KD_OK: return "ok";
    case KD_ERR_IO: return "io";
    case KD_ERR_PARSE: return "parse";
    case KD_ERR_INVALID: return "invalid";
    case KD_ERR_NOMEM: return "nomem";
    case KD_ERR_UNSUPPORTED: return "unsupported";
    case KD_ERR_NET: return "net";
    case KD_ERR_MPI: return "mpi";
    case KD_ERR_NOTFOUND: return "notfound";
    case KD_ERR_NOSPACE: return "nospace";
    case KD_ERR_INTERRUPTED: return "interrupted";
    default: return "unknown";
    }
}

void *kd_calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }

void *kd_reallocarray(void *p, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    size_t bytes = n * size;
    return realloc(p, bytes ? bytes : 1);
}

char *kd_strdup(const char *s) { return s ? strdup(s) : NULL; }

/* Like strndup: stops at a NUL within the first n bytes (callers pass caps such as "at most 120
 * bytes" on short strings). The buffer is n+1 bytes, zero-filled past the copy, so a caller that
 * treats it as n bytes never reads uninitialized memory. */
char *kd_strndup(const char *s, size_t n) {
    size_t len = strnlen(s, n);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, len);
    memset(d + len, 0, n - len + 1);
    return d;
}

char *kd_url_redact(char *out, size_t cap, const char *url) {
    if (!cap) return out;
    const char *scheme = strstr(url, "://");
    const char *host = scheme ? scheme + 3 : url;
    size_t auth = strcspn(host, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < auth; i++)
        if (host[i] == '@') at = host + i;
    if (!at) snprintf(out, cap, "%s", url);
    else snprintf(out, cap, "%.*s***%s", (int)(host - url), url, at);
    return out;
}
