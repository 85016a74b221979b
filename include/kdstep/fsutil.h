/* File helpers: whole-file reads, atomic writes (temp name + fsync + rename), mkdir -p.
 * A file kdstep writes is never rewritten in place: readers see the old one or the new one. */
#ifndef KDSTEP_FSUTIL_H
#define KDSTEP_FSUTIL_H

#include <stddef.h>
#include "kdstep/error.h"

/* Read a whole file; *data is NUL-terminated (not counted in *len). Free with free(). */
int kd_read_file(const char *path, char **data, size_t *len, kd_error *err);
/* Write data to path.tmp.<pid>, fsync, rename over path, fsync the directory. */
int kd_write_file_atomic(const char *path, const void *data, size_t len, kd_error *err);
int kd_mkdir_p(const char *path, kd_error *err);
int kd_path_exists(const char *path);
int kd_is_dir(const char *path);
/* snprintf-style join "a/b"; returns 0, or -1 when it does not fit. */
int kd_path_join(char *out, size_t cap, const char *a, const char *b);
/* fsync a directory so a rename inside it is durable. */
int kd_fsync_dir(const char *dir, kd_error *err);
/* Remove a directory tree (used for temporary checkpoint folders). */
int kd_rm_rf(const char *path, kd_error *err);

#endif
