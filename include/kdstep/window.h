/* What part of a sample the student sees, in training and in eval alike.
 *
 * Full context (train.prompt_window = 0, the default): a training sample is seen whole when it fits
 * train.seq_len = T, else its last T tokens (the head of the system turn goes first); eval shows a
 * prompt whole when it fits T - eval.max_new_tokens, else its last T - max_new tokens and counts it
 * (kd_eval_run warns: the student did not see the head of the system turn, the tools). Choose T from
 * `kdstep inspect`'s length distribution (or `train.seq_len: 0` in a job, which picks it) and nothing
 * is cut: the student then reads every tool's schema, and eval feeds it exactly the prompt tokens it
 * trained on (tests/unit/test_evaluate_dataset.c).
 *
 * A prompt window (train.prompt_window = P > 0, the older regime): the prompt's last P tokens, then
 * the answer, up to T tokens; eval shows the prompt's last P tokens.
 */
#ifndef KDSTEP_WINDOW_H
#define KDSTEP_WINDOW_H

#include <stdint.h>

/* First token of the training window of a sample of n tokens whose prompt has prompt_len. */
int64_t kd_train_window_start(int64_t n, int64_t prompt_len, int64_t window, int64_t T);
/* Prompt tokens eval keeps (the last ones): > 0 always; compare with the prompt's length to know
 * whether it was cut. */
int64_t kd_eval_prompt_keep(int64_t window, int64_t T, int64_t max_new);

#endif
