/* CUnit suite: the streaming prompt-set reader (src/data/prompts.c), on hand-written lines and on
 * every BFCL question file as it is. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KD_HAS_ASAN 1
#endif
#endif
#ifndef KD_HAS_ASAN
#define KD_HAS_ASAN 0
#endif
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "kdstep/prompts.h"
#include "testutil.h"

typedef struct expect {
    int ok;
    const char *reason; /* substring when !ok */
} expect;

static void test_mixed_lines(void) {
    const char *text =
        "\xEF\xBB\xBF{\"id\": \"a\", \"prompt\": \"Read config.json\", \"metadata\": {\"tool_calls\": []}}\n" /* 1 */
        "{\"id\": 7, \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", "
        "\"content\": \"Weather in Paris?\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": "
        "\"get_weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": "
        "\"string\"}}}}}]}\n"                                                                                /* 2 */
        "\n"                                                                                                 /* 3 */
        "{\"id\": \"b\", \"prompt\": \"x\",}\n"                                                              /* 4 */
        "{\"id\": \"c\"}\n"                                                                                  /* 5 */
        "{\"prompt\": \"caf\xC3\"}\n"                                                                        /* 6 */
        "{\"prompt\": \"   \"}\n"                                                                            /* 7 */
        "[1, 2]\n"                                                                                           /* 8 */
        "{\"prompt\": 5}\n"                                                                                  /* 9 */
        "{\"messages\": []}\n"                                                                               /* 10 */
        "{\"messages\": [{\"role\": \"robot\", \"content\": \"hi\"}]}\n"                                     /* 11 */
        "{\"messages\": [{\"role\": \"user\", \"content\": 3}]}\n"                                           /* 12 */
        "{\"prompt\": \"hi\", \"tools\": {\"name\": \"x\"}}\n"                                               /* 13 */
        "{\"prompt\": \"hi\", \"metadata\": [1]}\n"                                                          /* 14 */
        "{\"prompt\": \"hi\", \"id\": [1]}\n"                                                                /* 15 */
        "{\"id\": \"bf\", \"question\": [[{\"role\": \"user\", \"content\": \"Area of a circle r=3\"}]], "
        "\"function\": [{\"name\": \"geometry.area_circle\", \"parameters\": {\"type\": \"dict\", \"properties\": "
        "{\"radius\": {\"type\": \"integer\"}}, \"required\": [\"radius\"]}}]}\n"                           /* 16 */
        "{\"prompt\": \"hi\", \"tools\": [{\"type\": \"function\"}]}\n"                                      /* 17 */
        "\xEF\xBB\xBF{\"prompt\": \"BOM not on line 1\"}\n"                                                  /* 18 */
        "{\"messages\": [{\"role\": \"user\", \"content\": \"\"}, {\"role\": \"assistant\", \"content\": null}]}\n" /* 19 */
        "{\"question\": \"flat\"}\n"                                                                         /* 20 */
        "{\"prompt\": \"last line without newline\"}";                                                       /* 21 */
    const expect want[] = {
        {1, NULL},
        {1, NULL},
        {0, "invalid JSON at column 27: string or '}' expected"},
        {0, "missing prompt: expected \"prompt\", \"messages\" or BFCL \"question\""},
        {0, "invalid UTF-8 at byte 16"},
        {0, "empty prompt: \"prompt\" is blank"},
        {0, "a prompt line must be a JSON object, got an array"},
        {0, "\"prompt\" must be a string"},
        {0, "empty prompt: \"messages\" is an empty array"},
        {0, "messages[0].role 'robot' is not one of system, user, assistant, tool"},
        {0, "messages[0].content must be a string"},
        {0, "\"tools\" must be an array of tools"},
        {0, "\"metadata\" must be an object"},
        {0, "\"id\" must be a string or an integer"},
        {1, NULL},
        {0, "line 17: tools"},
        {0, "invalid JSON at column 1"},
        {0, "empty prompt: every message in \"messages\" is empty"},
        {0, "\"question\" must be BFCL's list of turns"},
        {1, NULL},
    };
    const int64_t lines[] = {1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21};
    const char *path = kd_test_write("mixed.jsonl", text);
    kd_prompt_reader *r = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_prompts_open(&r, path, &e), KD_OK);
    kd_prompt p;
    size_t n = 0;
    int rc;
    while ((rc = kd_prompts_next(r, &p, &e)) == 1) {
        CU_ASSERT_TRUE_FATAL(n < sizeof want / sizeof want[0]);
        CU_ASSERT_EQUAL(p.line, lines[n]);
        CU_ASSERT_EQUAL(p.index, lines[n] - 1);
        if (want[n].ok) {
            if (p.status) fprintf(stderr, "\n  line %lld: %s\n", (long long)p.line, p.reason);
            CU_ASSERT_EQUAL(p.status, KD_OK);
            CU_ASSERT_TRUE(json_array_size(p.messages) >= 1);
        } else {
            CU_ASSERT_NOT_EQUAL(p.status, KD_OK);
            KD_ASSERT_CONTAINS(p.reason, want[n].reason);
            CU_ASSERT_PTR_NULL(p.messages);
            char *fj = kd_prompt_failure_json(&p, path);
            json_t *f = json_loads(fj, 0, NULL);
            CU_ASSERT_EQUAL(json_integer_value(json_object_get(f, "line")), lines[n]);
            CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(f, "reason")), p.reason);
            json_decref(f);
            free(fj);
        }
        if (n == 0) {
            CU_ASSERT_STRING_EQUAL(p.id, "a");
            CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(p.messages, 0), "content")),
                                   "Read config.json");
            CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(p.messages, 0), "role")), "user");
            CU_ASSERT_TRUE(json_is_array(json_object_get(p.metadata, "tool_calls")));
            CU_ASSERT_PTR_NULL(p.tools);
        }
        if (n == 1) {
            CU_ASSERT_STRING_EQUAL(p.id, "7");
            CU_ASSERT_EQUAL(json_array_size(p.messages), 2);
            CU_ASSERT_EQUAL(json_array_size(p.tools), 1);
            /* what a worker receives over MPI is the same record */
            char *s = kd_prompt_to_json(&p);
            kd_prompt q;
            CU_ASSERT_EQUAL(kd_prompt_from_json(&q, s, strlen(s), &e), KD_OK);
            CU_ASSERT_EQUAL(q.index, 1);
            CU_ASSERT_EQUAL(q.line, 2);
            CU_ASSERT_STRING_EQUAL(q.id, "7");
            CU_ASSERT_TRUE(json_equal(q.messages, p.messages));
            CU_ASSERT_TRUE(json_equal(q.tools, p.tools));
            kd_prompt_clear(&q);
            free(s);
        }
        if (n == 14) {
            CU_ASSERT_STRING_EQUAL(p.id, "bf");
            CU_ASSERT_EQUAL(json_array_size(p.tools), 1);
        }
        kd_prompt_clear(&p);
        n++;
    }
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(n, sizeof want / sizeof want[0]);
    kd_prompts_close(r);
    int64_t count = 0;
    CU_ASSERT_EQUAL(kd_prompts_count_lines(path, &count, &e), KD_OK);
    CU_ASSERT_EQUAL(count, 21);
}

