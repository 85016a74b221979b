/* The OpenAI-compatible teacher client: libcurl multi + jansson. See include/kdstep/teacher.h.
 *
 * One thread drives everything from kd_teacher_next: jobs wait in a FIFO, run as easy handles in one
 * multi handle (its connection cache keeps connections alive between requests), and come back to a
 * delay list when they must be retried. The in-flight limit follows AIMD: +1/limit per success, halved
 * on a 429 from a request started after the last cut (one cut per round trip, like TCP).
 */
#include <curl/curl.h>
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <math.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "common.h"
#include "kdstep/chat.h"
#include "kdstep/hash.h"
#include "kdstep/jsonw.h"
#include "kdstep/log.h"
#include "kdstep/teacher.h"

#define EXCERPT_MAX 300

struct kd_teacher_client;

typedef struct job {
    struct kd_teacher_client *cl;
    kd_teacher_completion *c;
    char *body;          /* the request body (kept for retries) */
    int score;           /* 0: a chat completion; 1: scoring a conversation (prompt_logprobs) */
    const char *url;     /* chat_url, or score_url for scoring through /v1/completions */
    int retries;
    double due_s;
    double start_s;
    double first_s;      /* start of the first attempt (0: not started): teacher.request_deadline_s counts from here */
    double waited_s;     /* retry waits so far (all phases) */
    int too_big;         /* the answer passed teacher.max_response_bytes (decoded) */
    CURL *easy;
    kd_sbuf resp;
    char errbuf[CURL_ERROR_SIZE];
    int top_k;
} job;

typedef struct jobq {
    job **v;
    size_t n, cap;
} jobq;

struct kd_teacher_client {
    CURLM *multi;
    int epfd;         /* curl tells us its sockets (CURLMOPT_SOCKETFUNCTION); we wait on them with epoll */
    /* Per socket (by fd): what epoll watches now (SOCK_* bits), and whether curl wants it. A kept-alive
     * connection goes idle and back to work on every request; leaving it registered saves two or three
     * epoll_ctl calls per request. Entries are reset when curl closes the socket (on_close). */
    unsigned char *fds;
    int n_fds;
    long timer_ms;    /* from CURLMOPT_TIMERFUNCTION; -1: none */
    double timer_set_s;
    struct curl_slist *headers;
    char *key; /* only to redact echoes; never printed */
    char chat_url[KD_CFG_PATH + 32], score_url[KD_CFG_PATH + 32];
    char chat_shown[KD_CFG_PATH + 32], score_shown[KD_CFG_PATH + 32]; /* userinfo redacted: for messages */
    kd_config cfg;
    json_t *extra;     /* teacher.extra_body, merged into every chat request (NULL: none) */
    int scoring;       /* KD_SCORING_* */
    jobq waiting, delayed, done, running;
    CURL **free_easy;
    int n_free_easy;
    /* Response buffers of finished requests, kept for the next ones: a fresh 40 KB buffer per answer
     * costs page faults and heap trimming on every request (more than parsing it). */
    kd_sbuf *free_bufs;
    int n_free_bufs, cap_free_bufs;
    int active;
    double limit;       /* AIMD in-flight limit */
    double last_cut_s;
    uint64_t rng;
    kd_teacher_stats st;
};

/* The job's URL as messages show it: userinfo redacted. */
static const char *shown_url(const job *j) { return j->url == j->cl->score_url ? j->cl->score_shown : j->cl->chat_shown; }

static int q_push(jobq *q, job *j) {
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        job **v = realloc(q->v, cap * sizeof *v);
        if (!v) return -1;
        q->v = v;
        q->cap = cap;
    }
    q->v[q->n++] = j;
    return 0;
}

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static void join_url(char *out, size_t cap, const char *base, const char *path) {
    size_t n = strlen(base);
    while (n && base[n - 1] == '/') n--;
    int has_v1 = n >= 3 && strncmp(base + n - 3, "/v1", 3) == 0;
    snprintf(out, cap, "%.*s%s%s", (int)n, base, has_v1 ? "" : "/v1", path);
}

enum { SOCK_IN = 1, SOCK_OUT = 2, SOCK_REGISTERED = 4, SOCK_WANTED = 8 };

