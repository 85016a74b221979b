/* kdstep plot: a training run's curves as a PNG (logic in src/train/plot.c). */
#include <stdlib.h>

#include "cli.h"
#include "kdstep/plot.h"

static const char USAGE[] =
    "usage: kdstep plot RUN_DIR [-o curves.png]\n"
    "\n"
    "Draws RUN_DIR/metrics.jsonl with gnuplot: the combined loss, each loss term and the held-out\n"
    "loss over steps, and the held-out teacher-forced tool-name accuracy.\n"
    "  -o, --output FILE   PNG to write (default RUN_DIR/curves.png)\n";

int kd_cmd_plot(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *out = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: return kd_cli_usage_error(USAGE, "plot: unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind + 1 != argc) return kd_cli_usage_error(USAGE, "plot: expected exactly one RUN_DIR");
    const char *run = argv[optind];
    char def[4096];
    if (!out) {
        snprintf(def, sizeof def, "%s/curves.png", run);
        out = def;
    }
    kd_error err = {0};
    if (kd_plot_metrics(run, out, &err)) return kd_cli_fail(&err);
    printf("%s\n", out);
    return 0;
}
