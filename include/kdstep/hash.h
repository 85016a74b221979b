/* Hashing: SHA-256 for content identity (tokenizer, registry, config hashes stored in datasets and
 * checked on resume), and a fast 64-bit hash for tables and seeded shuffles. */
#ifndef KDSTEP_HASH_H
#define KDSTEP_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct kd_sha256 {
    uint32_t state[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t fill;
} kd_sha256;

void kd_sha256_init(kd_sha256 *h);
void kd_sha256_update(kd_sha256 *h, const void *data, size_t len);
void kd_sha256_final(kd_sha256 *h, uint8_t out[32]);
/* One-shot; hex is 65 bytes (64 hex digits + NUL). */
void kd_sha256_hex(const void *data, size_t len, char hex[65]);

/* FNV-1a 64-bit, then a splitmix finalizer: fine for hash tables, not for security. */
uint64_t kd_hash64(const void *data, size_t len);
/* splitmix64 step: a deterministic RNG that is trivially serializable (one uint64 of state). */
uint64_t kd_splitmix64(uint64_t *state);
/* Uniform float in [0, 1). */
float kd_rand_uniform(uint64_t *state);

#endif
