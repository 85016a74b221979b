/* CUnit suite: the teacher response parsers (src/teacher/response.c, prompt_lp.c, parse.c) against the
 * documented OpenAI and vLLM shapes, the fast parsers against the jansson references. */
#include "teacher_fixture.h"

/* ---- parsers, against the documented OpenAI and vLLM shapes ---- */

/* Issue 21, finding C: teacher text with invalid UTF-8 or a NUL is refused with its reason (the old
 * parser kept the bytes: the answer was then dropped by the JSON writer, or cut at the NUL). */
static void test_parse_refuses_bad_text(void) {
    const char *cases[][2] = {
        {"{\"choices\":[{\"message\":{\"content\":\"bad \xff\xfe bytes\"}}]}", "choices[0].message.content is not valid UTF-8 (byte 4 of 12)"},
        {"{\"choices\":[{\"message\":{\"content\":\"Hello \\u0000 world\"}}]}", "choices[0].message.content holds a NUL character (\\u0000) at byte 6"},
        {"{\"choices\":[{\"message\":{\"content\":\"x \\ud800 y\"}}]}", "content is not valid UTF-8"},
        {"{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"function\":{\"name\":\"get_\xc3\",\"arguments\":\"{}\"}}]}}]}",
         "tool_calls[0].function.name is not valid UTF-8"},
        {"{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\\\"\\u0000\\\"}\"}}]}}]}",
         "tool_calls[0].function.arguments holds a NUL character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kd_teacher_completion c, r;
        memset(&c, 0, sizeof c);
        memset(&r, 0, sizeof r);
        kd_error e, e2;
        CU_ASSERT_EQUAL(kd_teacher_parse_chat_response(cases[i][0], strlen(cases[i][0]), &c, &e), KD_ERR_PARSE);
        KD_ASSERT_CONTAINS(e.msg, cases[i][1]);
        /* the jansson reference refuses them too */
        CU_ASSERT_NOT_EQUAL(kd_teacher_parse_chat_response_ref(cases[i][0], strlen(cases[i][0]), &r, &e2), KD_OK);
        kd_teacher_completion_free(&c);
        kd_teacher_completion_free(&r);
    }
    /* valid UTF-8 of every length and escaped non-NUL controls still pass */
    const char *ok = "{\"choices\":[{\"message\":{\"content\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \\u00e9 \\t\"}}]}";
    kd_teacher_completion c;
    memset(&c, 0, sizeof c);
    kd_error e;
    CU_ASSERT_EQUAL(kd_teacher_parse_chat_response(ok, strlen(ok), &c, &e), KD_OK);
    CU_ASSERT_STRING_EQUAL(c.text, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc3\xa9 \t");
    kd_teacher_completion_free(&c);
}


static void test_parse_openai_response(void) {
    /* shape as in the OpenAI API reference (chat.completion with logprobs and a tool call) */
    const char *body =
        "{\"id\":\"chatcmpl-123\",\"object\":\"chat.completion\",\"created\":1702685778,\"model\":\"gpt-4o-mini\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello!\",\"tool_calls\":[{\"id\":\"call_abc\","
        "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Boston\\\"}\"}}]},"
        "\"logprobs\":{\"content\":[{\"token\":\"Hello\",\"logprob\":-0.31725305,\"bytes\":[72,101,108,108,111],\"top_logprobs\":"
        "[{\"token\":\"Hello\",\"logprob\":-0.31725305,\"bytes\":[72,101,108,108,111]},{\"token\":\"Hi\",\"logprob\":-1.3190403,"
        "\"bytes\":[72,105]}]},{\"token\":\"!\",\"logprob\":-0.02380986,\"bytes\":[33],\"top_logprobs\":[{\"token\":\"!\","
        "\"logprob\":-0.02380986,\"bytes\":[33]},{\"token\":\" there\",\"logprob\":-3.787621,\"bytes\":[32,116,104,101,114,101]}]}]},"
        "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}}";
    typedef int (*parser)(const char *, size_t, kd_teacher_completion *, kd_error *);
    parser parsers[2] = {kd_teacher_parse_chat_response, kd_teacher_parse_chat_response_ref};
    for (int pi = 0; pi < 2; pi++) {
    parser parse = parsers[pi];
    kd_teacher_completion c;
    memset(&c, 0, sizeof c);
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(parse(body, strlen(body), &c, &e), KD_OK);
    CU_ASSERT_STRING_EQUAL(c.text, "Hello!");
    CU_ASSERT_EQUAL_FATAL(c.n_tool_calls, 1);
    CU_ASSERT_STRING_EQUAL(c.tool_calls[0].name, "get_weather");
    CU_ASSERT_STRING_EQUAL(c.tool_calls[0].arguments, "{\"city\":\"Boston\"}");
    CU_ASSERT_STRING_EQUAL(c.finish_reason, "tool_calls");
    CU_ASSERT_EQUAL(c.prompt_tokens, 9);
    CU_ASSERT_EQUAL(c.completion_tokens, 12);
    CU_ASSERT_EQUAL(c.lp.n, 2);
    CU_ASSERT_EQUAL(c.lp.k, 2);
    CU_ASSERT_STRING_EQUAL(c.lp.topk_tokens[3], " there");
    CU_ASSERT_EQUAL(c.lp.topk_ids[0], -1);
    double tail0 = log1p(-(exp(-0.31725305) + exp(-1.3190403)));
    CU_ASSERT_DOUBLE_EQUAL(c.lp.tail_logprob[0], tail0, 1e-5);
    kd_teacher_completion_free(&c);
    const char *bad[][2] = {{"{\"choices\":[{\"message\":", "invalid JSON at byte"},
                            {"{\"error\":{\"message\":\"model overloaded\"}}", "no choices[0].message: model overloaded"},
                            {"{\"choices\":[{\"message\":{\"content\":5}}]}", "content is neither a string nor null"},
                            {"{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"function\":{}}]}}]}",
                             "tool_calls[0].function.name is missing"},
                            {"{\"choices\":[{\"message\":{\"content\":\"x\"},\"logprobs\":{\"content\":[{\"token\":\"x\"}]}}]}",
                             "logprobs.content[0].logprob is missing"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&c, 0, sizeof c);
        CU_ASSERT_NOT_EQUAL(parse(bad[i][0], strlen(bad[i][0]), &c, &e), KD_OK);
        KD_ASSERT_CONTAINS(e.msg, bad[i][1]);
        kd_teacher_completion_free(&c);
    }
    }
}

/* The fast scanner reads what the jansson reference reads, field by field, on the shapes the one-pass
 * reader treats specially: rows of different widths (padding, re-laid-out columns), `bytes` arrays
 * (integers, reals, negatives, empty, too long), numbers off the fast path, escapes and spacing. */
static void assert_same_parse(const char *body) {
    kd_teacher_completion a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    kd_error e1, e2;
    int ra = kd_teacher_parse_chat_response(body, strlen(body), &a, &e1);
    int rb = kd_teacher_parse_chat_response_ref(body, strlen(body), &b, &e2);
    CU_ASSERT_EQUAL(ra, KD_OK);
    CU_ASSERT_EQUAL(rb, KD_OK);
    if (ra || rb) {
        fprintf(stderr, "\n  %s | %s | %s\n", body, ra ? e1.msg : "", rb ? e2.msg : "");
        kd_teacher_completion_free(&a);
        kd_teacher_completion_free(&b);
        return;
    }
    CU_ASSERT_EQUAL(a.prompt_tokens, b.prompt_tokens);
    CU_ASSERT_EQUAL(a.completion_tokens, b.completion_tokens);
    CU_ASSERT_EQUAL_FATAL(a.lp.n, b.lp.n);
    CU_ASSERT_EQUAL_FATAL(a.lp.k, b.lp.k);
    for (int i = 0; i < a.lp.n; i++) {
        CU_ASSERT_STRING_EQUAL(a.lp.tokens[i], b.lp.tokens[i]);
        CU_ASSERT_EQUAL(a.lp.token_ids[i], b.lp.token_ids[i]);
        CU_ASSERT_EQUAL(a.lp.token_logprobs[i], b.lp.token_logprobs[i]);
        if (isinf(a.lp.tail_logprob[i]) || isinf(b.lp.tail_logprob[i])) {
            CU_ASSERT_EQUAL(a.lp.tail_logprob[i], b.lp.tail_logprob[i]);
        } else {
            CU_ASSERT_DOUBLE_EQUAL(a.lp.tail_logprob[i], b.lp.tail_logprob[i], 1e-6);
        }
        for (int j = 0; j < a.lp.k; j++) {
            size_t at = (size_t)i * a.lp.k + j;
            CU_ASSERT_EQUAL(a.lp.topk_ids[at], b.lp.topk_ids[at]);
            CU_ASSERT_EQUAL(a.lp.topk_logprobs[at], b.lp.topk_logprobs[at]);
            CU_ASSERT_EQUAL(!a.lp.topk_tokens[at], !b.lp.topk_tokens[at]);
            if (a.lp.topk_tokens[at] && b.lp.topk_tokens[at]) CU_ASSERT_STRING_EQUAL(a.lp.topk_tokens[at], b.lp.topk_tokens[at]);
        }
    }
    kd_teacher_completion_free(&a);
    kd_teacher_completion_free(&b);
}

static void test_parse_fast_matches_reference(void) {
    const char *head = "{\"choices\":[{\"message\":{\"content\":\"x\"},\"logprobs\":{\"content\":";
    const char *rows[] = {
        /* widths 1, 3, 0, 2: the columns grow twice, short rows are padded */
        "[{\"token\":\"a\",\"logprob\":-0.5,\"top_logprobs\":[{\"token\":\"a\",\"logprob\":-0.5}]},"
        "{\"token\":\"b\",\"logprob\":-1.25,\"top_logprobs\":[{\"token\":\"b\",\"logprob\":-1.25},{\"token\":\"c\",\"logprob\":-2},"
        "{\"token\":\"d\",\"logprob\":-3.5e0}]},{\"token\":\"e\",\"logprob\":0,\"top_logprobs\":[]},"
        "{\"token\":\"f\",\"logprob\":-0.0001,\"top_logprobs\":[{\"token\":\"f\",\"logprob\":-0.0001},{\"token\":\"g\",\"logprob\":-9999.0}]}]",
        /* bytes: used when non-empty; reals count as 0, negatives wrap, an empty array falls back to the token */
        "[{\"token\":\"x\",\"logprob\":-1,\"bytes\":[226,150,129],\"top_logprobs\":[{\"token\":\"\\u2581\",\"logprob\":-1,"
        "\"bytes\":[226,150,129]},{\"token\":\"q\",\"logprob\":-2,\"bytes\":[]},{\"token\":\"w\",\"logprob\":-2.5,\"bytes\":[321,66,0,9]},{\"token\":\"r\",\"logprob\":-3,\"bytes\":[-1,1.5,2e1,-0,0]}]}]",
        /* numbers off the fast path: exponents, long mantissas, many leading zeros, integers */
        "[{\"token\":\"n\",\"logprob\":-1.234567890123456789e-3,\"top_logprobs\":[{\"token\":\"n\",\"logprob\":-0.000000000000000000000012345},"
        "{\"token\":\"m\",\"logprob\":-1234567890123456789012.5},{\"token\":\"o\",\"logprob\":-4.77221203},"
        "{\"token\":\"p\",\"logprob\":-0.0218421817},{\"token\":\"s\",\"logprob\":-12345678.87654321}]}]",
        /* escapes, ids, keys out of order, unknown keys and spacing the fast key match does not take */
        "[ { \"top_logprobs\" : [ {\"bytes\":[104,105],\"logprob\":-0.25,\"token\":\"token_id:42\",\"extra\":{\"a\":[1,2]}} ] ,"
        " \"logprob\" : -0.25 , \"token\" : \"token_id:7\" } , {\"token\":\"\\\"q\\\\\\n\\ud83d\\ude00\",\"logprob\":-2.5,"
        "\"top_logprobs\":[{\"token\":\"t\\u00e9\",\"logprob\":-2.5},{\"logprob\":-3}]} ]",
        /* no rows */
        "[]",
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char body[4096];
        snprintf(body, sizeof body, "%s%s}}],\"usage\":{\"prompt_tokens\":%s,\"completion_tokens\":%s}}", head, rows[i],
                 i == 0 ? "9.02" : i == 1 ? "-7" : "1234567890123", i == 2 ? "3e1" : "12");
        assert_same_parse(body);
    }
    /* The same rows between rows as servers write them, far from the end of the body: the lean row
     * reader takes the plain rows and hands every other row (from its start, after reading part of it)
     * to the general reader; both give the reference's values. */
    {
        const char *plain = "{\"token\":\"I\",\"logprob\":-0.0151340775,\"bytes\":[73],\"top_logprobs\":[{\"token\":\"I\","
                            "\"logprob\":-0.0151340775,\"bytes\":[73]},{\"token\":\"\\n\",\"logprob\":-4.77221203,\"bytes\":[10]},"
                            "{\"token\":\"\\u2581\",\"logprob\":-11.5823059,\"bytes\":[226,150,129]}]}";
        const char *odd[] = {
            /* alternatives without bytes, an escape with no bytes, a long number and an exponent mid-row */
            "{\"token\":\"a\",\"logprob\":-0.5,\"top_logprobs\":[{\"token\":\"a\",\"logprob\":-0.5},{\"token\":\"\\t\",\"logprob\":-1.2345678901234567},"
            "{\"token\":\"c\",\"logprob\":-2e0,\"bytes\":[99]}]}",
            /* an extra key after the first alternative, then a row ending in an unknown key */
            "{\"token\":\"b\",\"logprob\":-1.25,\"bytes\":[98],\"top_logprobs\":[{\"token\":\"b\",\"logprob\":-1.25,\"bytes\":[98]},"
            "{\"token\":\"d\",\"logprob\":-3.5,\"bytes\":[100],\"id\":4}]}",
            "{\"token\":\"e\",\"logprob\":-0.75,\"bytes\":[101],\"top_logprobs\":[{\"token\":\"e\",\"logprob\":-0.75,\"bytes\":[101]}],\"x\":null}",
            /* bytes the lean reader does not take: four digits, empty, a real; ids; no top_logprobs; blanks */
            "{\"token\":\"token_id:42\",\"logprob\":-2.5,\"bytes\":[1234],\"top_logprobs\":[{\"token\":\"token_id:7\",\"logprob\":-2.5,\"bytes\":[]}]}",
            "{\"token\":\"f\",\"logprob\":-0.0001,\"bytes\":[1.5]}",
            "{\"token\":\"g\",\"logprob\":-0.125}",
            "{\"token\":\"h\",\"logprob\":-0.25,\"bytes\":[104],\"top_logprobs\":[ {\"token\":\"h\",\"logprob\":-0.25}]}",
            /* and the widest row of the body comes late: the columns grow after lean rows */
            "{\"token\":\"w\",\"logprob\":-0.5,\"bytes\":[119],\"top_logprobs\":[{\"token\":\"w\",\"logprob\":-0.5,\"bytes\":[119]},"
            "{\"token\":\"v\",\"logprob\":-1.5,\"bytes\":[118]},{\"token\":\"u\",\"logprob\":-2.5,\"bytes\":[117]},{\"token\":\"t\",\"logprob\":-3.5,\"bytes\":[116]}]}",
        };
        size_t cap = 64 * 1024;
        char *mix = malloc(cap);
        CU_ASSERT_PTR_NOT_NULL_FATAL(mix);
        int len = snprintf(mix, cap, "%s[%s", head, plain);
        for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
            for (int rep = 0; rep < 3; rep++) len += snprintf(mix + len, cap - (size_t)len, ",%s,%s", odd[i], plain);
        snprintf(mix + len, cap - (size_t)len, "]}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}");
        assert_same_parse(mix);
        kd_teacher_completion c;
        memset(&c, 0, sizeof c);
        kd_error e;
        CU_ASSERT_EQUAL_FATAL(kd_teacher_parse_chat_response(mix, strlen(mix), &c, &e), KD_OK);
        CU_ASSERT_EQUAL(c.lp.n, 1 + 8 * 3 * 2);
        CU_ASSERT_EQUAL(c.lp.k, 4);
        CU_ASSERT_STRING_EQUAL(c.lp.topk_tokens[2], "\xe2\x96\x81"); /* from the bytes */
        CU_ASSERT_EQUAL(c.lp.topk_logprobs[1], (float)-4.77221203);
        CU_ASSERT_EQUAL(c.lp.topk_logprobs[3], -INFINITY); /* a plain row padded to the late widest row */
        kd_teacher_completion_free(&c);
        free(mix);
    }
    /* a long bytes array (>= 4096 elements) is ignored for the text, as in the reference */
    char *big = malloc(64 * 1024);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    int n = snprintf(big, 64 * 1024, "%s[{\"token\":\"long\",\"logprob\":-1,\"bytes\":[", head);
    for (int i = 0; i < 5000; i++) n += snprintf(big + n, 64 * 1024 - (size_t)n, "%s%d", i ? "," : "", 65 + i % 26);
    snprintf(big + n, 64 * 1024 - (size_t)n, "],\"top_logprobs\":[]}]}}]}");
    assert_same_parse(big);
    free(big);
    /* 2000 random numbers of every length and shape (signs, leading zeros, 0-25 fraction digits,
     * exponents), 8 per row, read exactly as the reference (strtod) reads them */
    uint64_t rng = 77;
    for (int rep = 0; rep < 5; rep++) {
        char *nb = malloc(256 * 1024);
        CU_ASSERT_PTR_NOT_NULL_FATAL(nb);
        int len = snprintf(nb, 256 * 1024, "%s[", head);
        for (int row = 0; row < 50; row++) {
            len += snprintf(nb + len, 256 * 1024 - (size_t)len, "%s{\"token\":\"t\",\"logprob\":-1,\"top_logprobs\":[", row ? "," : "");
            for (int j = 0; j < 8; j++) {
                char num[64];
                int q = 0;
                if (kd_splitmix64(&rng) % 4) num[q++] = '-';
                int ilen = (int)(kd_splitmix64(&rng) % 4);
                if (ilen == 0) num[q++] = '0';
                for (int d = 0; d < ilen; d++) num[q++] = (char)('0' + (d == 0 ? 1 + kd_splitmix64(&rng) % 9 : kd_splitmix64(&rng) % 10));
                int flen = (int)(kd_splitmix64(&rng) % 26);
                if (flen) num[q++] = '.';
                for (int d = 0; d < flen; d++) num[q++] = (char)('0' + kd_splitmix64(&rng) % 10);
                if (kd_splitmix64(&rng) % 8 == 0) q += sprintf(num + q, "e%d", (int)(kd_splitmix64(&rng) % 21) - 10);
                num[q] = 0;
                len += snprintf(nb + len, 256 * 1024 - (size_t)len, "%s{\"token\":\"%c\",\"logprob\":%s,\"bytes\":[%d]}", j ? "," : "",
                                'a' + j, num, 'a' + j);
            }
            len += snprintf(nb + len, 256 * 1024 - (size_t)len, "]}");
        }
        snprintf(nb + len, 256 * 1024 - (size_t)len, "]}}]}");
        assert_same_parse(nb);
        free(nb);
    }
    /* a backslash before a NUL byte is not an escape */
    const char nul[] = "{\"choices\":[{\"message\":{\"content\":\"a\\\0\"}}]}";
    kd_teacher_completion c;
    memset(&c, 0, sizeof c);
    kd_error e;
    CU_ASSERT_NOT_EQUAL(kd_teacher_parse_chat_response(nul, sizeof nul - 1, &c, &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "invalid JSON at byte");
    kd_teacher_completion_free(&c);
}

static void check_prompt_rows(const kd_teacher_logprobs *lp) {
    CU_ASSERT_EQUAL_FATAL(lp->n, 4);
    CU_ASSERT_EQUAL(lp->token_ids[0], -1); /* null: nothing predicts the first token */
    CU_ASSERT_EQUAL(lp->topk_ids[0], -1);
    CU_ASSERT_EQUAL(lp->token_ids[1], 200);
    CU_ASSERT_STRING_EQUAL(lp->tokens[1], " be");
    CU_ASSERT_EQUAL(lp->topk_ids[2], 200);
    CU_ASSERT_EQUAL(lp->topk_ids[3], 201);
    CU_ASSERT_STRING_EQUAL(lp->topk_tokens[3], " see");
    /* the prompt token comes first even when it ranks below k; the columns are ranks 1 and 2 */
    CU_ASSERT_EQUAL(lp->token_ids[2], 300);
    CU_ASSERT_STRING_EQUAL(lp->tokens[2], " or");
    CU_ASSERT_DOUBLE_EQUAL(lp->token_logprobs[2], -3.0, 1e-6);
    CU_ASSERT_EQUAL(lp->topk_ids[4], 301);
    CU_ASSERT_EQUAL(lp->topk_ids[5], 302);
    CU_ASSERT_DOUBLE_EQUAL(lp->tail_logprob[2], log1p(-(exp(-0.2) + exp(-2.0))), 1e-6);
    /* "token_id:N" keys (return_tokens_as_token_ids) */
    CU_ASSERT_EQUAL(lp->token_ids[3], 400);
    CU_ASSERT_EQUAL(lp->topk_ids[7], 401);
}

static void test_parse_vllm_prompt_logprobs(void) {
    /* vLLM's prompt_logprobs=2 (https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html): the
     * first entry is null; each entry maps token id -> {logprob, rank, decoded_token}, the prompt token
     * first, then the top-k. A completion has it in choices[0], a chat completion at the top level. */
    const char *rows =
        "[null,{\"200\":{\"logprob\":-0.5,\"rank\":1,\"decoded_token\":\" be\"},\"201\":{\"logprob\":"
        "-1.5,\"rank\":2,\"decoded_token\":\" see\"}},{\"300\":{\"logprob\":-3.0,\"rank\":4,\"decoded_token\":\" or\"},\"301\":"
        "{\"logprob\":-0.2,\"rank\":1,\"decoded_token\":\" and\"},\"302\":{\"logprob\":-2.0,\"rank\":2,\"decoded_token\":\",\"}},"
        "{\"token_id:400\":{\"logprob\":-0.1,\"rank\":1,\"decoded_token\":\" not\"},\"token_id:401\":{\"logprob\":-2.5,\"rank\":2,"
        "\"decoded_token\":\" to\"}}]";
    char cmpl[2048], chat[2048];
    snprintf(cmpl, sizeof cmpl,
             "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\" x\",\"prompt_logprobs\":%s,"
             "\"finish_reason\":\"length\"}]}", rows);
    snprintf(chat, sizeof chat,
             "{\"id\":\"c-1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
             "\"content\":\"\"},\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":4},\"prompt_logprobs\":%s}", rows);
    const char *bodies[2] = {cmpl, chat};
    for (int b = 0; b < 2; b++) {
        kd_teacher_logprobs lp, ref;
        kd_error e;
        CU_ASSERT_EQUAL_FATAL(kd_teacher_parse_prompt_logprobs(bodies[b], strlen(bodies[b]), 2, &lp, &e), KD_OK);
        check_prompt_rows(&lp);
        CU_ASSERT_EQUAL_FATAL(kd_teacher_parse_prompt_logprobs_ref(bodies[b], strlen(bodies[b]), 2, &ref, &e), KD_OK);
        check_prompt_rows(&ref);
        for (int i = 0; i < 4 * 2; i++) CU_ASSERT_EQUAL(memcmp(&lp.topk_logprobs[i], &ref.topk_logprobs[i], 4), 0);
        for (int i = 0; i < 4; i++) CU_ASSERT_EQUAL(memcmp(&lp.tail_logprob[i], &ref.tail_logprob[i], 4), 0);
        kd_teacher_logprobs_free(&lp);
        kd_teacher_logprobs_free(&ref);
    }
    const char *no = "{\"choices\":[{\"text\":\"x\"}]}";
    kd_teacher_logprobs lp;
    kd_error e;
    CU_ASSERT_EQUAL(kd_teacher_parse_prompt_logprobs(no, strlen(no), 2, &lp, &e), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(e.msg, "no prompt_logprobs (is the endpoint vLLM");
    /* escapes in texts and keys, numbers in exponent form, a row the lean reader hands to the general one:
     * the fast reader and the reference read the same */
    const char *esc = "{\"prompt_logprobs\":[null,{\"7\":{\"logprob\":-1.5e-3,\"rank\":1,\"decoded_token\":\"a\\nb\\u00e9\"},"
                      "\"\\u0038\":{\"logprob\":-7.25,\"rank\":2,\"decoded_token\":\"\\\"q\"}},"
                      "{ \"9\" : { \"rank\" : 1 , \"logprob\" : -0.5 } }]}";
    kd_teacher_logprobs a, b;
    CU_ASSERT_EQUAL_FATAL(kd_teacher_parse_prompt_logprobs(esc, strlen(esc), 2, &a, &e), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_teacher_parse_prompt_logprobs_ref(esc, strlen(esc), 2, &b, &e), KD_OK);
    CU_ASSERT_EQUAL_FATAL(a.n, 3);
    CU_ASSERT_EQUAL_FATAL(b.n, 3);
    CU_ASSERT_STRING_EQUAL(a.tokens[1], "a\nb\xc3\xa9");
    CU_ASSERT_STRING_EQUAL(b.tokens[1], "a\nb\xc3\xa9");
    CU_ASSERT_STRING_EQUAL(a.topk_tokens[3], "\"q");
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(a.token_ids[i], b.token_ids[i]);
        CU_ASSERT_EQUAL(memcmp(&a.tail_logprob[i], &b.tail_logprob[i], 4), 0);
        for (int j = 0; j < 2; j++) {
            CU_ASSERT_EQUAL(a.topk_ids[i * 2 + j], b.topk_ids[i * 2 + j]);
            CU_ASSERT_EQUAL(memcmp(&a.topk_logprobs[i * 2 + j], &b.topk_logprobs[i * 2 + j], 4), 0);
        }
    }
    CU_ASSERT_EQUAL(a.topk_ids[3], 8);
    CU_ASSERT_EQUAL(a.token_ids[2], 9);
    CU_ASSERT_PTR_NULL(a.tokens[2]);
    kd_teacher_logprobs_free(&a);
    kd_teacher_logprobs_free(&b);
    const char *broken = "{\"prompt_logprobs\":[null,{\"1\":{\"logprob\":-0.5,\"rank\":1}},{\"2\":";
    CU_ASSERT_EQUAL(kd_teacher_parse_prompt_logprobs(broken, strlen(broken), 2, &lp, &e), KD_ERR_PARSE);
}

/* Issue 16: the fast prompt_logprobs reader and the jansson reference read the same rows wherever both
 * accept (the fuzz target compares them on every input). The fuzz stage's input
 * (tests/fuzz/known/prompt_logprobs_divergence.json: an entry whose "logprob" key is misspelled) was
 * read as logprob -inf by the fast reader and 0 by the reference (jansson's json_number_value of a
 * missing value), so its tail differed; a top-level list after "choices" was taken from the choices by
 * one and from the top level by the other; a logprob under -1e30 was -inf in one path and not in
 * another. Each case here, both readers, the same rows. */
static void same_rows(const char *body, int k, int want_ok) {
    kd_teacher_logprobs a, b;
    kd_error e1, e2;
    int ra = kd_teacher_parse_prompt_logprobs(body, strlen(body), k, &a, &e1);
    int rb = kd_teacher_parse_prompt_logprobs_ref(body, strlen(body), k, &b, &e2);
    CU_ASSERT_EQUAL(ra == KD_OK, want_ok);
    CU_ASSERT_EQUAL(rb == KD_OK, want_ok);
    if (ra || rb) {
        if (!ra) kd_teacher_logprobs_free(&a);
        if (!rb) kd_teacher_logprobs_free(&b);
        return;
    }
    CU_ASSERT_EQUAL_FATAL(a.n, b.n);
    int diff = 0;
    for (int i = 0; i < a.n; i++) {
        diff += a.token_ids[i] != b.token_ids[i] || memcmp(&a.token_logprobs[i], &b.token_logprobs[i], 4) != 0 ||
                memcmp(&a.tail_logprob[i], &b.tail_logprob[i], 4) != 0;
        for (int j = 0; j < k; j++)
            diff += a.topk_ids[i * k + j] != b.topk_ids[i * k + j] || memcmp(&a.topk_logprobs[i * k + j], &b.topk_logprobs[i * k + j], 4) != 0;
    }
    if (diff) fprintf(stderr, "\n  %d differences in %s\n", diff, body);
    CU_ASSERT_EQUAL(diff, 0);
    kd_teacher_logprobs_free(&a);
    kd_teacher_logprobs_free(&b);
}

static void test_prompt_logprobs_readers_agree(void) {
    char *known = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL_FATAL(kd_read_file(kd_test_src("tests/fuzz/known/prompt_logprobs_divergence.json"), &known, &n, NULL), KD_OK);
    same_rows(known, 1 + known[0] % 8, 1); /* k as the fuzz target picks it */
    free(known);
    /* no logprob, or null: -inf in both; a string: refused by both */
    same_rows("{\"prompt_logprobs\":[null,{\"5\":{\"rank\":1,\"decoded_token\":\"a\"},\"6\":{\"logprob\":null,\"rank\":2,\"decoded_token\":\"b\"}}]}", 2, 1);
    same_rows("{\"prompt_logprobs\":[null,{\"5\":{\"logprob\":\"x\",\"rank\":1,\"decoded_token\":\"a\"}}]}", 2, 0);
    /* the first list in the document wins: choices before a top-level list, and the other way round */
    same_rows("{\"choices\":[{\"prompt_logprobs\":[null,{\"1\":{\"logprob\":-1,\"rank\":1,\"decoded_token\":\"a\"}}]}],"
              "\"prompt_logprobs\":[null,{\"2\":{\"logprob\":-2,\"rank\":1,\"decoded_token\":\"b\"}}]}", 1, 1);
    same_rows("{\"prompt_logprobs\":[null,{\"2\":{\"logprob\":-2,\"rank\":1,\"decoded_token\":\"b\"}}],"
              "\"choices\":[{\"prompt_logprobs\":[null,{\"1\":{\"logprob\":-1,\"rank\":1,\"decoded_token\":\"a\"}}]}]}", 1, 1);
    /* a logprob below -1e30 is -inf, in the lean form (keys in vLLM's order) as in the general one */
    same_rows("{\"prompt_logprobs\":[null,{\"3\":{\"logprob\":-1e35,\"rank\":1,\"decoded_token\":\"a\"},\"4\":{\"logprob\":-2.5,"
              "\"rank\":2,\"decoded_token\":\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"}}]}", 2, 1);
    /* duplicate keys: the reference refuses them (which value a reader keeps is not defined) */
    const char *dup = "{\"prompt_logprobs\":[null,{\"3\":{\"logprob\":-1,\"rank\":1},\"3\":{\"logprob\":-2,\"rank\":1}}]}";
    kd_teacher_logprobs r;
    kd_error e;
    CU_ASSERT_EQUAL(kd_teacher_parse_prompt_logprobs_ref(dup, strlen(dup), 1, &r, &e), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(e.msg, "duplicate");
}