static unsigned char *fd_state(struct kd_teacher_client *c, curl_socket_t fd) {
    if (fd < 0) return NULL;
    if (fd >= c->n_fds) {
        int n = c->n_fds ? c->n_fds : 64;
        while (n <= fd) n *= 2;
        unsigned char *v = realloc(c->fds, (size_t)n);
        if (!v) return NULL;
        memset(v + c->n_fds, 0, (size_t)(n - c->n_fds));
        c->fds = v;
        c->n_fds = n;
    }
    return &c->fds[fd];
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *user, void *socketp) {
    (void)easy;
    (void)socketp;
    struct kd_teacher_client *c = user;
    unsigned char *st = fd_state(c, fd);
    struct epoll_event ev = {0};
    ev.data.fd = fd;
    if (what == CURL_POLL_REMOVE) {
        /* keep it registered: the next request on this connection will want it again */
        if (st) *st &= (unsigned char)~SOCK_WANTED;
        else epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    unsigned char want = (unsigned char)((what & CURL_POLL_IN ? SOCK_IN : 0) | (what & CURL_POLL_OUT ? SOCK_OUT : 0));
    ev.events = (want & SOCK_IN ? EPOLLIN : 0) | (want & SOCK_OUT ? EPOLLOUT : 0);
    if (st && (*st & SOCK_REGISTERED) && (*st & (SOCK_IN | SOCK_OUT)) == want) {
        *st |= SOCK_WANTED;
        return 0;
    }
    int op = st && (*st & SOCK_REGISTERED) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(c->epfd, op, fd, &ev) != 0) {
        if (errno == ENOENT) epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev);
        else if (errno == EEXIST) epoll_ctl(c->epfd, EPOLL_CTL_MOD, fd, &ev);
    }
    if (st) *st = (unsigned char)(want | SOCK_REGISTERED | SOCK_WANTED);
    return 0;
}

/* curl closes its sockets through here, so a reused fd number never inherits a stale registration
 * (closing the fd takes it out of the epoll set). */
static int on_close(void *user, curl_socket_t fd) {
    struct kd_teacher_client *c = user;
    if (fd >= 0 && fd < c->n_fds) c->fds[fd] = 0;
    return close(fd);
}

static int on_timer(CURLM *multi, long timeout_ms, void *user) {
    (void)multi;
    struct kd_teacher_client *c = user;
    c->timer_ms = timeout_ms;
    c->timer_set_s = kd_teacher_now();
    return 0;
}

/* Scoring answers are about 1 MB each, and their parse allocates ~1.5 MB (the logprobs block and its
 * token texts) that the caller frees a moment later; with 16-32 in flight, glibc's defaults give each
 * of those blocks fresh pages: a block over the mmap threshold is mmap'd and unmapped, one at the heap's
 * top is trimmed back to the system, and every page is faulted in again for the next answer (90 page
 * faults per scored conversation, a third of the client's system time). For the process that talks to
 * an HTTP teacher: blocks up to 32 MB come from the heap, and up to 64 MB of free heap is kept. Set
 * once; an allocator other than glibc's is left alone. */
#ifdef __GLIBC__
static void set_malloc_thresholds(void) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
}
#endif

static void keep_answer_memory(void) {
#ifdef __GLIBC__
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, set_malloc_thresholds);
#endif
}

int kd_client_open(struct kd_teacher_client **out, const kd_config *cfg, kd_error *err) {
    *out = NULL;
    const char *url = cfg->teacher.url;
    char shown[KD_CFG_PATH];
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return kd_error_set(err, KD_ERR_INVALID, "teacher.url: '%s' is neither 'stub' nor an http(s):// URL",
                            kd_url_redact(shown, sizeof shown, url));
    keep_answer_memory();
    /* a key with CR/LF would add headers of its own to every request; refused before any is sent
     * (the key itself is never printed) */
    const char *key = cfg->teacher.api_key_env[0] ? getenv(cfg->teacher.api_key_env) : NULL;
    for (size_t i = 0; key && key[i]; i++)
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] == 0x7F)
            return kd_error_set(err, KD_ERR_INVALID,
                                "the API key in $%s holds a control character (byte 0x%02X at position %zu of %zu); an "
                                "API key is one line of printable characters: set the variable again without it",
                                cfg->teacher.api_key_env, (unsigned char)key[i], i, strlen(key));
    pthread_once(&g_curl_once, curl_init_once);
    struct kd_teacher_client *c = calloc(1, sizeof *c);
    if (!c) return kd_error_set(err, KD_ERR_NOMEM, "out of memory opening the teacher client");
    int rc = kd_config_copy(&c->cfg, cfg, err);
    if (rc) {
        free(c);
        return rc;
    }
    if (cfg->teacher.extra_body[0]) {
        json_error_t je;
        c->extra = json_loads(cfg->teacher.extra_body, 0, &je);
        if (!json_is_object(c->extra)) {
            kd_client_close(c);
            return kd_error_set(err, KD_ERR_INVALID, "teacher.extra_body: not a JSON object: %s", je.text);
        }
    }
    if ((rc = kd_scoring_from_name(cfg->teacher.scoring, &c->scoring, err))) {
        kd_client_close(c);
        return rc;
    }
    join_url(c->chat_url, sizeof c->chat_url, url, "/chat/completions");
    join_url(c->score_url, sizeof c->score_url, url, "/completions");
    kd_url_redact(c->chat_shown, sizeof c->chat_shown, c->chat_url);
    kd_url_redact(c->score_shown, sizeof c->score_shown, c->score_url);
    c->multi = curl_multi_init();
    if (!c->multi) {
        kd_client_close(c);
        return kd_error_set(err, KD_ERR_NET, "curl_multi_init failed");
    }
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)cfg->teacher.max_in_flight);
    /* socket_action + epoll: work per event, not per transfer (curl_multi_perform polls every transfer) */
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (c->epfd < 0) {
        int e = errno;
        kd_client_close(c);
        return kd_error_errno(err, e, "epoll_create1");
    }
    c->timer_ms = -1;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, "Expect:"); /* no 100-continue round trip on big bodies */
    const char *env = cfg->teacher.api_key_env[0] ? getenv(cfg->teacher.api_key_env) : NULL;
    if (env && env[0]) {
        c->key = kd_strdup(env);
        size_t n = strlen(env) + 32;
        char *h = malloc(n);
        if (h) {
            snprintf(h, n, "Authorization: Bearer %s", env);
            c->headers = curl_slist_append(c->headers, h);
            memset(h, 0, n);
            free(h);
        }
    }
    c->limit = (double)cfg->teacher.max_in_flight;
    c->st.in_flight_limit = c->st.min_in_flight_limit = (int)cfg->teacher.max_in_flight;
    c->rng = (uint64_t)cfg->teacher.seed ^ 0x5DEECE66DULL;
    c->last_cut_s = -1e30;
    *out = c;
    return KD_OK;
}

