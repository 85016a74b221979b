/* Training curves: RUN_DIR/metrics.jsonl -> a PNG drawn by gnuplot (Debian's gnuplot package).
 *
 * Two panels over steps: the combined loss and each loss term (and the held-out loss), and the
 * held-out teacher-forced tool-name accuracy. `kdstep plot` and the end of `kdstep train` call it.
 */
#ifndef KDSTEP_PLOT_H
#define KDSTEP_PLOT_H

#include "kdstep/error.h"

/* Reads run_dir/metrics.jsonl, writes png_path. KD_ERR_NOTFOUND when there are no metrics or gnuplot
 * is missing (the message says which). */
int kd_plot_metrics(const char *run_dir, const char *png_path, kd_error *err);

#endif
