/* Integration spans: matching rules, and precision/recall on hand-labelled glaive answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/extract.h"
#include "testutil.h"

/* The spans as "text|text|..." for readable assertions. */
static char *spans_text(const char *answer, const char *result) {
    kd_spans s = {0};
    kd_error e;
    size_t rl = strlen(result);
    CU_ASSERT_EQUAL(kd_identify_integration_spans(answer, strlen(answer), &result, &rl, 1, NULL, &s, &e), KD_OK);
    static char buf[4096];
    buf[0] = 0;
    for (size_t i = 0; i < s.count; i++) {
        if (i) strcat(buf, "|");
        strncat(buf, answer + s.v[i].start, s.v[i].end - s.v[i].start);
    }
    kd_spans_free(&s);
    return buf;
}

#define EXPECT_SPANS(answer, result, want)                                                  \
    do {                                                                                    \
        const char *got_ = spans_text(answer, result);                                      \
        if (strcmp(got_, want) != 0) fprintf(stderr, "\n  got \"%s\" want \"%s\"\n", got_, want); \
        CU_ASSERT_STRING_EQUAL(got_, want);                                                 \
    } while (0)

static void test_exact_and_case(void) {
    EXPECT_SPANS("It is sunny in Paris today.", "{\"city\": \"Paris\", \"sky\": \"Sunny\"}", "sunny|Paris");
    EXPECT_SPANS("PARIS is lovely", "{\"city\": \"paris\"}", "PARIS");
    /* word boundaries: no match inside a longer word */
    EXPECT_SPANS("Parisian cafes", "{\"city\": \"Paris\"}", "");
}

static void test_numbers(void) {
    EXPECT_SPANS("It is 21.50 degrees.", "{\"t\": 21.5}", "21.50");
    EXPECT_SPANS("That costs $1,000 in total.", "{\"price\": 1000}", "1,000");
    EXPECT_SPANS("That costs 1000 dollars.", "{\"price\": \"$1,000\"}", "1000");
    EXPECT_SPANS("About 3.14 units.", "{\"v\": 3.14159}", "3.14");
    EXPECT_SPANS("It fell by -4 points to 12.", "{\"delta\": -4, \"n\": 12}", "-4|12");
    /* not inside other numbers or words */
    EXPECT_SPANS("Call 215 or room B21.", "{\"n\": 21}", "");
    EXPECT_SPANS("Version 1.2.3 is out.", "{\"v\": 2}", "");
}

static void test_phrases_and_plain_text(void) {
    /* a multi-word value with different spacing and case */
    EXPECT_SPANS("Now   playing Rock music\nby Queen!", "{\"message\": \"Now playing rock music by Queen\"}",
                 "Now   playing Rock music\nby Queen");
    /* part of a long value: runs of >= 3 words with a content word */
    EXPECT_SPANS("First, heat the oil in a pan, then relax.",
                 "{\"steps\": \"Heat the oil in a pan over medium heat and add onions.\"}", "heat the oil in a pan");
    /* runs of stop words alone do not count */
    EXPECT_SPANS("It is in the box of the car.", "{\"x\": \"This is in the middle of the road\"}", "");
    /* a word repeated many times in both: bounded work, one merged span */
    {
        char *val = malloc(3 * 40000 + 1), *ans = malloc(3 * 8000 + 1);
        for (int i = 0; i < 40000; i++) memcpy(val + 3 * i, "go ", 3);
        val[3 * 40000] = 0;
        for (int i = 0; i < 8000; i++) memcpy(ans + 3 * i, "go ", 3);
        ans[3 * 8000] = 0;
        size_t vl = strlen(val);
        const char *vp = val;
        kd_spans s = {0};
        CU_ASSERT_EQUAL(kd_identify_integration_spans(ans, strlen(ans), &vp, &vl, 1, NULL, &s, NULL), KD_OK);
        CU_ASSERT_EQUAL(s.count, 1);
        if (s.count) CU_ASSERT_EQUAL(s.v[0].end - s.v[0].start, 3 * 8000 - 1);
        kd_spans_free(&s);
        free(val);
        free(ans);
    }
    /* a plain-text (non-JSON) result */
    EXPECT_SPANS("The file says hello world from kdstep today.", "hello world from kdstep\n", "hello world from kdstep");
}