static void job_free(job *j) {
    if (!j) return;
    if (j->c) {
        kd_teacher_completion_free(j->c);
        free(j->c);
    }
    free(j->body);
    kd_sbuf_free(&j->resp);
    free(j);
}

void kd_client_close(struct kd_teacher_client *c) {
    if (!c) return;
    for (size_t k = 0; k < c->running.n; k++) {
        job *j = c->running.v[k];
        curl_multi_remove_handle(c->multi, j->easy);
        curl_easy_cleanup(j->easy);
    }
    jobq *qs[] = {&c->waiting, &c->delayed, &c->done, &c->running};
    for (int i = 0; i < 4; i++) {
        for (size_t k = 0; k < qs[i]->n; k++) job_free(qs[i]->v[k]);
        free(qs[i]->v);
    }
    for (int i = 0; i < c->n_free_easy; i++) curl_easy_cleanup(c->free_easy[i]);
    free(c->free_easy);
    for (int i = 0; i < c->n_free_bufs; i++) free(c->free_bufs[i].data);
    free(c->free_bufs);
    if (c->multi) curl_multi_cleanup(c->multi);
    if (c->epfd > 0) close(c->epfd);
    free(c->fds);
    curl_slist_free_all(c->headers);
    if (c->key) {
        memset(c->key, 0, strlen(c->key));
        free(c->key);
    }
    json_decref(c->extra);
    kd_config_free(&c->cfg);
    free(c);
}

#define RAW(w, lit) kd_jsonw_raw(w, lit, sizeof lit - 1)

/* A field of ours, unless teacher.extra_body sets it (extra_body wins, as OpenAI SDKs merge it). */
static int ours(const struct kd_teacher_client *c, const char *key) { return !c->extra || !json_object_get(c->extra, key); }

#define FIELD(c, w, key) (ours(c, key) && (RAW(w, ",\"" key "\":"), 1))

/* extra_body's fields, at the end of the object. */
static int put_extra(const struct kd_teacher_client *c, kd_jsonw *w) {
    const char *k;
    json_t *v;
    json_object_foreach(c->extra, k, v) {
        RAW(w, ",");
        kd_jsonw_string(w, k, strlen(k));
        RAW(w, ":");
        if (kd_jsonw_value(w, v)) return -1;
    }
    return 0;
}

/* The start of every chat body: model, messages, tools. */
static int chat_head(const struct kd_teacher_client *c, kd_jsonw *w, const json_t *messages, const json_t *tools) {
    const kd_config *cfg = &c->cfg;
    RAW(w, "{\"model\":");
    kd_jsonw_string(w, cfg->teacher.model, strlen(cfg->teacher.model));
    RAW(w, ",\"messages\":");
    if (kd_jsonw_value(w, messages)) return -1;
    if (tools && json_array_size(tools) && ours(c, "tools")) {
        RAW(w, ",\"tools\":");
        if (kd_jsonw_value(w, tools)) return -1;
    }
    return 0;
}

/* The body written straight out (kd_jsonw: the bytes json_dumps would give for the same object, about
 * eight times faster; the tool schemas make a request body several KB, serialized per request). */
