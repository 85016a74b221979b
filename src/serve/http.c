/* `kdstep serve`'s HTTP side: see include/kdstep/serve.h. */
#include "kdstep/serve.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdstep/fsutil.h"
#include "kdstep/httpd.h"
#include "kdstep/log.h"
#include "kdstep/serve_api.h"

struct kd_serve {
    kd_serve_options o;
    char name[512], host[64];
    char *key; /* the API key, or NULL */
    kd_engine *e;
    struct MHD_Daemon *d;
    int port;
    atomic_llong next_id;
    FILE *log;
    pthread_mutex_t log_mu;
};

/* A streaming response's state, owned by its MHD response (freed by stream_free). */
typedef struct stream_ctx {
    kd_serve *s;
    kd_api_request r;
    kd_seq *seq;
    kd_api_stream ss;
    char id[64];
    long created;
    int have;
    char *pending;
    size_t plen, poff;
    int done;
} stream_ctx;

static enum MHD_Result send_body(struct MHD_Connection *conn, unsigned status, const char *body, const char *ctype) {
    return kd_http_send(conn, status, body, strlen(body), ctype, status == 503 ? "1" : NULL);
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *msg, const char *param) {
    return kd_http_send_error(conn, status, msg, param);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *c = cls;
    while (c->poff >= c->plen) {
        if (c->done) return MHD_CONTENT_READER_END_OF_STREAM;
        free(c->pending);
        c->pending = NULL;
        c->plen = c->poff = 0;
        int state = KD_SEQ_RUNNING;
        int n = kd_seq_wait(c->seq, c->have, 1.0, &state);
        if (state == KD_SEQ_CANCELLED || state == KD_SEQ_FAILED) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (n == c->have && state == KD_SEQ_RUNNING) continue;
        c->have = n;
        c->pending = kd_api_stream_events(kd_engine_student(c->s->e), &c->r, c->id, c->s->name, c->created, c->seq, n, state, &c->ss);
        if (!c->pending) return MHD_CONTENT_READER_END_WITH_ERROR;
        c->plen = strlen(c->pending);
        if (state != KD_SEQ_RUNNING) c->done = 1;
    }
    size_t k = c->plen - c->poff < max ? c->plen - c->poff : max;
    memcpy(buf, c->pending + c->poff, k);
    c->poff += k;
    return (ssize_t)k;
}

static void stream_free(void *cls) {
    stream_ctx *c = cls;
    kd_seq_cancel(c->seq); /* a client that went away stops its generation */
    kd_seq_release(c->seq);
    kd_api_request_free(&c->r);
    free(c->pending);
    free(c);
}

static void log_request(kd_serve *s, int kind, const kd_api_request *r, const char *out) {
    pthread_mutex_lock(&s->log_mu);
    fprintf(s->log, "{\"endpoint\":\"%s\",\"prompt_token_ids\":[", kind == KD_API_CHAT ? "/v1/chat/completions" : "/v1/completions");
    for (int i = 0; i < r->n_ids; i++) fprintf(s->log, "%s%d", i ? "," : "", r->ids[i]);
    fprintf(s->log, "],\"response\":%s}\n", out);
    fflush(s->log);
    pthread_mutex_unlock(&s->log_mu);
}