static void test_errors(void) {
    kd_prompt_reader *r = NULL;
    kd_error e;
    CU_ASSERT_EQUAL(kd_prompts_open(&r, "/nonexistent/prompts.jsonl", &e), KD_ERR_IO);
    KD_ASSERT_CONTAINS(e.msg, "/nonexistent/prompts.jsonl: cannot open the prompt set");
    int64_t n;
    CU_ASSERT_EQUAL(kd_prompts_count_lines("/nonexistent/prompts.jsonl", &n, &e), KD_ERR_IO);
    KD_ASSERT_CONTAINS(e.msg, "cannot open the prompt set");
    CU_ASSERT_EQUAL(kd_prompts_open(&r, kd_test_write("one.jsonl", "{\"prompt\": \"x\"}\n"), &e), KD_OK);
    CU_ASSERT_EQUAL(kd_prompts_seek(r, -1, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "cannot seek to line index -1");
    kd_prompts_close(r);
    CU_ASSERT_EQUAL(kd_prompts_open(&r, "-", &e), KD_OK);
    CU_ASSERT_EQUAL(kd_prompts_seek(r, 0, &e), KD_OK);
    kd_prompts_close(r);
    kd_prompt p;
    CU_ASSERT_EQUAL(kd_prompt_from_json(&p, "{", 1, &e), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(e.msg, "prompt record: invalid JSON at column");
    CU_ASSERT_EQUAL(kd_prompt_from_json(&p, "{\"index\": 1}", 12, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "needs integer \"index\", \"line\", string \"id\" and array \"messages\"");
}

/* 200k lines: seek forward across sparse-index strides, backward, past the end; memory stays flat. */
static void test_seek_and_stream(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/big.jsonl", kd_test_tmpdir());
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    const int64_t N = 200000;
    for (int64_t i = 0; i < N; i++) fprintf(f, "{\"id\": \"p%lld\", \"prompt\": \"question number %lld\"}\n", (long long)i, (long long)i);
    fclose(f);
    kd_prompt_reader *r = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_prompts_open(&r, path, &e), KD_OK);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    kd_prompt p;
    int64_t n = 0;
    while (kd_prompts_next(r, &p, &e) == 1) {
        if (p.status || p.index != n) CU_FAIL("stream out of order");
        kd_prompt_clear(&p);
        n++;
    }
    getrusage(RUSAGE_SELF, &ru1);
    CU_ASSERT_EQUAL(n, N);
    /* the file is ~11 MB; reading it must not grow the process by anything like that (not measurable
     * under AddressSanitizer, whose quarantine keeps freed blocks resident on purpose) */
#if !defined(__SANITIZE_ADDRESS__) && !KD_HAS_ASAN
    CU_ASSERT_TRUE(ru1.ru_maxrss - ru0.ru_maxrss < 4096);
#else
    (void)ru0;
    (void)ru1;
#endif
    const int64_t targets[] = {150000, 5, 131072, 131071, 65536, 199999, 0, 70000};
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        CU_ASSERT_EQUAL(kd_prompts_seek(r, targets[t], &e), KD_OK);
        CU_ASSERT_EQUAL_FATAL(kd_prompts_next(r, &p, &e), 1);
        CU_ASSERT_EQUAL(p.index, targets[t]);
        char want[32];
        snprintf(want, sizeof want, "p%lld", (long long)targets[t]);
        CU_ASSERT_STRING_EQUAL(p.id, want);
        kd_prompt_clear(&p);
    }
    kd_prompts_close(r);
    /* a fresh reader seeks forward without having read (no marks yet) */
    CU_ASSERT_EQUAL_FATAL(kd_prompts_open(&r, path, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_prompts_seek(r, 123456, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_prompts_next(r, &p, &e), 1);
    CU_ASSERT_EQUAL(p.index, 123456);
    kd_prompt_clear(&p);
    CU_ASSERT_EQUAL(kd_prompts_seek(r, 250000, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_prompts_next(r, &p, &e), 0);
    kd_prompts_close(r);
    int64_t lines;
    CU_ASSERT_EQUAL(kd_prompts_count_lines(path, &lines, &e), KD_OK);
    CU_ASSERT_EQUAL(lines, N);
}

static void test_bfcl_files_load(void) {
    const char *data = kd_test_shared_data();
    if (!data) {
        kd_test_skip("../shared/data absent: BFCL files not checked");
        return;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/bfcl", data);
    DIR *d = opendir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    struct dirent *de;
    long files = 0, records = 0, bad = 0, empty_tools = 0;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json")) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        kd_prompt_reader *r;
        kd_error e;
        CU_ASSERT_EQUAL_FATAL(kd_prompts_open(&r, path, &e), KD_OK);
        kd_prompt p;
        while (kd_prompts_next(r, &p, &e) == 1) {
            records++;
            if (p.status) {
                if (bad++ < 5) fprintf(stderr, "\n  %s:%lld: %s\n", de->d_name, (long long)p.line, p.reason);
            } else {
                CU_ASSERT_TRUE(p.id[0] != 0);
                CU_ASSERT_PTR_NOT_NULL(p.tools);
                if (json_array_size(p.tools) == 0) empty_tools++;
                CU_ASSERT_TRUE(json_array_size(p.messages) >= 1);
            }
            kd_prompt_clear(&p);
        }
        kd_prompts_close(r);
        files++;
    }
    closedir(d);
    fprintf(stderr, "\n  BFCL: %ld files, %ld records, %ld rejected\n", files, records, bad);
    CU_ASSERT_EQUAL(files, 10);
    CU_ASSERT_EQUAL(records, 400 + 200 + 200 + 200 + 240 + 258 + 1053 + 16 + 24 + 882);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(empty_tools, 4); /* live_irrelevance has four records with "function": [] */
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("prompts", NULL, NULL);
    CU_add_test(s, "prompt, messages, BFCL and every kind of bad line", test_mixed_lines);
    CU_add_test(s, "error messages", test_errors);
    CU_add_test(s, "streaming 200k lines, seeking", test_seek_and_stream);
    CU_add_test(s, "every BFCL question file loads as it is", test_bfcl_files_load);
    return kd_test_main();
}