static void test_min_length_ignore_merge(void) {
    EXPECT_SPANS("I see a cat and 0 dogs, true story", "{\"a\": \"a\", \"b\": 0, \"c\": true, \"d\": \"true\", \"e\": \"I\"}", "");
    /* overlapping matches merge into one span */
    EXPECT_SPANS("Meet at the Grand Hotel Paris now", "{\"x\": \"Grand Hotel\", \"y\": \"Hotel Paris\"}", "Grand Hotel Paris");
    /* custom options: min_chars and ignore list */
    kd_integration_opts o;
    kd_integration_opts_default(&o);
    o.min_chars = 6;
    const char *ign[] = {"Paris"};
    o.ignore = ign;
    o.n_ignore = 1;
    const char *res = "{\"a\": \"Lyon\", \"b\": \"Paris\", \"c\": \"Marseille\"}";
    size_t rl = strlen(res);
    const char *ans = "Lyon, Paris and Marseille";
    kd_spans s = {0};
    CU_ASSERT_EQUAL(kd_identify_integration_spans(ans, strlen(ans), &res, &rl, 1, &o, &s, NULL), KD_OK);
    CU_ASSERT_EQUAL_FATAL(s.count, 1);
    CU_ASSERT_EQUAL(s.v[0].start, 16);
    CU_ASSERT_EQUAL(s.v[0].end, 25);
    kd_spans_free(&s);
    /* several results, one of them plain text */
    const char *rs[] = {"{\"temp\": 18}", "Sunny with light wind"};
    size_t rls[] = {strlen(rs[0]), strlen(rs[1])};
    const char *a2 = "18 degrees and sunny with light wind.";
    CU_ASSERT_EQUAL(kd_identify_integration_spans(a2, strlen(a2), rs, rls, 2, NULL, &s, NULL), KD_OK);
    CU_ASSERT_EQUAL_FATAL(s.count, 2);
    CU_ASSERT_EQUAL(s.v[0].end, 2);
    CU_ASSERT_EQUAL(s.v[1].start, 15);
    CU_ASSERT_EQUAL(s.v[1].end, 36);
    kd_spans_free(&s);
}

/* Character-level precision and recall on tests/data/integration_labels.jsonl (labels written by
 * reading each glaive answer and its observation; see docs/extraction.md). */
static void test_labelled_glaive_quality(void) {
    FILE *f = fopen(kd_test_src("tests/data/integration_labels.jsonl"), "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char *line = NULL;
    size_t cap = 0;
    long tp = 0, fp = 0, fn = 0, n = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *r = json_loads(line, 0, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        const char *ans = json_string_value(json_object_get(r, "answer"));
        const char *obs = json_string_value(json_object_get(r, "observation"));
        size_t len = strlen(ans), ol = strlen(obs);
        unsigned char *gold = calloc(len + 1, 1), *pred = calloc(len + 1, 1);
        size_t i;
        json_t *sp;
        json_array_foreach(json_object_get(r, "spans"), i, sp) {
            size_t s = (size_t)json_integer_value(json_array_get(sp, 0)), e = (size_t)json_integer_value(json_array_get(sp, 1));
            CU_ASSERT_TRUE_FATAL(s < e && e <= len);
            memset(gold + s, 1, e - s);
        }
        kd_spans out = {0};
        CU_ASSERT_EQUAL(kd_identify_integration_spans(ans, len, &obs, &ol, 1, NULL, &out, NULL), KD_OK);
        for (i = 0; i < out.count; i++) memset(pred + out.v[i].start, 1, out.v[i].end - out.v[i].start);
        long ltp = 0, lfp = 0, lfn = 0;
        for (i = 0; i < len; i++) {
            ltp += gold[i] && pred[i];
            lfp += !gold[i] && pred[i];
            lfn += gold[i] && !pred[i];
        }
        if (getenv("KD_SHOW_INTEGRATION") && (lfp || lfn)) {
            fprintf(stderr, "\n  %s fp=%ld fn=%ld\n  ", json_string_value(json_object_get(r, "id")), lfp, lfn);
            for (i = 0; i < len; i++) {
                if (pred[i] && (i == 0 || !pred[i - 1])) fputc('[', stderr);
                if (gold[i] && (i == 0 || !gold[i - 1])) fputc('{', stderr);
                fputc(ans[i], stderr);
                if (gold[i] && (i + 1 == len || !gold[i + 1])) fputc('}', stderr);
                if (pred[i] && (i + 1 == len || !pred[i + 1])) fputc(']', stderr);
            }
        }
        tp += ltp, fp += lfp, fn += lfn, n++;
        kd_spans_free(&out);
        free(gold);
        free(pred);
        json_decref(r);
    }
    free(line);
    fclose(f);
    double p = tp + fp ? (double)tp / (double)(tp + fp) : 0, rc = tp + fn ? (double)tp / (double)(tp + fn) : 0;
    fprintf(stderr, "\n  integration on %ld labelled glaive answers: precision %.3f recall %.3f (chars tp=%ld fp=%ld fn=%ld)\n", n, p,
            rc, tp, fp, fn);
    CU_ASSERT_TRUE(n >= 40);
    CU_ASSERT_TRUE(p >= 0.9);
    CU_ASSERT_TRUE(rc >= 0.8);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("integration", NULL, NULL);
    CU_add_test(s, "exact and case-insensitive text at word boundaries", test_exact_and_case);
    CU_add_test(s, "numbers equal in value (21.5/21.50, 1000/1,000, rounding)", test_numbers);
    CU_add_test(s, "multi-word phrases, partial runs, plain-text results", test_phrases_and_plain_text);
    CU_add_test(s, "minimum length, ignore list, merged overlaps, several results", test_min_length_ignore_merge);
    CU_add_test(s, "precision/recall on hand-labelled glaive answers", test_labelled_glaive_quality);
    return kd_test_main();
}