static char *build_chat_body(const struct kd_teacher_client *c, const kd_teacher_request *req, int *top_k) {
    const kd_config *cfg = &c->cfg;
    kd_jsonw w = {0};
    if (chat_head(c, &w, req->messages, req->tools)) goto fail;
    if (req->tools && json_array_size(req->tools) && FIELD(c, &w, "tool_choice")) RAW(&w, "\"auto\"");
    if (FIELD(c, &w, "temperature")) kd_jsonw_real(&w, req->temperature >= 0 ? req->temperature : cfg->teacher.temperature);
    if (FIELD(c, &w, "max_tokens")) kd_jsonw_int(&w, req->max_tokens >= 0 ? req->max_tokens : cfg->teacher.max_tokens);
    if (FIELD(c, &w, "seed")) kd_jsonw_int(&w, req->seed >= 0 ? req->seed : cfg->teacher.seed);
    int k = (int)(req->top_logprobs >= 0 ? req->top_logprobs : cfg->teacher.top_logprobs);
    if (k > 0) {
        if (FIELD(c, &w, "logprobs")) RAW(&w, "true");
        if (FIELD(c, &w, "top_logprobs")) kd_jsonw_int(&w, k);
    }
    if (put_extra(c, &w)) goto fail;
    RAW(&w, "}");
    *top_k = k;
    return kd_jsonw_take(&w);
fail:
    kd_jsonw_free(&w);
    return NULL;
}

/* Scoring a finished conversation through the chat endpoint: vLLM's prompt_logprobs over the whole
 * conversation and max_tokens 1 (a generation step vLLM needs, thrown away). add_generation_prompt
 * false and continue_final_message false make the scored prompt end where the student's text ends:
 * after the last turn's <|im_end|>, with no open assistant header (vLLM's defaults are true and false:
 * https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html#extra-parameters_2). */
static char *build_score_chat_body(const struct kd_teacher_client *c, const json_t *messages, const json_t *tools, int k) {
    kd_jsonw w = {0};
    if (chat_head(c, &w, messages, tools)) goto fail;
    if (FIELD(c, &w, "max_tokens")) RAW(&w, "1");
    if (FIELD(c, &w, "temperature")) RAW(&w, "0.0");
    if (FIELD(c, &w, "seed")) kd_jsonw_int(&w, c->cfg.teacher.seed);
    if (FIELD(c, &w, "prompt_logprobs")) kd_jsonw_int(&w, k);
    if (FIELD(c, &w, "add_generation_prompt")) RAW(&w, "false");
    if (FIELD(c, &w, "continue_final_message")) RAW(&w, "false");
    if (put_extra(c, &w)) goto fail;
    RAW(&w, "}");
    return kd_jsonw_take(&w);
fail:
    kd_jsonw_free(&w);
    return NULL;
}

/* Scoring through /v1/completions, for servers whose chat endpoint has no prompt logprobs: the text
 * is kdstep's own rendering (the student's chat template), exactly the text the student trains on. */
static char *build_score_text_body(const struct kd_teacher_client *c, const json_t *messages, const json_t *tools, int k) {
    kd_chat_result r;
    kd_error e;
    if (kd_chat_render_json(messages, tools, NULL, &r, &e)) return NULL;
    kd_jsonw w = {0};
    RAW(&w, "{\"model\":");
    kd_jsonw_string(&w, c->cfg.teacher.model, strlen(c->cfg.teacher.model));
    RAW(&w, ",\"prompt\":");
    kd_jsonw_string(&w, r.text, r.len);
    RAW(&w, ",\"max_tokens\":1,\"temperature\":0.0,\"seed\":");
    kd_jsonw_int(&w, c->cfg.teacher.seed);
    RAW(&w, ",\"prompt_logprobs\":");
    kd_jsonw_int(&w, k);
    RAW(&w, "}");
    kd_chat_render_free(&r);
    return kd_jsonw_take(&w);
}

static int queue_job(struct kd_teacher_client *c, job *j, uint64_t tag, kd_error *err) {
    if (!j->c || !j->body || q_push(&c->waiting, j)) {
        job_free(j);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory submitting a teacher request");
    }
    j->c->tag = tag;
    j->c->submit_s = kd_teacher_now();
    c->st.submitted++;
    return KD_OK;
}

int kd_client_submit(struct kd_teacher_client *c, const kd_teacher_request *req, kd_error *err) {
    job *j = calloc(1, sizeof *j);
    if (!j) return kd_error_set(err, KD_ERR_NOMEM, "out of memory submitting a teacher request");
    j->cl = c;
    j->url = c->chat_url;
    j->c = calloc(1, sizeof *j->c);
    j->body = build_chat_body(c, req, &j->top_k);
    return queue_job(c, j, req->tag, err);
}

int kd_client_submit_score(struct kd_teacher_client *c, const json_t *messages, const json_t *tools, uint64_t tag, kd_error *err) {
    if (c->scoring == KD_SCORING_NONE)
        return kd_error_set(err, KD_ERR_INVALID, "teacher.scoring is none: no scoring requests (use chat or completions)");
    job *j = calloc(1, sizeof *j);
    if (!j) return kd_error_set(err, KD_ERR_NOMEM, "out of memory submitting a teacher request");
    j->cl = c;
    j->score = 1;
    j->top_k = c->cfg.teacher.top_logprobs > 0 ? (int)c->cfg.teacher.top_logprobs : 1;
    j->url = c->scoring == KD_SCORING_CHAT ? c->chat_url : c->score_url;
    j->c = calloc(1, sizeof *j->c);
    if (j->c) j->c->scored = 1;
    j->body = c->scoring == KD_SCORING_CHAT ? build_score_chat_body(c, messages, tools, j->top_k)
                                            : build_score_text_body(c, messages, tools, j->top_k);
    return queue_job(c, j, tag, err);
}

