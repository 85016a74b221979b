/* The serving engine: continuous batching over kd_model_step_rows. See include/kdstep/engine.h. */
#include "kdstep/engine.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdstep/fsutil.h"
#include "kdstep/log.h"

struct kd_seq {
    struct kd_engine *e;
    int refs; /* the holder and, while queued or live, the engine */
    int32_t *prompt;
    int n_prompt, fed; /* prompt tokens in the cache */
    kd_gen_params p;
    kd_sampler sampler;
    kd_kv_cache *kv;
    kd_gen_token *out; /* [p.max_tokens] */
    int n_out, state, cancel;
    kd_gen_token *plp; /* [n_prompt] or NULL */
    kd_seq *next;      /* pending FIFO */
    pthread_cond_t cv; /* its waiter's; signalled only when what it waits for happened */
    int wake_at;       /* the waiter wakes when n_out > wake_at or the sequence ends */
    size_t kv_bytes;   /* its share of the engine's KV budget, held while queued or live */
};

struct kd_engine {
    kd_student *st;
    kd_engine_options o;
    pthread_t thread;
    int started, stop;
    pthread_mutex_t mu;
    pthread_cond_t work;
    kd_seq *head, *tail; /* pending */
    int n_pending;
    kd_seq **live;
    int n_live;
    kd_batch_scratch *scratch;
    int cap_rows;
    float *logits;  /* [cap_rows, V] */
    float *sample;  /* [V] */
    size_t kv_held; /* KV budget held by queued + live sequences (o.max_kv_bytes at most) */
    kd_engine_stats stats;
};

static void seq_free(kd_seq *s) {
    pthread_cond_destroy(&s->cv);
    kd_kv_cache_free(s->kv);
    free(s->prompt);
    free(s->out);
    free(s->plp);
    kd_tool_guide_close(s->p.guide);
    free(s);
}

/* with e->mu held: wake the sequence's waiter if what it waits for happened, then drop a reference */
static void wake_locked(kd_seq *s) {
    if (s->state != KD_SEQ_RUNNING || s->n_out > s->wake_at) pthread_cond_broadcast(&s->cv);
}

static void seq_unref_locked(kd_seq *s) {
    wake_locked(s);
    if (--s->refs == 0) seq_free(s);
}

/* The engine lets go of a sequence (finished, cancelled, failed): its KV budget is free again. */
static void engine_drop_locked(kd_engine *e, kd_seq *s) {
    e->kv_held -= s->kv_bytes;
    s->kv_bytes = 0;
    seq_unref_locked(s);
}

static void *scheduler(void *arg);

int kd_engine_open(const char *model_dir, const kd_engine_options *opt, kd_engine **out, kd_error *err) {
    *out = NULL;
    kd_engine *e = kd_calloc(1, sizeof *e);
    if (!e) return kd_error_set(err, KD_ERR_NOMEM, "serve: out of memory");
    e->o.max_batch = opt && opt->max_batch > 0 ? opt->max_batch : 16;
    e->o.prefill_chunk = opt && opt->prefill_chunk > 0 ? opt->prefill_chunk : 256;
    e->o.max_queue = opt && opt->max_queue > 0 ? opt->max_queue : 256;
    e->o.max_kv_bytes = opt && opt->max_kv_bytes > 0 ? opt->max_kv_bytes : (size_t)2 << 30;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work, NULL);
    int rc = kd_student_open(&e->st, model_dir, err);
    if (rc) goto fail;
    int V = e->st->model->cfg.vocab_size;
    e->cap_rows = e->o.prefill_chunk + e->o.max_batch;
    e->live = kd_calloc((size_t)e->o.max_batch, sizeof *e->live);
    e->logits = kd_calloc((size_t)e->cap_rows * (size_t)V, sizeof(float));
    e->sample = kd_calloc((size_t)V, sizeof(float));
    if (!e->live || !e->logits || !e->sample) {
        rc = kd_error_set(err, KD_ERR_NOMEM, "serve: out of memory for %d rows of logits", e->cap_rows);
        goto fail;
    }
    if ((rc = kd_batch_scratch_new(e->st->model, e->cap_rows, &e->scratch, err))) goto fail;
    if (pthread_create(&e->thread, NULL, scheduler, e) != 0) {
        rc = kd_error_set(err, KD_ERR_IO, "serve: cannot start the scheduler thread");
        goto fail;
    }
    e->started = 1;
    *out = e;
    return KD_OK;
