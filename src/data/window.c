/* Training and eval windows: see include/kdstep/window.h. */
#include "kdstep/window.h"

int64_t kd_train_window_start(int64_t n, int64_t prompt_len, int64_t window, int64_t T) {
    if (window > 0) return prompt_len > window ? prompt_len - window : 0;
    return n > T ? n - T : 0;
}

int64_t kd_eval_prompt_keep(int64_t window, int64_t T, int64_t max_new) {
    if (window > 0) return window;
    int64_t keep = T - max_new;
    return keep > 0 ? keep : 1;
}
