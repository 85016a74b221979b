/* libFuzzer target: teacher response bodies as they arrive compressed (Content-Encoding gzip or
 * deflate), decoded in a stream with the decoded-size cap of teacher.max_response_bytes (as the client's
 * write callback counts curl's decoded bytes), then parsed by the fast chat parser, its jansson
 * reference and the prompt_logprobs parser. Any bytes must decode within the cap or stop at it (a
 * compression bomb costs at most the cap), and parse or give an error, never crash or read out of
 * bounds; where both chat parsers accept, they agree on the text and the calls.
 * The first byte picks the form: raw, gzip or zlib/deflate (so the parsers see plain bodies too). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "kdstep/teacher.h"

#define CAP (1 << 20) /* the cap under test (teacher.max_response_bytes is 8 MiB by default) */

/* Inflate in 16 KiB pieces into out (CAP bytes); 0 decoded, 1 stopped at the cap, -1 not decodable. */
static int inflate_capped(const uint8_t *in, size_t n, int wbits, char *out, size_t *len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, wbits) != Z_OK) return -1;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    *len = 0;
    unsigned char piece[16384];
    int rc = 0;
    for (;;) {
        z.next_out = piece;
        z.avail_out = sizeof piece;
        int r = inflate(&z, Z_NO_FLUSH);
        size_t got = sizeof piece - z.avail_out;
        if (*len + got > CAP) { /* what the client does: stop the transfer, keep nothing more */
            rc = 1;
            break;
        }
        memcpy(out + *len, piece, got);
        *len += got;
        if (r == Z_STREAM_END) break;
        if (r != Z_OK || (got == 0 && z.avail_in == 0)) {
            rc = -1;
            break;
        }
    }
    inflateEnd(&z);
    if (*len > CAP) abort();
    return rc;
}

static void parse_all(const char *body, size_t len) {
    kd_teacher_completion c, r;
    memset(&c, 0, sizeof c);
    memset(&r, 0, sizeof r);
    kd_error e, e2;
    int fast = kd_teacher_parse_chat_response(body, len, &c, &e);
    int ref = kd_teacher_parse_chat_response_ref(body, len, &r, &e2);
    if (fast != KD_OK && !e.msg[0]) abort();
    if (fast == KD_OK && ref == KD_OK) {
        if (strcmp(c.text, r.text) != 0 || c.n_tool_calls != r.n_tool_calls) abort();
        for (int i = 0; i < c.n_tool_calls; i++)
            if (strcmp(c.tool_calls[i].name, r.tool_calls[i].name) != 0) abort();
    }
    kd_teacher_completion_free(&c);
    kd_teacher_completion_free(&r);
    kd_teacher_logprobs lp;
    memset(&lp, 0, sizeof lp);
    kd_teacher_parse_prompt_logprobs(body, len, 1 + (int)(len % 4), &lp, &e);
    kd_teacher_logprobs_free(&lp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int form = data[0] % 3;
    data++;
    size--;
    if (form == 0) {
        parse_all((const char *)data, size);
        return 0;
    }
    char *out = malloc(CAP + 1);
    if (!out) return 0;
    size_t len = 0;
    int r = inflate_capped(data, size, form == 1 ? 16 + MAX_WBITS : MAX_WBITS, out, &len);
    if (r == 0) parse_all(out, len);
    free(out);
    return 0;
}
