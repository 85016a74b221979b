/* The HTTP plumbing both of kdstep's servers share, over libmicrohttpd: the stub teacher
 * (src/teacher/server.c, `kdstep teacher serve`) and the student server (src/serve/http.c, `kdstep
 * serve`). One thread per connection, loopback by default.
 *
 *   - a request body collected up to a bound: past it the rest is read and dropped (memory stays
 *     bounded) and the handler answers 413 (kd_http_collect, kd_http_completed);
 *   - "Authorization: Bearer KEY" compared in constant time (kd_http_bearer_ok);
 *   - answers with a Content-Type and an optional Retry-After (kd_http_send), and errors as OpenAI
 *     error objects {"error": {"message", "type", "param", "code"}} (kd_http_error_json, kd_http_send_error);
 *   - listening on an IPv4 address without SO_REUSEPORT, so a second server on the port fails to bind
 *     (kd_http_listen).
 */
#ifndef KDSTEP_HTTPD_H
#define KDSTEP_HTTPD_H

#include <microhttpd.h>
#include <stddef.h>

#include "kdstep/error.h"

/* A request's body, one per connection (MHD's con_cls). */
typedef struct kd_http_body {
    char *data;    /* NUL-terminated; NULL while empty */
    size_t len, cap;
    size_t seen;   /* bytes received, kept or not */
    int too_big;   /* more than the bound came: data was dropped, answer 413 */
} kd_http_body;

enum { KD_HTTP_MORE = 0, KD_HTTP_READY = 1, KD_HTTP_FAIL = -1 };

/* The first part of every access handler: makes the connection's body on the first call, keeps (up to
 * max_body bytes) or drops what arrives. KD_HTTP_MORE: return MHD_YES; KD_HTTP_FAIL (out of memory):
 * return MHD_NO; KD_HTTP_READY: *body holds the whole request (check body->too_big first). */
int kd_http_collect(void **con_cls, const char *upload_data, size_t *upload_data_size, size_t max_body, kd_http_body **body);
/* MHD_OPTION_NOTIFY_COMPLETED: frees the connection's body. */
void kd_http_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe);

/* 1 when no key is set (NULL or ""), or the request's Authorization header is "Bearer <key>"; the
 * time taken does not depend on where the first difference is. */
int kd_http_bearer_ok(struct MHD_Connection *conn, const char *key);

/* Queue an answer: body[len] as application/json (ctype NULL) or ctype, with Retry-After when given. */
enum MHD_Result kd_http_send(struct MHD_Connection *conn, unsigned status, const char *body, size_t len, const char *ctype,
                             const char *retry_after);
/* OpenAI's error object for an HTTP status (malloc'd): type authentication_error (401), not_found_error
 * (404, code model_not_found), invalid_request_error (other 4xx), server_busy (429, 503), server_error
 * (5xx); param is the request field at fault, or NULL. */
char *kd_http_error_json(int status, const char *message, const char *param);
/* kd_http_error_json sent with kd_http_send (503 and 429 with "Retry-After: 1"). */
enum MHD_Result kd_http_send_error(struct MHD_Connection *conn, unsigned status, const char *message, const char *param);

/* Start a thread-per-connection daemon on host:port (host NULL: 127.0.0.1; port 0: any free one,
 * *bound_port says which), at most max_conn connections, idle ones closed after timeout_s. */
int kd_http_listen(const char *host, int port, unsigned max_conn, unsigned timeout_s, MHD_AccessHandlerCallback handler,
                   void *cls, struct MHD_Daemon **daemon, int *bound_port, kd_error *err);

#endif