static enum MHD_Result complete(kd_serve *s, struct MHD_Connection *conn, int kind, const char *body, size_t len) {
    kd_api_limits lim = {s->o.max_tokens, s->name, s->o.guide};
    kd_api_request r;
    kd_api_status st;
    kd_error err = {0};
    const kd_student *stu = kd_engine_student(s->e);
    if (kd_api_parse(stu, kind, body, len, &lim, &r, &st, &err)) return send_error(conn, (unsigned)st.code, err.msg, st.param[0] ? st.param : NULL);
    kd_seq *seq = NULL;
    if (kd_engine_submit(s->e, r.ids, r.n_ids, &r.gp, &seq, &err)) {
        kd_api_request_free(&r);
        return send_error(conn, err.code == KD_ERR_IO ? 503 : 400, err.msg, NULL);
    }
    r.gp.guide = NULL; /* the sequence closes it */
    char id[64];
    long long nid = atomic_fetch_add(&s->next_id, 1);
    snprintf(id, sizeof id, "%s-%lld", kind == KD_API_CHAT ? "chatcmpl" : "cmpl", nid);
    long created = (long)time(NULL);
    if (r.stream) {
        stream_ctx *c = kd_calloc(1, sizeof *c);
        if (!c) {
            kd_seq_release(seq);
            kd_api_request_free(&r);
            return send_error(conn, 500, "out of memory", NULL);
        }
        c->s = s;
        c->r = r;
        c->seq = seq;
        c->created = created;
        snprintf(c->id, sizeof c->id, "%s", id);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, c, stream_free);
        if (!resp) {
            stream_free(c);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        enum MHD_Result ok = MHD_queue_response(conn, 200, resp);
        MHD_destroy_response(resp);
        return ok;
    }
    int state = KD_SEQ_RUNNING, n = 0;
    /* asking for more tokens than can come wakes this thread only at the end, not at every step */
    while (state == KD_SEQ_RUNNING) n = kd_seq_wait(seq, r.gp.max_tokens, 5.0, &state);
    enum MHD_Result res;
    if (state == KD_SEQ_CANCELLED || state == KD_SEQ_FAILED) {
        res = send_error(conn, 500, state == KD_SEQ_FAILED ? "the model failed on this request (see the server log)" : "the server is shutting down", NULL);
    } else {
        char *out = kd_api_response(stu, &r, id, s->name, created, seq, n, state, &err);
        if (out && s->log) log_request(s, kind, &r, out);
        res = out ? send_body(conn, 200, out, NULL) : send_error(conn, 500, err.msg, NULL);
        free(out);
    }
    kd_seq_release(seq);
    kd_api_request_free(&r);
    return res;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
    kd_serve *s = cls;
    (void)version;
    kd_http_body *c;
    int got = kd_http_collect(con_cls, upload_data, upload_data_size, s->o.max_body, &c);
    if (got != KD_HTTP_READY) return got == KD_HTTP_MORE ? MHD_YES : MHD_NO;
    if (!kd_http_bearer_ok(conn, s->key)) return send_error(conn, 401, "Incorrect API key provided: send \"Authorization: Bearer <key>\"", NULL);
    if (c->too_big) {
        char m[160];
        snprintf(m, sizeof m, "the request body is larger than this server's limit of %zu bytes", s->o.max_body);
        return send_error(conn, 413, m, NULL);
    }
    if (strcmp(method, "GET") == 0) {
        if (strcmp(url, "/health") == 0) {
            kd_engine_stats es;
            kd_engine_get_stats(s->e, &es);
            char b[256];
            snprintf(b, sizeof b, "{\"status\":\"ok\",\"running\":%lld,\"waiting\":%lld,\"finished\":%lld,\"cancelled\":%lld}",
                     (long long)es.live, (long long)es.waiting, (long long)es.finished, (long long)es.cancelled);
            return send_body(conn, 200, b, NULL);
        }
        if (strcmp(url, "/v1/models") == 0) {
            const kd_student *st = kd_engine_student(s->e);
            json_t *o = json_pack("{s:s, s:[{s:s, s:s, s:I, s:s, s:i}]}", "object", "list", "data", "id", s->name, "object", "model",
                                  "created", (json_int_t)0, "owned_by", "kdstep", "max_model_len", st->model->cfg.max_position_embeddings);
            char *b = o ? json_dumps(o, JSON_COMPACT) : NULL;
            json_decref(o);
            enum MHD_Result r = b ? send_body(conn, 200, b, NULL) : send_error(conn, 500, "out of memory", NULL);
            free(b);
            return r;
        }
        return send_error(conn, 404, "not found: this server has GET /v1/models and /health, POST /v1/chat/completions and /v1/completions", NULL);
    }
    if (strcmp(method, "POST") != 0) return send_error(conn, 405, "method not allowed", NULL);
    int kind = strcmp(url, "/v1/chat/completions") == 0 ? KD_API_CHAT : strcmp(url, "/v1/completions") == 0 ? KD_API_COMPLETIONS : -1;
    if (kind < 0) return send_error(conn, 404, "not found: POST /v1/chat/completions or /v1/completions", NULL);
    return complete(s, conn, kind, c->data ? c->data : "", c->len);
}

int kd_serve_start(const kd_serve_options *opt, kd_serve **out, kd_error *err) {
    *out = NULL;
    kd_serve *s = kd_calloc(1, sizeof *s);
    if (!s) return kd_error_set(err, KD_ERR_NOMEM, "serve: out of memory");
    s->o = *opt;
    if (!s->o.max_body) s->o.max_body = 8u << 20;
    if (!s->o.max_connections) s->o.max_connections = 64;
    snprintf(s->name, sizeof s->name, "%s", opt->model_name && opt->model_name[0] ? opt->model_name : opt->model_dir);
    snprintf(s->host, sizeof s->host, "%s", opt->host && opt->host[0] ? opt->host : "127.0.0.1");
    if (opt->api_key && opt->api_key[0]) {
        s->key = kd_strdup(opt->api_key);
        if (!s->key) {
            free(s);
            return kd_error_set(err, KD_ERR_NOMEM, "serve: out of memory");
        }
    }
    int rc;
    pthread_mutex_init(&s->log_mu, NULL);
    if (opt->log_requests && !(s->log = fopen(opt->log_requests, "a"))) {
        rc = kd_error_errno(err, errno, "serve: cannot open --log-requests %s", opt->log_requests);
        goto fail;
    }
    if ((rc = kd_engine_open(opt->model_dir, &opt->engine, &s->e, err))) goto fail;
    int maxpos = kd_engine_student(s->e)->model->cfg.max_position_embeddings;
    if (s->o.max_tokens <= 0) s->o.max_tokens = 4096;
    if (s->o.max_tokens > maxpos) s->o.max_tokens = maxpos;
    if ((rc = kd_http_listen(s->host, opt->port, (unsigned)s->o.max_connections, 600, handler, s, &s->d, &s->port, err))) goto fail;
    *out = s;
    return KD_OK;
fail:
    kd_engine_close(s->e);
    if (s->log) fclose(s->log);
    free(s->key);
    free(s);
    return rc;
}

int kd_serve_port(const kd_serve *s) { return s->port; }
kd_engine *kd_serve_engine(kd_serve *s) { return s->e; }

void kd_serve_stop(kd_serve *s) {
    if (!s) return;
    /* the engine stops first: waiting handlers see their sequences cancelled and answer; then the
     * connection threads end, and only then is the engine freed */
    kd_engine_shutdown(s->e);
    MHD_stop_daemon(s->d);
    kd_engine_close(s->e);
    if (s->log) fclose(s->log);
    pthread_mutex_destroy(&s->log_mu);
    if (s->key) memset(s->key, 0, strlen(s->key));
    free(s->key);
    free(s);
}
