/* Logging: see include/kdstep/log.h. */
#include "kdstep/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static int g_level = -1; /* -1: not yet read from KDSTEP_LOG */
static int g_rank = -1;

int kd_log_level_from_name(const char *name) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (name && strcasecmp(name, names[i]) == 0) return i;
    return -1;
}

int kd_log_get_level(void) {
    if (g_level < 0) {
        int l = kd_log_level_from_name(getenv("KDSTEP_LOG"));
        g_level = l >= 0 ? l : KD_LOG_INFO;
    }
    return g_level;
}

void kd_log_set_level(int level) { g_level = level; }

void kd_log_set_rank(int rank, int world_size) { g_rank = world_size > 1 ? rank : -1; }

void kd_log(int level, const char *fmt, ...) {
    if (level > kd_log_get_level()) return;
    static const char *tags[] = {"error: ", "warning: ", "", "debug: "};
    char line[4096];
    int n = 0;
    if (g_rank >= 0) n = snprintf(line, sizeof line, "[rank %d] ", g_rank);
    n += snprintf(line + n, sizeof line - (size_t)n, "%s", tags[level < 0 ? 0 : level > 3 ? 3 : level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    n += m;
    if ((size_t)n >= sizeof line - 1) n = (int)sizeof line - 2;
    if (n == 0 || line[n - 1] != '\n') line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
