/* HTTP plumbing shared by kdstep's servers: see include/kdstep/httpd.h. */
#include "kdstep/httpd.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int kd_http_collect(void **con_cls, const char *upload_data, size_t *upload_data_size, size_t max_body, kd_http_body **body) {
    if (!*con_cls) {
        kd_http_body *b = calloc(1, sizeof *b);
        if (!b) return KD_HTTP_FAIL;
        *con_cls = b;
        *body = b;
        return KD_HTTP_MORE;
    }
    kd_http_body *b = *con_cls;
    *body = b;
    size_t n = *upload_data_size;
    if (!n) return KD_HTTP_READY;
    *upload_data_size = 0;
    b->seen += n;
    if (b->too_big || b->len + n > max_body) { /* read and drop the rest (bounded), then answer 413 */
        b->too_big = 1;
        free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
        return KD_HTTP_MORE;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        if (cap > max_body + 1) cap = max_body + 1;
        char *p = realloc(b->data, cap);
        if (!p) return KD_HTTP_FAIL;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, upload_data, n);
    b->len += n;
    b->data[b->len] = 0;
    return KD_HTTP_MORE;
}

void kd_http_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    (void)toe;
    kd_http_body *b = *con_cls;
    if (b) {
        free(b->data);
        free(b);
    }
    *con_cls = NULL;
}

int kd_http_bearer_ok(struct MHD_Connection *conn, const char *key) {
    if (!key || !key[0]) return 1;
    const char *got = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    static const char B[] = "Bearer ";
    size_t kl = strlen(key), wl = sizeof B - 1 + kl, gl = got ? strlen(got) : 0;
    unsigned char diff = (unsigned char)(gl != wl);
    for (size_t i = 0; i < wl; i++) {
        unsigned char w = (unsigned char)(i < sizeof B - 1 ? B[i] : key[i - (sizeof B - 1)]);
        diff |= (unsigned char)(w ^ (unsigned char)(i < gl ? got[i] : 0));
    }
    return diff == 0;
}

enum MHD_Result kd_http_send(struct MHD_Connection *conn, unsigned status, const char *body, size_t len, const char *ctype,
                             const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype ? ctype : "application/json");
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

char *kd_http_error_json(int status, const char *message, const char *param) {
    const char *type = status == 401 ? "authentication_error"
                       : status == 404 ? "not_found_error"
                       : status == 413 ? "invalid_request_error"
                       : status == 429 || status == 503 ? "server_busy"
                       : status >= 500 ? "server_error" : "invalid_request_error";
    const char *code = status == 404 ? "model_not_found" : status == 401 ? "invalid_api_key" : NULL;
    json_t *e = json_pack("{s:s, s:s, s:o, s:o}", "message", message, "type", type, "param",
                          param ? json_string(param) : json_null(), "code", code ? json_string(code) : json_null());
    json_t *o = json_pack("{s:o}", "error", e ? e : json_object());
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

enum MHD_Result kd_http_send_error(struct MHD_Connection *conn, unsigned status, const char *message, const char *param) {
    char *b = kd_http_error_json((int)status, message, param);
    const char *body = b ? b : "{\"error\":{\"message\":\"out of memory\"}}";
    enum MHD_Result r = kd_http_send(conn, status, body, strlen(body), NULL, status == 503 || status == 429 ? "1" : NULL);
    free(b);
    return r;
}

int kd_http_listen(const char *host, int port, unsigned max_conn, unsigned timeout_s, MHD_AccessHandlerCallback handler,
                   void *cls, struct MHD_Daemon **daemon, int *bound_port, kd_error *err) {
    *daemon = NULL;
    const char *h = host && host[0] ? host : "127.0.0.1";
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, h, &addr.sin_addr) != 1)
        return kd_error_set(err, KD_ERR_INVALID, "--host '%s' is not an IPv4 address (127.0.0.1, the default, or 0.0.0.0 for every interface)", h);
    /* no SO_REUSEPORT: a second server on the port fails to bind */
    *daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, handler, cls,
                               MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, kd_http_completed, cls,
                               MHD_OPTION_CONNECTION_LIMIT, max_conn, MHD_OPTION_CONNECTION_TIMEOUT, timeout_s, MHD_OPTION_END);
    if (!*daemon)
        return kd_error_set(err, KD_ERR_NET, "cannot listen on %s:%d (port in use by another server? --port 0 picks a free one)", h, port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(*daemon, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = info ? info->port : port;
    return KD_OK;
}
