/* Progress display for long work.
 *
 * On a terminal (stderr is a TTY) it redraws one line: a bar, done/total, rate, ETA and a caller's
 * extra text. Elsewhere (Slurm logs, pipes) it prints a plain line every `interval` seconds
 * (KDSTEP_PROGRESS_INTERVAL, default 10) and a final line at close, so logs stay readable.
 */
#ifndef KDSTEP_PROGRESS_H
#define KDSTEP_PROGRESS_H

#include <stdint.h>

typedef struct kd_progress {
    char label[64];
    int64_t total;     /* <= 0: unknown total, no bar or ETA */
    int64_t done;
    double start_s;    /* monotonic seconds at open */
    double last_draw_s;
    double interval_s; /* plain-line interval when not a TTY */
    int tty;
    int enabled;
    char unit[16];     /* "samples", "steps", ... */
} kd_progress;

void kd_progress_open(kd_progress *p, const char *label, int64_t total, const char *unit);
/* Report absolute progress; extra (may be NULL) is appended, e.g. "loss 2.31 | retries 4". */
void kd_progress_update(kd_progress *p, int64_t done, const char *extra);
void kd_progress_close(kd_progress *p, const char *extra);
/* Format one status line into buf (exposed for tests). */
void kd_progress_format(const kd_progress *p, double now_s, const char *extra, int bar, char *buf, int cap);
double kd_now_s(void); /* monotonic clock in seconds */

#endif