fail:
    kd_engine_close(e);
    return rc;
}

static void cancel_all_locked(kd_engine *e) {
    for (int i = 0; i < e->n_live; i++) {
        e->live[i]->state = KD_SEQ_CANCELLED;
        engine_drop_locked(e, e->live[i]);
    }
    e->n_live = 0;
    while (e->head) {
        kd_seq *s = e->head;
        e->head = s->next;
        s->state = KD_SEQ_CANCELLED;
        engine_drop_locked(e, s);
    }
    e->tail = NULL;
    e->n_pending = 0;
}

void kd_engine_shutdown(kd_engine *e) {
    if (e->started) {
        pthread_mutex_lock(&e->mu);
        e->stop = 1;
        pthread_cond_broadcast(&e->work);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
        e->started = 0;
    }
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    cancel_all_locked(e);
    pthread_mutex_unlock(&e->mu);
}

void kd_engine_close(kd_engine *e) {
    if (!e) return;
    kd_engine_shutdown(e);
    kd_batch_scratch_free(e->scratch);
    kd_student_close(e->st);
    free(e->live);
    free(e->logits);
    free(e->sample);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->work);
    free(e);
}

const kd_student *kd_engine_student(const kd_engine *e) { return e->st; }

/* What kd_kv_cache_new allocates for max_T positions (src/model/decode.c): K and V for every layer and
 * position, the attention row, and one position's activations and logits. */
size_t kd_engine_kv_bytes(const kd_engine *e, int tokens) {
    const kd_model_config *c = &e->st->model->cfg;
    size_t T = (size_t)(tokens > 0 ? tokens : 0), KD = (size_t)c->num_kv_heads * (size_t)c->head_dim;
    size_t QD = (size_t)c->num_heads * (size_t)c->head_dim, C = (size_t)c->hidden_size, big = QD > C ? QD : C;
    return sizeof(float) * (2 * (size_t)c->num_layers * T * KD + T + C + 2 * big + QD + 2 * (size_t)c->intermediate_size +
                            (size_t)c->vocab_size);
}

int kd_engine_submit(kd_engine *e, const int32_t *prompt, int n_prompt, const kd_gen_params *p, kd_seq **out,
                     kd_error *err) {
    *out = NULL;
    int maxpos = e->st->model->cfg.max_position_embeddings, V = e->st->model->cfg.vocab_size;
    if (n_prompt <= 0) return kd_error_set(err, KD_ERR_INVALID, "the prompt is empty");
    if (p->max_tokens < 1) return kd_error_set(err, KD_ERR_INVALID, "max_tokens must be at least 1");
    if ((int64_t)n_prompt + p->max_tokens > maxpos)
        return kd_error_set(err, KD_ERR_INVALID,
                            "This model's maximum context length is %d tokens. However, you requested %lld tokens (%d in the "
                            "prompt, %d for the completion). Please reduce the prompt or max_tokens.",
                            maxpos, (long long)n_prompt + p->max_tokens, n_prompt, p->max_tokens);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V) return kd_error_set(err, KD_ERR_INVALID, "prompt token %d is %d, outside the vocabulary 0..%d", i, prompt[i], V - 1);
    kd_seq *s = kd_calloc(1, sizeof *s);
    if (!s) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    pthread_cond_init(&s->cv, NULL);
    s->prompt = kd_calloc((size_t)n_prompt, sizeof(int32_t));
    s->out = kd_calloc((size_t)p->max_tokens, sizeof(kd_gen_token));
    if (p->prompt_logprobs >= 0) s->plp = kd_calloc((size_t)n_prompt, sizeof(kd_gen_token));
    if (!s->prompt || !s->out || (p->prompt_logprobs >= 0 && !s->plp)) {
        seq_free(s);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory for a request of %d + %d tokens", n_prompt, p->max_tokens);
    }
    memcpy(s->prompt, prompt, (size_t)n_prompt * sizeof(int32_t));
    s->n_prompt = n_prompt;
    s->p = *p;
    if (s->p.top_logprobs > KD_ENGINE_MAX_TOP) s->p.top_logprobs = KD_ENGINE_MAX_TOP;
    if (s->p.prompt_logprobs > KD_ENGINE_MAX_TOP) s->p.prompt_logprobs = KD_ENGINE_MAX_TOP;
    s->sampler.temperature = p->temperature;
    s->sampler.top_p = p->top_p > 0.0f && p->top_p < 1.0f ? p->top_p : 1.0f;
    s->sampler.rng = p->seed;
    s->refs = 2;
    s->e = e;
    pthread_mutex_lock(&e->mu);
    if (e->stop || e->n_pending + e->n_live >= e->o.max_queue) {
        int stopping = e->stop;
        pthread_mutex_unlock(&e->mu);
        s->p.guide = NULL; /* refused: the caller keeps its guide */
        seq_free(s);
        return kd_error_set(err, KD_ERR_IO, stopping ? "the server is shutting down" : "the server is busy: %d requests are queued; retry later", e->o.max_queue);
    }
    /* every KV cache is bounded by one budget for the whole server (--max-kv-mb) */
    size_t need = kd_engine_kv_bytes(e, n_prompt + p->max_tokens), cap = e->o.max_kv_bytes;
    if (need > cap || e->kv_held + need > cap) {
        size_t held = e->kv_held;
        int n = e->n_pending + e->n_live;
        e->stats.kv_refused++;
        pthread_mutex_unlock(&e->mu);
        s->p.guide = NULL; /* refused: the caller keeps its guide */
        seq_free(s);
        const double MiB = 1024.0 * 1024.0;
        if (need > cap)
            return kd_error_set(err, KD_ERR_INVALID,
                                "this request needs %.1f MiB of KV cache (%d prompt + %d max_tokens tokens), more than the server's "
                                "whole KV budget of %.1f MiB (--max-kv-mb): lower max_tokens or shorten the prompt",
                                need / MiB, n_prompt, p->max_tokens, cap / MiB);
        return kd_error_set(err, KD_ERR_IO,
                            "the server is busy: its KV cache budget of %.1f MiB (--max-kv-mb) is held by %d requests "
                            "(%.1f MiB), and this one needs %.1f MiB (%d prompt + %d max_tokens tokens); retry later, or ask for "
                            "fewer max_tokens",
                            cap / MiB, n, held / MiB, need / MiB, n_prompt, p->max_tokens);
    }
    s->kv_bytes = need;
    e->kv_held += need;
    if (e->tail) e->tail->next = s;
    else e->head = s;
    e->tail = s;
    e->n_pending++;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
    *out = s;
    return KD_OK;
}

