/* The OpenAI-compatible client behind kd_teacher (client.c); teacher.c dispatches to it. Not a
 * public API. */
#ifndef KD_TEACHER_CLIENT_H
#define KD_TEACHER_CLIENT_H

#include "kdstep/teacher.h"

struct kd_teacher_client;
int kd_client_open(struct kd_teacher_client **out, const kd_config *cfg, kd_error *err);
void kd_client_close(struct kd_teacher_client *c);
int kd_client_submit(struct kd_teacher_client *c, const kd_teacher_request *req, kd_error *err);
int kd_client_submit_score(struct kd_teacher_client *c, const json_t *messages, const json_t *tools, uint64_t tag, kd_error *err);
int kd_client_next(struct kd_teacher_client *c, double timeout_s, kd_teacher_completion **out, kd_error *err);
void kd_client_stats(const struct kd_teacher_client *c, kd_teacher_stats *st);

#endif
