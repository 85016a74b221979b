/* Helpers shared by the teacher backends, in common.c (not a public API). */
#ifndef KD_TEACHER_COMMON_H
#define KD_TEACHER_COMMON_H

#include <stdarg.h>
#include <stddef.h>

#include "kdstep/sbuf.h" /* the string buffer the backends build bodies in */

/* Replace every occurrence of `secret` in s (in place, same length, with '*'). */
void kd_redact(char *s, const char *secret);

/* Move the logprob arrays into one new allocation of ncap rows and k columns, keeping the first
 * `rows` rows (their columns beyond the old lp->k padded: id -1, no token, -inf); lp->k becomes k.
 * The block it replaces is freed, the token strings are kept. Returns 0, or -1 out of memory (lp is
 * then unchanged). */
struct kd_teacher_logprobs;
int kd_teacher_logprobs_reshape(struct kd_teacher_logprobs *lp, size_t rows, size_t ncap, size_t k);

/* chat_template_kwargs.enable_thinking of teacher.extra_body ("" or a JSON object): the stub's thinking. */
typedef struct kd_error kd_error;
int kd_extra_body_thinking(const char *extra_body, int *thinking, kd_error *err);

#endif
