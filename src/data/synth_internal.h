/* Shared between synth.c (the registry regime) and synth_pool.c (per-prompt tool sets); private to
 * src/data. */
#ifndef KDSTEP_SYNTH_INTERNAL_H
#define KDSTEP_SYNTH_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "kdstep/registry.h"

/* A request that needs no tool (small talk, a knowledge question). */
void kd_synth_chat_text(uint64_t *rng, char *out, size_t cap);
const char *kd_synth_pick_opener(uint64_t *rng);
const char *kd_synth_pick_joiner(uint64_t *rng);
const char *kd_synth_pick_closing(uint64_t *rng);

#endif
