/* CUnit suite: the HTTP plumbing both servers share (src/core/httpd.c), on a real loopback socket with
 * libcurl as the client: bodies collected up to the bound and 413 past it (the rest read, the
 * connection answered), the bearer key, OpenAI error objects, Retry-After on 503, and a second server
 * on a bound port failing clearly. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/httpd.h"
#include "testutil.h"

#define MAX_BODY 1000

typedef struct got {
    char *data;
    size_t len;
} got;

static size_t collect(char *p, size_t sz, size_t n, void *ud) {
    got *b = ud;
    char *q = realloc(b->data, b->len + sz * n + 1);
    if (!q) return 0;
    memcpy(q + b->len, p, sz * n);
    b->data = q;
    b->len += sz * n;
    b->data[b->len] = 0;
    return sz * n;
}

static size_t header(char *p, size_t sz, size_t n, void *ud) {
    if (n * sz > 12 && strncasecmp(p, "Retry-After:", 12) == 0) *(int *)ud = atoi(p + 12);
    return sz * n;
}

/* POST /echo answers the body's length and its first byte; /busy answers 503; a key "k3y" is wanted. */
static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method, const char *version,
                               const char *upload_data, size_t *upload_data_size, void **con_cls) {
    (void)cls;
    (void)method;
    (void)version;
    kd_http_body *b;
    int r = kd_http_collect(con_cls, upload_data, upload_data_size, MAX_BODY, &b);
    if (r != KD_HTTP_READY) return r == KD_HTTP_MORE ? MHD_YES : MHD_NO;
    if (b->too_big) {
        char m[128];
        snprintf(m, sizeof m, "body of %zu bytes is over %d", b->seen, MAX_BODY);
        return kd_http_send_error(conn, 413, m, NULL);
    }
    if (!kd_http_bearer_ok(conn, "k3y")) return kd_http_send_error(conn, 401, "wrong key", NULL);
    if (strcmp(url, "/busy") == 0) return kd_http_send_error(conn, 503, "busy", NULL);
    char out[64];
    snprintf(out, sizeof out, "{\"len\":%zu,\"first\":\"%c\"}", b->len, b->len ? b->data[0] : '-');
    return kd_http_send(conn, 200, out, strlen(out), NULL, NULL);
}

static long post(int port, const char *path, const char *auth, size_t n, got *out, int *retry_after) {
    char url[96], hdr[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    char *body = malloc(n + 1);
    memset(body, 'x', n);
    body[n] = 0;
    CURL *h = curl_easy_init();
    struct curl_slist *hd = NULL;
    if (auth) {
        snprintf(hdr, sizeof hdr, "Authorization: %s", auth);
        hd = curl_slist_append(hd, hdr);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)n);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, retry_after);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    long code = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    free(body);
    return code;
}

static void test_httpd_server(void) {
    struct MHD_Daemon *d = NULL;
    int port = 0;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_http_listen(NULL, 0, 16, 30, handler, NULL, &d, &port, &e), KD_OK);
    CU_ASSERT_TRUE(port > 0);
    got g = {0};
    int ra = -1;
    CU_ASSERT_EQUAL(post(port, "/echo", "Bearer k3y", MAX_BODY, &g, &ra), 200);
    CU_ASSERT_STRING_EQUAL(g.data, "{\"len\":1000,\"first\":\"x\"}");
    free(g.data);
    g = (got){0};
    /* one byte over: the whole body is read and dropped, and the answer says 413 with the size */
    CU_ASSERT_EQUAL(post(port, "/echo", "Bearer k3y", 200000, &g, &ra), 413);
    KD_ASSERT_CONTAINS(g.data, "{\"error\":{\"message\":\"body of 200000 bytes is over 1000\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}");
    free(g.data);
    g = (got){0};
    const char *bad[] = {NULL, "Bearer k3", "Bearer k3yy", "Bearer K3y", "k3y"};
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(post(port, "/echo", bad[i], 3, &g, &ra), 401);
        KD_ASSERT_CONTAINS(g.data, "\"type\":\"authentication_error\",\"param\":null,\"code\":\"invalid_api_key\"");
        free(g.data);
        g = (got){0};
    }
    CU_ASSERT_EQUAL(post(port, "/busy", "Bearer k3y", 0, &g, &ra), 503);
    CU_ASSERT_EQUAL(ra, 1);
    KD_ASSERT_CONTAINS(g.data, "\"type\":\"server_busy\"");
    free(g.data);
    /* a second server on the bound port fails, and says so */
    struct MHD_Daemon *d2 = NULL;
    int p2 = 0;
    CU_ASSERT_EQUAL(kd_http_listen("127.0.0.1", port, 16, 30, handler, NULL, &d2, &p2, &e), KD_ERR_NET);
    CU_ASSERT_PTR_NULL(d2);
    KD_ASSERT_CONTAINS(e.msg, "cannot listen on 127.0.0.1:");
    CU_ASSERT_EQUAL(kd_http_listen("example", 0, 16, 30, handler, NULL, &d2, &p2, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "--host 'example' is not an IPv4 address");
    MHD_stop_daemon(d);
    /* the error object of each status */
    char *j = kd_http_error_json(404, "The model `x` does not exist.", "model");
    CU_ASSERT_STRING_EQUAL(j, "{\"error\":{\"message\":\"The model `x` does not exist.\",\"type\":\"not_found_error\",\"param\":\"model\",\"code\":\"model_not_found\"}}");
    free(j);
    j = kd_http_error_json(500, "boom", NULL);
    CU_ASSERT_STRING_EQUAL(j, "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    free(j);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("httpd", NULL, NULL);
    CU_add_test(s, "bodies, 413, bearer key, errors, Retry-After, second bind", test_httpd_server);
    return kd_test_main();
}