#define BUF_KEEP_MAX (4u << 20) /* a buffer bigger than this goes back to the heap */

static void buf_recycle(struct kd_teacher_client *c, kd_sbuf *b) {
    if (b->data && !b->oom && b->cap <= BUF_KEEP_MAX && c->n_free_bufs < (int)c->cfg.teacher.max_in_flight + 8) {
        if (c->n_free_bufs == c->cap_free_bufs) {
            int cap = c->cap_free_bufs ? 2 * c->cap_free_bufs : 16;
            kd_sbuf *v = realloc(c->free_bufs, (size_t)cap * sizeof *v);
            if (!v) goto drop;
            c->free_bufs = v;
            c->cap_free_bufs = cap;
        }
        c->free_bufs[c->n_free_bufs] = (kd_sbuf){b->data, 0, b->cap, 0};
        c->n_free_bufs++;
        memset(b, 0, sizeof *b);
        return;
    }
drop:
    kd_sbuf_free(b);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *user) {
    job *j = user;
    struct kd_teacher_client *c = j->cl;
    /* curl hands over decoded bytes (gzip/br/zstd) as it decodes them: counting here bounds a
     * compression bomb and an endless chunked body alike, before they are held in memory */
    if (j->resp.len + size * nmemb > (size_t)c->cfg.teacher.max_response_bytes) {
        j->too_big = 1;
        return 0; /* curl stops the transfer with CURLE_WRITE_ERROR */
    }
    if (j->resp.cap == 0) { /* once per answer: a kept buffer, sized from Content-Length, so no regrowing copies */
        curl_off_t cl = -1;
        curl_easy_getinfo(j->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        size_t want = cl > 0 && cl < (64 << 20) ? (size_t)cl + 1 : 0;
        if (c->n_free_bufs) {
            j->resp = c->free_bufs[--c->n_free_bufs];
            if (j->resp.cap < want) {
                free(j->resp.data);
                memset(&j->resp, 0, sizeof j->resp);
            }
        }
        if (j->resp.cap == 0 && want) {
            j->resp.data = malloc(want);
            if (j->resp.data) j->resp.cap = want;
        }
    }
    kd_sbuf_add(&j->resp, data, size * nmemb);
    return j->resp.oom ? 0 : size * nmemb;
}

/* Options that are the same for every transfer are set once, when the handle is made. */
static CURL *new_easy(const struct kd_teacher_client *c) {
    CURL *e = curl_easy_init();
    if (!e) return NULL;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, (void *)c);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->cfg.teacher.connect_timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(c->cfg.teacher.timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* A 40-60 KB logprobs answer in one recv instead of four (each read is followed by a poll in
     * libcurl, and system calls are the dearest part of a request on a VM) */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 64L * 1024);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, c->cfg.teacher.insecure_tls ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, c->cfg.teacher.insecure_tls ? 0L : 2L);
    return e;
}

static int start_job(struct kd_teacher_client *c, job *j) {
    CURL *e = c->n_free_easy ? c->free_easy[--c->n_free_easy] : new_easy(c);
    if (!e) return -1;
    const char *body = j->body;
    curl_easy_setopt(e, CURLOPT_URL, j->url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
    j->errbuf[0] = 0;
    buf_recycle(c, &j->resp);
    j->too_big = 0;
    j->easy = e;
    j->start_s = kd_teacher_now();
    if (!j->first_s) j->first_s = j->start_s;
    /* a scoring answer is ~0.5 KB per token (1 MB for 2,000 tokens): read it in 512 KB gulps, not 64 KB
     * ones, so one answer costs two or three recv + epoll rounds instead of sixteen (system time was most
     * of the client CPU per scored conversation) */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, j->score ? 512L * 1024 : 64L * 1024);
    /* each attempt ends by teacher.timeout_s, and by the request's deadline (schedule_retry starts no
     * retry after it, so some time is left here) */
    double left = j->first_s + c->cfg.teacher.request_deadline_s - j->start_s;
    double limit = c->cfg.teacher.timeout_s < left ? c->cfg.teacher.timeout_s : left;
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, limit * 1000 < 1 ? 1L : (long)(limit * 1000));
    if (q_push(&c->running, j) || curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        if (c->running.n && c->running.v[c->running.n - 1] == j) c->running.n--;
        curl_easy_cleanup(e);
        j->easy = NULL;
        return -1;
    }
    c->active++;
    c->st.attempts++;
    if (c->active > c->st.max_in_flight_seen) c->st.max_in_flight_seen = c->active;
    return 0;
}