/* Issue 19: with "prompt_token_ids" beside the list (vLLM's return_token_ids; kdstep serve always
 * writes them), each row's prompt token is the id named there, whatever the order of the row's entries:
 * vLLM 0.7's v1 engine wrote the top-k in rank order and the prompt token after them (rank k+1) when
 * it was not one of them (vllm/v1/engine/logprobs.py, _make_pos_logprob_dict), today's vLLM writes it
 * first (vllm/logprobs.py, append_logprobs_for_next_position). Both readers agree. */
static void test_prompt_logprobs_prompt_token_ids(void) {
    /* row 1: prompt token 7 at rank 2 (entries in rank order); row 2: prompt token 9 outside the top-2 */
    const char *body =
        "{\"prompt_token_ids\":[1,7,9],\"prompt_logprobs\":[null,{\"5\":{\"logprob\":-0.5,\"rank\":1,\"decoded_token\":\"a\"},"
        "\"7\":{\"logprob\":-1.5,\"rank\":2,\"decoded_token\":\"b\"}},{\"3\":{\"logprob\":-0.25,\"rank\":1,\"decoded_token\":\"c\"},"
        "\"4\":{\"logprob\":-2,\"rank\":2,\"decoded_token\":\"d\"},\"9\":{\"logprob\":-6,\"rank\":3,\"decoded_token\":\"e\"}}]}";
    for (int ref = 0; ref < 2; ref++) {
        kd_teacher_logprobs lp;
        kd_error e;
        int rc = ref ? kd_teacher_parse_prompt_logprobs_ref(body, strlen(body), 2, &lp, &e)
                     : kd_teacher_parse_prompt_logprobs(body, strlen(body), 2, &lp, &e);
        CU_ASSERT_EQUAL_FATAL(rc, KD_OK);
        CU_ASSERT_EQUAL_FATAL(lp.n, 3);
        CU_ASSERT_EQUAL(lp.token_ids[1], 7);
        CU_ASSERT_STRING_EQUAL(lp.tokens[1], "b"); /* its top-k entry */
        CU_ASSERT_EQUAL(lp.token_logprobs[1], -1.5f);
        CU_ASSERT_EQUAL(lp.token_ids[2], 9);
        CU_ASSERT_PTR_NULL(lp.tokens[2]); /* not in the top-2, not written first: no text */
        CU_ASSERT_EQUAL(lp.topk_ids[2 * 2], 3);
        CU_ASSERT_EQUAL(lp.topk_ids[2 * 2 + 1], 4);
        kd_teacher_logprobs_free(&lp);
    }
    same_rows(body, 2, 1);
    /* in choices[0] (a completion), and a list without ids: the first entry is the prompt token */
    same_rows("{\"choices\":[{\"prompt_token_ids\":[1,7],\"prompt_logprobs\":[null,{\"5\":{\"logprob\":-0.5,\"rank\":1,"
              "\"decoded_token\":\"a\"},\"7\":{\"logprob\":-1.5,\"rank\":2,\"decoded_token\":\"b\"}}]}]}", 2, 1);
    same_rows("{\"prompt_logprobs\":[null,{\"5\":{\"logprob\":-0.5,\"rank\":1,\"decoded_token\":\"a\"}}]}", 1, 1);
}

static void add_tests(CU_pSuite s) {
    CU_add_test(s, "parse OpenAI chat responses", test_parse_openai_response);
    CU_add_test(s, "fast parser matches the jansson reference", test_parse_fast_matches_reference);
    CU_add_test(s, "parse refuses invalid UTF-8 and NUL in teacher text", test_parse_refuses_bad_text);
    CU_add_test(s, "parse vLLM prompt_logprobs", test_parse_vllm_prompt_logprobs);
    CU_add_test(s, "prompt_logprobs: fast reader and reference agree (fuzz finds)", test_prompt_logprobs_readers_agree);
    CU_add_test(s, "prompt_logprobs: prompt_token_ids name each row's prompt token", test_prompt_logprobs_prompt_token_ids);
}

int main(void) { return teacher_suite_main("teacher_response", add_tests); }