int kd_seq_wait(kd_seq *s, int have, double timeout_s, int *state) {
    kd_engine *e = s->e;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    double t = (double)dl.tv_sec + dl.tv_nsec * 1e-9 + timeout_s;
    dl.tv_sec = (time_t)t;
    dl.tv_nsec = (long)((t - (double)dl.tv_sec) * 1e9);
    pthread_mutex_lock(&e->mu);
    s->wake_at = have;
    while (s->n_out <= have && s->state == KD_SEQ_RUNNING)
        if (pthread_cond_timedwait(&s->cv, &e->mu, &dl) == ETIMEDOUT) break;
    int n = s->n_out;
    *state = s->state;
    pthread_mutex_unlock(&e->mu);
    return n;
}

const kd_gen_token *kd_seq_tokens(const kd_seq *s) { return s->out; }
const kd_gen_token *kd_seq_prompt_logprobs(const kd_seq *s) { return s->plp; }
int kd_seq_prompt_len(const kd_seq *s) { return s->n_prompt; }

void kd_seq_cancel(kd_seq *s) {
    pthread_mutex_lock(&s->e->mu);
    s->cancel = 1;
    pthread_cond_signal(&s->e->work);
    pthread_mutex_unlock(&s->e->mu);
}

void kd_seq_release(kd_seq *s) {
    if (!s) return;
    kd_engine *e = s->e;
    pthread_mutex_lock(&e->mu);
    s->cancel = 1; /* nobody reads it any more */
    seq_unref_locked(s);
    pthread_mutex_unlock(&e->mu);
}

void kd_engine_get_stats(kd_engine *e, kd_engine_stats *st) {
    pthread_mutex_lock(&e->mu);
    *st = e->stats;
    st->live = e->n_live;
    st->waiting = e->n_pending;
    st->kv_bytes = (int64_t)e->kv_held;
    pthread_mutex_unlock(&e->mu);
}

/* ---- scoring one row of logits ---- */

/* log-sum-exp of x[V] */
static float logsumexp(const float *x, int V) {
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < V; i++) sum += expf(x[i] - mx);
    return mx + logf(sum);
}