static void release_easy(struct kd_teacher_client *c, job *j) {
    for (size_t i = 0; i < c->running.n; i++)
        if (c->running.v[i] == j) {
            c->running.v[i] = c->running.v[--c->running.n];
            break;
        }
    curl_multi_remove_handle(c->multi, j->easy);
    CURL **v = realloc(c->free_easy, (size_t)(c->n_free_easy + 1) * sizeof *v);
    if (v) {
        c->free_easy = v;
        c->free_easy[c->n_free_easy++] = j->easy;
    } else curl_easy_cleanup(j->easy);
    j->easy = NULL;
    c->active--;
}

static void finish(struct kd_teacher_client *c, job *j, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void finish(struct kd_teacher_client *c, job *j, int status, const char *fmt, ...) {
    kd_teacher_completion *cp = j->c;
    cp->status = status;
    cp->done_s = kd_teacher_now();
    if (status != KD_OK) {
        char msg[KD_ERROR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        kd_redact(msg, c->key);
        cp->error = kd_strdup(msg);
        if (j->resp.len) {
            cp->body_excerpt = kd_strndup(j->resp.data, strnlen(j->resp.data, EXCERPT_MAX)); /* kd_strndup copies n bytes */
            kd_redact(cp->body_excerpt, c->key);
        }
    }
    if (q_push(&c->done, j)) { /* cannot queue: drop the job's memory but count it as failed */
        job_free(j);
        c->st.failed++;
    }
}

static int retryable_curl(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING: return 1;
    default: return 0;
    }
}

static void schedule_retry(struct kd_teacher_client *c, job *j, double min_delay, const char *why) {
    double base = c->cfg.teacher.backoff_base_s * ldexp(1.0, j->retries);
    /* "equal jitter": half fixed, half random, so retries of a burst spread out */
    double delay = base * 0.5 + base * 0.5 * kd_rand_uniform(&c->rng);
    /* a server's Retry-After is honoured up to teacher.max_retry_after_s; one asking for longer (a
     * misconfigured or hostile server: "Retry-After: 100000") fails the request now instead of
     * stalling the run for hours. Each attempt itself is bounded by teacher.timeout_s (curl's total
     * timeout, whatever the server sends). */
    if (min_delay > c->cfg.teacher.max_retry_after_s) {
        finish(c, j, KD_ERR_NET,
               "teacher request %llu: %s; not retried: the server asks to wait %.0f s, more than teacher.max_retry_after_s "
               "(%.0f s; raise it to wait that long)",
               (unsigned long long)j->c->tag, why, min_delay, c->cfg.teacher.max_retry_after_s);
        return;
    }
    if (delay < min_delay) delay = min_delay;
    /* every attempt, backoff and Retry-After wait of one request ends by teacher.request_deadline_s after
     * its first attempt: a retry that could not start before then fails the request now */
    double now = kd_teacher_now(), end = j->first_s + c->cfg.teacher.request_deadline_s;
    if (now + delay >= end) {
        char ex[EXCERPT_MAX + 1];
        snprintf(ex, sizeof ex, "%s", j->resp.data ? j->resp.data : "");
        kd_redact(ex, c->key);
        finish(c, j, KD_ERR_NET,
               "teacher request %llu: gave up after %d attempts over %.1f s: teacher.request_deadline_s (%g s) ends before "
               "the next retry could start (raise teacher.request_deadline_s to keep trying longer); last: %s%s%s",
               (unsigned long long)j->c->tag, j->c->attempts, now - j->first_s, c->cfg.teacher.request_deadline_s, why,
               ex[0] ? "; body: " : "", ex);
        return;
    }
    j->waited_s += delay;
    j->retries++;
    c->st.retries++;
    j->due_s = now + delay;
    KD_DEBUG("teacher request %llu: %s; retry %d in %.3f s", (unsigned long long)j->c->tag, why, j->retries, delay);
    if (q_push(&c->delayed, j)) finish(c, j, KD_ERR_NOMEM, "out of memory scheduling a retry");
}

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_done(struct kd_teacher_client *c, CURLMsg *msg) {
    job *j = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
    CURLcode res = msg->data.result;
    long code = 0;
    curl_off_t retry_after = 0;
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(j->easy, CURLINFO_RETRY_AFTER, &retry_after);
    double now = kd_teacher_now();
    kd_teacher_completion *cp = j->c;
    if (cp->attempts < KD_TEACHER_MAX_ATTEMPTS_LOGGED) {
        kd_teacher_attempt *a = &cp->attempt_log[cp->attempts];
        a->start_s = j->start_s;
        a->end_s = now;
        a->http_status = res == CURLE_OK ? (int)code : 0;
        a->curl_code = (int)res;
        a->retry_after_s = (double)retry_after;
    }
    cp->attempts++;
    cp->http_status = res == CURLE_OK ? (int)code : 0;
    double started = j->start_s;
    release_easy(c, j);
    int max_retries = (int)c->cfg.teacher.max_retries;
    const char *what = j->score ? "teacher scoring request" : "teacher request";
    unsigned long long tag = (unsigned long long)cp->tag;
    char why[512];
    double min_delay = 0;
    if (res == CURLE_WRITE_ERROR && j->too_big) {
        c->st.parse_errors++;
        j->resp.len = 0; /* no excerpt of a body cut short */
        finish(c, j, KD_ERR_NET, "%s %llu to %s: the answer is larger than teacher.max_response_bytes (%lld bytes, counted "
               "after decompression); not retried (raise teacher.max_response_bytes if such answers are expected)",
               what, tag, shown_url(j), (long long)c->cfg.teacher.max_response_bytes);
        return;
    }
    if (res != CURLE_OK) {
        if (res == CURLE_OPERATION_TIMEDOUT) c->st.timeouts++;
        else c->st.conn_errors++;
        snprintf(why, sizeof why, "%s", j->errbuf[0] ? j->errbuf : curl_easy_strerror(res));
        kd_redact(why, c->key);
        if (!retryable_curl(res)) {
            finish(c, j, KD_ERR_NET, "%s %llu to %s failed: %s (not retried)", what, tag, shown_url(j), why);
            return;
        }
    } else if (code == 200) {
        kd_error e;
        int prc;
        if (!j->score) {
            kd_teacher_completion tmp;
            memset(&tmp, 0, sizeof tmp);
            double t0 = kd_teacher_now();
            prc = kd_teacher_parse_chat_response(j->resp.data ? j->resp.data : "", j->resp.len, &tmp, &e);
            c->st.parse_s += kd_teacher_now() - t0;
            if (prc == KD_OK) {
                cp->text = tmp.text;
                cp->tool_calls = tmp.tool_calls;
                cp->n_tool_calls = tmp.n_tool_calls;
                cp->finish_reason = tmp.finish_reason;
                cp->prompt_tokens = tmp.prompt_tokens;
                cp->completion_tokens = tmp.completion_tokens;
                cp->lp = tmp.lp;
            } else kd_teacher_completion_free(&tmp);
        } else {
            kd_teacher_logprobs lp;
            /* CPU time: a parse of ~1 ms is often preempted on a busy machine, and wall time would count that */
            double t0 = thread_cpu_s();
            prc = kd_teacher_parse_prompt_logprobs(j->resp.data ? j->resp.data : "", j->resp.len, j->top_k, &lp, &e);
            c->st.parse_s += thread_cpu_s() - t0;
            if (!prc) {
                kd_teacher_logprobs_free(&cp->lp);
                cp->lp = lp;
                cp->scored = 1;
            }
        }
        if (prc == KD_OK) {
            buf_recycle(c, &j->resp);
            /* AIMD: additive increase, one step per window of successes */
            c->limit += 1.0 / c->limit;
            if (c->limit > (double)c->cfg.teacher.max_in_flight) c->limit = (double)c->cfg.teacher.max_in_flight;
            finish(c, j, KD_OK, "%s", "");
            return;
        }
        c->st.parse_errors++;
        snprintf(why, sizeof why, "%s", e.msg);
        kd_redact(why, c->key);
    } else if (code == 429) {
        c->st.http_429++;
        min_delay = (double)retry_after;
        /* one multiplicative cut per round trip: only 429s of requests started after the last cut */
        if (started > c->last_cut_s) {
            c->limit = c->limit / 2 < 1 ? 1 : c->limit / 2;
            c->last_cut_s = now;
            if ((int)c->limit < c->st.min_in_flight_limit) c->st.min_in_flight_limit = (int)c->limit;
        }
        snprintf(why, sizeof why, "HTTP 429 (rate limited, Retry-After %lld s)", (long long)retry_after);
    } else if (code >= 500 || code == 408) {
        c->st.http_5xx++;
        min_delay = (double)retry_after;
        snprintf(why, sizeof why, "HTTP %ld", code);
    } else {
        char ex[EXCERPT_MAX + 1];
        snprintf(ex, sizeof ex, "%s", j->resp.data ? j->resp.data : "");
        kd_redact(ex, c->key);
        finish(c, j, KD_ERR_NET, "%s %llu: HTTP %ld from %s (not retried; check the URL, model and API key variable %s): %s",
               what, tag, code, shown_url(j), c->cfg.teacher.api_key_env, ex);
        return;
    }
    if (j->retries >= max_retries) {
        char ex[EXCERPT_MAX + 1];
        snprintf(ex, sizeof ex, "%s", j->resp.data ? j->resp.data : "");
        kd_redact(ex, c->key);
        finish(c, j, KD_ERR_NET, "%s %llu: gave up after %d attempts; last: %s%s%s", what, tag, cp->attempts, why,
               ex[0] ? "; body: " : "", ex);
        return;
    }
    schedule_retry(c, j, min_delay, why);
}

static void start_ready(struct kd_teacher_client *c, double now) {
    /* due retries go to the front of the line: they have waited already */
    for (size_t i = 0; i < c->delayed.n;) {
        job *j = c->delayed.v[i];
        if (j->due_s <= now) {
            c->delayed.v[i] = c->delayed.v[--c->delayed.n];
            if (q_push(&c->waiting, NULL) == 0) {
                memmove(c->waiting.v + 1, c->waiting.v, (c->waiting.n - 1) * sizeof *c->waiting.v);
                c->waiting.v[0] = j;
            } else finish(c, j, KD_ERR_NOMEM, "out of memory");
        } else i++;
    }
    size_t taken = 0;
    while (taken < c->waiting.n && c->active < (int)c->limit) {
        job *j = c->waiting.v[taken];
        if (start_job(c, j)) break;
        taken++;
    }
    if (taken) {
        memmove(c->waiting.v, c->waiting.v + taken, (c->waiting.n - taken) * sizeof *c->waiting.v);
        c->waiting.n -= taken;
    }
    c->st.in_flight = c->active;
    c->st.in_flight_limit = (int)c->limit;
}

static int pop_done(struct kd_teacher_client *c, kd_teacher_completion **out) {
    if (!c->done.n) return 0;
    job *j = c->done.v[0];
    memmove(c->done.v, c->done.v + 1, (c->done.n - 1) * sizeof *c->done.v);
    c->done.n--;
    *out = j->c;
    j->c = NULL;
    buf_recycle(c, &j->resp);
    if ((*out)->status == KD_OK) c->st.completed++;
    else c->st.failed++;
    job_free(j);
    return 1;
}

static void drain_messages(struct kd_teacher_client *c) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left)))
        if (msg->msg == CURLMSG_DONE) on_done(c, msg);
}

