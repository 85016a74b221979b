/* File helpers: see include/kdstep/fsutil.h. */
#include "kdstep/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int kd_read_file(const char *path, char **data, size_t *len, kd_error *err) {
    *data = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return kd_error_errno(err, errno, "%s: cannot open", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return kd_error_set(err, KD_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return kd_error_set(err, KD_ERR_NOMEM, "%s: out of memory reading file", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) {
        int e = errno;
        free(buf);
        fclose(f);
        return kd_error_errno(err, e, "%s: read failed", path);
    }
    fclose(f);
    buf[n] = '\0';
    *data = buf;
    if (len) *len = n;
    return KD_OK;
}

int kd_fsync_dir(const char *dir, kd_error *err) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return kd_error_errno(err, errno, "%s: cannot open directory", dir);
    fsync(fd); /* some filesystems refuse fsync on directories; that is not an error */
    close(fd);
    return KD_OK;
}

int kd_write_file_atomic(const char *path, const void *data, size_t len, kd_error *err) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return kd_error_errno(err, errno, "%s: cannot create", tmp);
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return kd_error_errno(err, e, "%s: write failed", path);
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return kd_error_errno(err, e, "%s: cannot flush", path);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return kd_error_errno(err, e, "%s: cannot rename temporary file into place", path);
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    return kd_fsync_dir(dirname(dir), NULL) == KD_OK ? KD_OK : KD_OK;
}

int kd_mkdir_p(const char *path, kd_error *err) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return kd_error_set(err, KD_ERR_INVALID, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return kd_error_errno(err, errno, "%s: cannot create directory", buf);
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return kd_error_errno(err, errno, "%s: cannot create directory", buf);
    if (!kd_is_dir(buf)) return kd_error_set(err, KD_ERR_IO, "%s: exists and is not a directory", buf);
    return KD_OK;
}

int kd_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int kd_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int kd_path_join(char *out, size_t cap, const char *a, const char *b) {
    size_t la = strlen(a);
    int n = (la > 0 && a[la - 1] == '/') ? snprintf(out, cap, "%s%s", a, b) : snprintf(out, cap, "%s/%s", a, b);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(p);
}

int kd_rm_rf(const char *path, kd_error *err) {
    if (!kd_path_exists(path)) return KD_OK;
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0) return kd_error_errno(err, errno, "%s: cannot remove", path);
    return KD_OK;
}
