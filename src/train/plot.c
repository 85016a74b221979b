/* Training curves with gnuplot (see include/kdstep/plot.h). */
#include "kdstep/plot.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kdstep/fsutil.h"

static const char *COLS[] = {"loss", "kd", "ce", "tool", "json_ce", "json_grammar", "integration", "heldout_loss",
                             "heldout_tool_acc"};
#define NCOLS (int)(sizeof COLS / sizeof COLS[0])

static int gnuplot_available(void) {
    const char *p = getenv("PATH");
    if (!p) p = "/usr/bin:/bin";
    char *dup = strdup(p), *save = NULL;
    int found = 0;
    for (char *d = strtok_r(dup, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char f[4096];
        snprintf(f, sizeof f, "%s/gnuplot", d);
        found = access(f, X_OK) == 0;
    }
    free(dup);
    return found;
}

int kd_plot_metrics(const char *run_dir, const char *png_path, kd_error *err) {
    char mpath[4096], dpath[4200];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", run_dir);
    FILE *in = fopen(mpath, "r");
    if (!in) return kd_error_errno(err, errno, "%s: cannot read the training metrics", mpath);
    snprintf(dpath, sizeof dpath, "%s.dat.%ld", png_path, (long)getpid());
    FILE *out = fopen(dpath, "w");
    if (!out) {
        fclose(in);
        return kd_error_errno(err, errno, "%s: cannot write", dpath);
    }
    char *line = NULL;
    size_t cap = 0;
    long rows = 0, lineno = 0;
    int present[NCOLS] = {0};
    while (getline(&line, &cap, in) > 0) {
        lineno++;
        json_error_t je;
        json_t *js = json_loads(line, 0, &je);
        if (!js || !json_is_integer(json_object_get(js, "step"))) {
            json_decref(js);
            continue; /* a torn last line of a killed run */
        }
        fprintf(out, "%lld", (long long)json_integer_value(json_object_get(js, "step")));
        for (int c = 0; c < NCOLS; c++) {
            json_t *v = json_object_get(js, COLS[c]);
            if (json_is_number(v)) {
                fprintf(out, " %.10g", json_number_value(v));
                present[c] = 1;
            } else fprintf(out, " NaN");
        }
        fputc('\n', out);
        rows++;
        json_decref(js);
    }
    free(line);
    fclose(in);
    fclose(out);
    if (rows == 0) {
        unlink(dpath);
        return kd_error_set(err, KD_ERR_NOTFOUND, "%s: no metrics lines to plot (has the run done a step?)", mpath);
    }
    if (!gnuplot_available()) {
        unlink(dpath);
        return kd_error_set(err, KD_ERR_NOTFOUND, "gnuplot is not installed (apt-get install gnuplot-nox); cannot draw %s",
                            png_path);
    }
    char script[8192];
    size_t u = 0;
    u += (size_t)snprintf(script + u, sizeof script - u,
                          "set terminal pngcairo size 1200,500 noenhanced\n"
                          "set output '%s'\n"
                          "set datafile missing 'NaN'\n"
                          "set multiplot layout 1,2 title 'kdstep training: %s'\n"
                          "set xlabel 'step'\nset ylabel 'loss'\nset key outside bottom center horizontal\nset grid\n"
                          "plot ",
                          png_path, run_dir);
    int first = 1;
    for (int c = 0; c < NCOLS - 1; c++) {
        if (!present[c]) continue;
        const char *style = c == NCOLS - 2 ? "linespoints pt 7 lw 2" : "lines";
        u += (size_t)snprintf(script + u, sizeof script - u, "%s'%s' using 1:%d with %s title '%s'", first ? "" : ", ", dpath,
                              c + 2, style, COLS[c]);
        first = 0;
    }
    u += (size_t)snprintf(script + u, sizeof script - u,
                          "\nset ylabel 'held-out tool-name accuracy'\nset yrange [0:1]\n"
                          "plot '%s' using 1:%d with linespoints pt 7 lw 2 title 'heldout_tool_acc'\n"
                          "unset multiplot\n",
                          dpath, NCOLS + 1);
    if (!present[NCOLS - 1]) {
        /* no eval yet: an empty panel would make gnuplot fail on an all-missing column */
        char *p = strstr(script, "plot '");
        char *q = p ? strstr(p + 1, "\nset ylabel 'held-out") : NULL;
        if (q) snprintf(q, sizeof script - (size_t)(q - script), "\nunset multiplot\n");
    }
    FILE *gp = popen("gnuplot >/dev/null 2>&1", "w");
    if (!gp) {
        unlink(dpath);
        return kd_error_errno(err, errno, "cannot run gnuplot");
    }
    fputs(script, gp);
    int st = pclose(gp);
    unlink(dpath);
    if (st != 0 || !kd_path_exists(png_path))
        return kd_error_set(err, KD_ERR_IO, "gnuplot failed to draw %s (exit status %d)", png_path,
                            WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return KD_OK;
}