int kd_client_next(struct kd_teacher_client *c, double timeout_s, kd_teacher_completion **out, kd_error *err) {
    *out = NULL;
    double deadline = kd_teacher_now() + (timeout_s > 0 ? timeout_s : 0);
    int running = 0;
    for (;;) {
        /* finished ones first: no system call while completions are waiting */
        if (pop_done(c, out)) return KD_OK;
        double now = kd_teacher_now();
        int before = c->active;
        start_ready(c, now);
        if (c->active != before || (c->timer_ms >= 0 && now - c->timer_set_s >= c->timer_ms / 1000.0)) {
            c->timer_ms = -1;
            CURLMcode mc = curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
            if (mc != CURLM_OK) return kd_error_set(err, KD_ERR_NET, "curl_multi_socket_action: %s", curl_multi_strerror(mc));
            drain_messages(c);
            if (c->done.n) continue;
        }
        now = kd_teacher_now();
        if (c->active == 0 && c->waiting.n == 0 && c->delayed.n == 0) return KD_OK;
        if (now >= deadline && timeout_s > 0) return KD_OK;
        double wait = deadline - now;
        if (wait < 0) wait = 0;
        for (size_t i = 0; i < c->delayed.n; i++)
            if (c->delayed.v[i]->due_s - now < wait) wait = c->delayed.v[i]->due_s - now;
        if (c->timer_ms >= 0) {
            double tw = c->timer_set_s + c->timer_ms / 1000.0 - now;
            if (tw < wait) wait = tw;
        }
        if (c->waiting.n && c->active < (int)c->limit) wait = 0;
        int ms = wait <= 0 ? 0 : (int)ceil(wait * 1000);
        if (ms > 1000) ms = 1000;
        struct epoll_event ev[64];
        int n = epoll_wait(c->epfd, ev, 64, ms);
        if (n < 0 && errno != EINTR) return kd_error_errno(err, errno, "epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = ev[i].data.fd;
            if (fd >= 0 && fd < c->n_fds && (c->fds[fd] & SOCK_REGISTERED) && !(c->fds[fd] & SOCK_WANTED)) {
                /* an idle kept-alive connection the server closed or wrote to: curl looks at it when it
                 * reuses it; stop watching it, or epoll would report it forever */
                epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL);
                c->fds[fd] = 0;
                continue;
            }
            int flags = (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) | (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                        (ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(c->multi, ev[i].data.fd, flags, &running);
        }
        if (n == 0 && c->timer_ms >= 0 && kd_teacher_now() - c->timer_set_s >= c->timer_ms / 1000.0) {
            c->timer_ms = -1;
            curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        drain_messages(c);
        if (!c->done.n && timeout_s <= 0 && n == 0) return KD_OK;
    }
}

void kd_client_stats(const struct kd_teacher_client *c, kd_teacher_stats *st) {
    *st = c->st;
    st->in_flight = c->active;
    st->in_flight_limit = (int)c->limit;
}
