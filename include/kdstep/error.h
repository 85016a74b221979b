/* kdstep error records.
 *
 * Every function that can fail returns an int status (KD_OK == 0) and, on failure, fills the
 * caller's kd_error with a message a user can act on: what went wrong, where (file:line:column,
 * JSON path, rank ...), and what to do about it. Callers that add context use kd_error_prefix so
 * the message reads outermost-first: "configs/x.yaml:3:5: unknown key 'lr_rate' (did you mean 'lr'?)".
 * The record is a plain struct on the caller's stack; there is nothing to free. Passing NULL for
 * the record is allowed and drops the message.
 */
#ifndef KDSTEP_ERROR_H
#define KDSTEP_ERROR_H

#include <stddef.h>

enum kd_status {
    KD_OK = 0,
    KD_ERR_IO = 1,          /* open/read/write/rename failed; message carries strerror */
    KD_ERR_PARSE = 2,       /* malformed input (JSON, YAML, safetensors header ...) */
    KD_ERR_INVALID = 3,     /* well-formed but wrong: bad value, schema violation, mismatch */
    KD_ERR_NOMEM = 4,
    KD_ERR_UNSUPPORTED = 5, /* a feature or component we refuse to handle */
    KD_ERR_NET = 6,         /* network / HTTP failure */
    KD_ERR_MPI = 7,
    KD_ERR_NOTFOUND = 8,
    KD_ERR_NOSPACE = 9,     /* ENOSPC / EDQUOT: the disk is full */
    KD_ERR_INTERRUPTED = 10 /* stopped by a signal (SIGTERM/SIGUSR1) after saving state */
};

#define KD_ERROR_MSG_MAX 2048

typedef struct kd_error {
    int code;                   /* enum kd_status */
    char msg[KD_ERROR_MSG_MAX]; /* NUL-terminated, empty when code == KD_OK */
} kd_error;

/* Set the record (if non-NULL) and return code, so callers can write `return kd_error_set(...)`. */
int kd_error_set(kd_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Like kd_error_set, appending ": <strerror(errnum)>"; ENOSPC/EDQUOT become KD_ERR_NOSPACE. */
int kd_error_errno(kd_error *err, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prepend context ("while loading X: ") to an existing message; returns err->code. */
int kd_error_prefix(kd_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kd_error_clear(kd_error *err);
const char *kd_status_name(int code);

/* Allocation helpers that abort with a message on OOM are NOT provided on purpose: allocation
 * failures are reported like any other error. These wrap calloc/realloc with overflow checks. */
void *kd_calloc(size_t n, size_t size);
void *kd_reallocarray(void *p, size_t n, size_t size);
char *kd_strdup(const char *s);
char *kd_strndup(const char *s, size_t n);

/* A URL as it may be printed or recorded: userinfo ("user:password@") becomes "***@". out gets at
 * most cap - 1 bytes; returns out. */
char *kd_url_redact(char *out, size_t cap, const char *url);

#endif
