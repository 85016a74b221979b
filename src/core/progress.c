/* Progress display: see include/kdstep/progress.h. */
#include "kdstep/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double kd_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fmt_duration(double s, char *buf, int cap) {
    if (s < 0 || s > 1e7) {
        snprintf(buf, (size_t)cap, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, (size_t)cap, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, (size_t)cap, "%02ld:%02ld", t / 60, t % 60);
}

void kd_progress_open(kd_progress *p, const char *label, int64_t total, const char *unit) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "items");
    p->total = total;
    p->start_s = kd_now_s();
    p->last_draw_s = 0;
    p->tty = isatty(STDERR_FILENO);
    const char *iv = getenv("KDSTEP_PROGRESS_INTERVAL");
    p->interval_s = iv ? atof(iv) : 10.0;
    if (p->interval_s <= 0) p->interval_s = 10.0;
    p->enabled = getenv("KDSTEP_NO_PROGRESS") == NULL;
}

void kd_progress_format(const kd_progress *p, double now_s, const char *extra, int bar, char *buf, int cap) {
    double el = now_s - p->start_s;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32], elapsed[32];
    fmt_duration(el, elapsed, sizeof elapsed);
    if (p->total > 0 && rate > 0) fmt_duration((double)(p->total - p->done) / rate, eta, sizeof eta);
    else snprintf(eta, sizeof eta, "--:--");
    int n = 0;
    if (p->total > 0) {
        double frac = (double)p->done / (double)p->total;
        if (frac > 1) frac = 1;
        if (bar) {
            char b[32];
            int w = 24, fill = (int)(frac * w);
            for (int i = 0; i < w; i++) b[i] = i < fill ? '#' : '-';
            b[w] = '\0';
            n = snprintf(buf, (size_t)cap, "%s [%s] %3.0f%% %lld/%lld %s | %.1f %s/s | elapsed %s | ETA %s", p->label, b,
                         frac * 100, (long long)p->done, (long long)p->total, p->unit, rate, p->unit, elapsed, eta);
        } else {
            n = snprintf(buf, (size_t)cap, "%s: %lld/%lld %s (%.1f%%) | %.2f %s/s | elapsed %s | ETA %s", p->label,
                         (long long)p->done, (long long)p->total, p->unit, frac * 100, rate, p->unit, elapsed, eta);
        }
    } else {
        n = snprintf(buf, (size_t)cap, "%s: %lld %s | %.2f %s/s | elapsed %s", p->label, (long long)p->done, p->unit,
                     rate, p->unit, elapsed);
    }
    if (extra && *extra && n >= 0 && n < cap) snprintf(buf + n, (size_t)(cap - n), " | %s", extra);
}

void kd_progress_update(kd_progress *p, int64_t done, const char *extra) {
    p->done = done;
    if (!p->enabled) return;
    double now = kd_now_s();
    double gap = p->tty ? 0.1 : p->interval_s;
    if (p->last_draw_s != 0 && now - p->last_draw_s < gap) return;
    if (p->last_draw_s == 0 && !p->tty && now - p->start_s < gap) {
        /* first plain line only after one interval, so short runs print just the final line */
        return;
    }
    p->last_draw_s = now;
    char line[512];
    kd_progress_format(p, now, extra, p->tty, line, sizeof line);
    if (p->tty) fprintf(stderr, "\r\033[K%s", line);
    else fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

void kd_progress_close(kd_progress *p, const char *extra) {
    if (!p->enabled) return;
    char line[512];
    kd_progress_format(p, kd_now_s(), extra, p->tty, line, sizeof line);
    if (p->tty) fprintf(stderr, "\r\033[K%s\n", line);
    else fprintf(stderr, "%s\n", line);
    fflush(stderr);
}
