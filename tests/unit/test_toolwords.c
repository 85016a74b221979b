/* CUnit suite: parameter words and description gists (src/tools/toolwords.c). */
#include <string.h>

#include "kdstep/toolwords.h"
#include "testutil.h"

static void test_param_words(void) {
    char w[KD_PARAM_WORDS_MAX];
    kd_param_words("startDate", w);
    CU_ASSERT_STRING_EQUAL(w, "start date");
    kd_param_words("user_ID", w);
    CU_ASSERT_STRING_EQUAL(w, "user id");
    kd_param_words("web.search-query", w);
    CU_ASSERT_STRING_EQUAL(w, "web search query");
    kd_param_words("__x__", w);
    CU_ASSERT_STRING_EQUAL(w, "x");
    kd_param_words("ISBN", w);
    CU_ASSERT_STRING_EQUAL(w, "isbn");
    kd_param_words("", w);
    CU_ASSERT_STRING_EQUAL(w, "");
    char longname[400];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    kd_param_words(longname, w);
    CU_ASSERT_TRUE(strlen(w) < KD_PARAM_WORDS_MAX);
}

static void test_gist(void) {
    char g[KD_GIST_MAX], c[KD_GIST_MAX];
    int verb;
    kd_tool_gist("Retrieves the \"current\" weather.  Uses the `X` API.", g);
    CU_ASSERT_STRING_EQUAL(g, "Retrieves the 'current' weather");
    kd_tool_gist_clause(g, c, &verb);
    CU_ASSERT_STRING_EQUAL(c, "retrieve the 'current' weather");
    CU_ASSERT_TRUE(verb);
    kd_tool_gist("Searches flights, e.g. cheap ones\nSecond line", g);
    CU_ASSERT_STRING_EQUAL(g, "Searches flights, e.g");
    kd_tool_gist_clause(g, c, &verb);
    CU_ASSERT_STRING_EQUAL(c, "search flights, e.g");
    kd_tool_gist_clause("Applies a discount", c, &verb);
    CU_ASSERT_STRING_EQUAL(c, "apply a discount");
    kd_tool_gist_clause("This function adds", c, &verb);
    CU_ASSERT_FALSE(verb);
    CU_ASSERT_STRING_EQUAL(c, "this function adds");
    kd_tool_gist_clause("Get the time", c, &verb);
    CU_ASSERT_FALSE(verb);
    CU_ASSERT_STRING_EQUAL(c, "get the time");
    kd_tool_gist_clause("API status", c, &verb);
    CU_ASSERT_STRING_EQUAL(c, "API status"); /* an acronym keeps its case */
    kd_tool_gist(NULL, g);
    CU_ASSERT_STRING_EQUAL(g, "");
    char longd[1000];
    for (size_t i = 0; i < sizeof longd - 1; i++) longd[i] = i % 6 == 5 ? ' ' : 'w';
    longd[sizeof longd - 1] = 0;
    kd_tool_gist(longd, g);
    CU_ASSERT_TRUE(strlen(g) < KD_GIST_MAX && g[strlen(g) - 1] == 'w');
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("toolwords", NULL, NULL);
    CU_add_test(s, "parameter words", test_param_words);
    CU_add_test(s, "description gist and clause", test_gist);
    return kd_test_main();
}
