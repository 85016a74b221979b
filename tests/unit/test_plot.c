/* kdstep plot: metrics.jsonl -> PNG through gnuplot; missing or empty metrics are clear errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/fsutil.h"
#include "kdstep/plot.h"
#include "testutil.h"

static void test_png(void) {
    kd_error err = {0};
    kd_test_write("metrics.jsonl",
                  "{\"step\":1,\"loss\":5.0,\"kd\":2.0,\"ce\":2.5,\"tool\":3.0}\n"
                  "{\"step\":2,\"loss\":4.0,\"kd\":1.5,\"ce\":2.0,\"tool\":2.0,\"heldout_loss\":4.2,\"heldout_tool_acc\":0.5}\n"
                  "{\"step\":3,\"loss\":3.0,\"kd\":1.0,\"ce\":1.5,\"tool\":1.0}\n{\"step\":4,\"lo");
    char png[2048];
    snprintf(png, sizeof png, "%s/c.png", kd_test_tmpdir());
    int rc = kd_plot_metrics(kd_test_tmpdir(), png, &err);
    if (rc == KD_ERR_NOTFOUND && strstr(err.msg, "gnuplot is not installed")) {
        kd_test_skip(err.msg);
        return;
    }
    CU_ASSERT_EQUAL_FATAL(rc, KD_OK);
    char *data = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(kd_read_file(png, &data, &len, &err), KD_OK);
    CU_ASSERT_TRUE(len > 1000 && memcmp(data, "\x89PNG", 4) == 0);
    free(data);
}

static void test_errors(void) {
    kd_error err = {0};
    char dir[2048], png[2048];
    snprintf(dir, sizeof dir, "%s/none", kd_test_tmpdir());
    snprintf(png, sizeof png, "%s/x.png", kd_test_tmpdir());
    CU_ASSERT_EQUAL(kd_plot_metrics(dir, png, &err), KD_ERR_IO);
    KD_ASSERT_CONTAINS(err.msg, "cannot read the training metrics");
    CU_ASSERT_EQUAL_FATAL(kd_mkdir_p(dir, &err), KD_OK);
    char m[2100];
    snprintf(m, sizeof m, "%s/metrics.jsonl", dir);
    CU_ASSERT_EQUAL_FATAL(kd_write_file_atomic(m, "", 0, &err), KD_OK);
    CU_ASSERT_EQUAL(kd_plot_metrics(dir, png, &err), KD_ERR_NOTFOUND);
    KD_ASSERT_CONTAINS(err.msg, "no metrics lines to plot");
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("plot", NULL, NULL);
    CU_add_test(s, "png", test_png);
    CU_add_test(s, "errors", test_errors);
    return kd_test_main();
}