/* The entry of token `id` under logits x[V]: its logprob, rank and the k most likely tokens. */
static void score_token(const float *x, int V, int32_t id, int k, kd_gen_token *t) {
    float lse = logsumexp(x, V);
    t->id = id;
    t->logprob = x[id] - lse;
    int rank = 1;
    for (int i = 0; i < V; i++) rank += x[i] > x[id] || (x[i] == x[id] && i < id);
    t->rank = rank;
    t->n_top = 0;
    for (int i = 0; i < V && k > 0; i++) {
        /* insertion into the sorted top list (ties keep the lower id first) */
        int n = t->n_top;
        if (n == k && x[i] <= t->top_logprob[n - 1]) continue;
        int j = n < k ? n : k - 1;
        while (j > 0 && t->top_logprob[j - 1] < x[i]) {
            t->top_logprob[j] = t->top_logprob[j - 1];
            t->top_id[j] = t->top_id[j - 1];
            j--;
        }
        t->top_logprob[j] = x[i];
        t->top_id[j] = i;
        if (n < k) t->n_top++;
    }
    for (int j = 0; j < t->n_top; j++) t->top_logprob[j] -= lse;
}

/* ---- the scheduler ---- */

/* Pick the next token of s from logits x[V] and record it; returns its KD_SEQ_* state. */
static int next_token(kd_engine *e, kd_seq *s, const float *x, kd_gen_token *t) {
    int V = e->st->model->cfg.vocab_size;
    for (int i = 0; i < V; i++) e->sample[i] = e->st->decodable[i] ? x[i] : -INFINITY;
    if (s->p.guide) kd_tool_guide_mask(s->p.guide, e->sample, V);
    int32_t id = kd_sampler_next(&s->sampler, e->sample, V);
    if (s->p.guide) kd_tool_guide_push(s->p.guide, id);
    score_token(x, V, id, s->p.top_logprobs, t);
    for (int j = 0; j < e->st->n_stop && !s->p.ignore_eos; j++)
        if (id == e->st->stop[j]) return KD_SEQ_STOP;
    return s->n_out + 1 >= s->p.max_tokens ? KD_SEQ_LENGTH : KD_SEQ_RUNNING;
}

typedef struct row_plan {
    kd_seq *s;
    int first, count; /* prompt positions [first, first+count), or count 0: one decode row */
} row_plan;

/* Take pending requests into free live slots and drop cancelled ones (e->mu held). */
static void admit_locked(kd_engine *e) {
    int w = 0;
    for (int i = 0; i < e->n_live; i++) {
        kd_seq *s = e->live[i];
        if (s->cancel) {
            s->state = KD_SEQ_CANCELLED;
            kd_kv_cache_free(s->kv);
            s->kv = NULL;
            e->stats.cancelled++;
            engine_drop_locked(e, s);
        } else e->live[w++] = s;
    }
    e->n_live = w;
    while (e->head && e->n_live < e->o.max_batch) {
        kd_seq *s = e->head;
        e->head = s->next;
        if (!e->head) e->tail = NULL;
        e->n_pending--;
        s->next = NULL;
        if (s->cancel) {
            s->state = KD_SEQ_CANCELLED;
            e->stats.cancelled++;
            engine_drop_locked(e, s);
            continue;
        }
        e->live[e->n_live++] = s;
    }
    if (e->n_live > e->stats.max_live) e->stats.max_live = e->n_live;
}

static int plan_rows(kd_engine *e, kd_seq **live, int n_live, row_plan *plan, kd_kv_cache **kv, int32_t *tok, int *want,
                     int *n_rows) {
    int rows = 0, budget = e->o.prefill_chunk, np = 0;
    for (int i = 0; i < n_live; i++) {
        kd_seq *s = live[i];
        if (!s->kv) continue; /* no cache (out of memory): it leaves at the next admission */
        if (s->fed < s->n_prompt) {
            int k = s->n_prompt - s->fed;
            if (k > budget) k = budget;
            if (k == 0) continue;
            budget -= k;
            plan[np++] = (row_plan){s, s->fed, k};
            for (int j = 0; j < k; j++) {
                int at = s->fed + j;
                kv[rows] = s->kv;
                tok[rows] = s->prompt[at];
                want[rows] = s->plp != NULL || at == s->n_prompt - 1;
                rows++;
            }
        } else {
            plan[np++] = (row_plan){s, 0, 0};
            kv[rows] = s->kv;
            tok[rows] = s->out[s->n_out - 1].id;
            want[rows] = 1;
            rows++;
        }
    }
    *n_rows = rows;
    return np;
}

