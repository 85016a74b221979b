/* Levelled logging to stderr.
 *
 * Under MPI each line carries "[rank N]" once kd_log_set_rank has been told the rank and world
 * size (> 1); the cli layer does that right after MPI_Init, so modules never talk MPI to log.
 * The level comes from kd_log_set_level or the KDSTEP_LOG environment variable
 * (error, warn, info, debug). Lines are written with one write() so ranks do not interleave mid-line.
 */
#ifndef KDSTEP_LOG_H
#define KDSTEP_LOG_H

enum kd_log_level { KD_LOG_ERROR = 0, KD_LOG_WARN = 1, KD_LOG_INFO = 2, KD_LOG_DEBUG = 3 };

void kd_log_set_level(int level);
int kd_log_get_level(void);
/* Parse "error|warn|info|debug"; returns -1 when unknown. */
int kd_log_level_from_name(const char *name);
void kd_log_set_rank(int rank, int world_size);
void kd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define KD_ERROR(...) kd_log(KD_LOG_ERROR, __VA_ARGS__)
#define KD_WARN(...) kd_log(KD_LOG_WARN, __VA_ARGS__)
#define KD_INFO(...) kd_log(KD_LOG_INFO, __VA_ARGS__)
#define KD_DEBUG(...) kd_log(KD_LOG_DEBUG, __VA_ARGS__)

#endif