/* One step over the live set; returns 0, or an error code after failing every live sequence. */
static int step(kd_engine *e, kd_seq **live, int n_live) {
    int cap = e->cap_rows, V = e->st->model->cfg.vocab_size;
    row_plan plan[n_live > 0 ? n_live : 1];
    kd_kv_cache *kv[cap];
    int32_t tok[cap];
    int want[cap], n_rows = 0;
    kd_error err = {0};
    for (int i = 0; i < n_live; i++)
        if (!live[i]->kv && kd_kv_cache_new(&live[i]->kv, e->st->model, live[i]->n_prompt + live[i]->p.max_tokens, &err)) {
            KD_WARN("serve: %s", err.msg);
            live[i]->cancel = 1; /* out of memory for this one: it ends as failed */
        }
    int np = plan_rows(e, live, n_live, plan, kv, tok, want, &n_rows);
    if (n_rows == 0) return 0;
    if (kd_model_step_rows(e->st->model, e->scratch, n_rows, kv, tok, want, e->logits, &err)) {
        KD_WARN("serve: %s", err.msg);
        return -1;
    }
    /* outside the lock: score and sample into the sequences' own arrays, publish counts under it */
    int li = 0;
    int new_state[n_live > 0 ? n_live : 1];
    for (int i = 0; i < np; i++) {
        kd_seq *s = plan[i].s;
        new_state[i] = KD_SEQ_RUNNING;
        if (plan[i].count > 0) {
            for (int j = 0; j < plan[i].count; j++) {
                int at = plan[i].first + j;
                if (!(s->plp != NULL || at == s->n_prompt - 1)) continue;
                const float *x = e->logits + (size_t)li++ * V;
                if (s->plp && at + 1 < s->n_prompt) score_token(x, V, s->prompt[at + 1], s->p.prompt_logprobs, &s->plp[at + 1]);
                if (at == s->n_prompt - 1) new_state[i] = next_token(e, s, x, &s->out[s->n_out]) | 0x100;
            }
        } else {
            new_state[i] = next_token(e, s, e->logits + (size_t)li++ * V, &s->out[s->n_out]) | 0x100;
        }
    }
    pthread_mutex_lock(&e->mu);
    e->stats.steps++;
    e->stats.rows += n_rows;
    for (int i = 0; i < np; i++) {
        kd_seq *s = plan[i].s;
        if (plan[i].count > 0) {
            s->fed += plan[i].count;
            e->stats.prefill_rows += plan[i].count;
        } else e->stats.decode_rows++;
        if (new_state[i] & 0x100) {
            s->n_out++;
            s->state = new_state[i] & 0xff;
            wake_locked(s);
        }
    }
    /* finished sequences leave the live set */
    int w = 0;
    for (int i = 0; i < e->n_live; i++) {
        kd_seq *s = e->live[i];
        if (s->state != KD_SEQ_RUNNING) {
            kd_kv_cache_free(s->kv);
            s->kv = NULL;
            e->stats.finished++;
            engine_drop_locked(e, s);
        } else e->live[w++] = s;
    }
    e->n_live = w;
    pthread_mutex_unlock(&e->mu);
    return 0;
}

static void *scheduler(void *arg) {
    kd_engine *e = arg;
    kd_seq **snap = kd_calloc((size_t)e->o.max_batch, sizeof *snap);
    if (!snap) return NULL;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        admit_locked(e);
        while (!e->stop && e->n_live == 0 && !e->head) {
            pthread_cond_wait(&e->work, &e->mu);
            admit_locked(e);
        }
        if (e->stop) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        int n = e->n_live;
        memcpy(snap, e->live, (size_t)n * sizeof *snap);
        pthread_mutex_unlock(&e->mu);
        if (step(e, snap, n)) {
            pthread_mutex_lock(&e->mu);
            for (int i = 0; i < e->n_live; i++) {
                e->live[i]->state = KD_SEQ_FAILED;
                kd_kv_cache_free(e->live[i]->kv);
                e->live[i]->kv = NULL;
                engine_drop_locked(e, e->live[i]);
            }
            e->n_live = 0;
                    pthread_mutex_unlock(&e->mu);
        }
    }
    free(snap);
    return NULL;
}
