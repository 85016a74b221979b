/* Parameter words and description gists: see include/kdstep/toolwords.h. */
#include "kdstep/toolwords.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

void kd_param_words(const char *name, char out[KD_PARAM_WORDS_MAX]) {
    size_t n = 0;
    int prev_lower = 0, pending_space = 0;
    for (const char *p = name ? name : ""; *p && n + 2 < KD_PARAM_WORDS_MAX; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '_' || c == '.' || c == '-' || c == ' ' || c == '/') {
            pending_space = n > 0;
            prev_lower = 0;
            continue;
        }
        if (isupper(c) && prev_lower) pending_space = 1;
        if (pending_space) out[n++] = ' ';
        pending_space = 0;
        out[n++] = (char)tolower(c);
        prev_lower = islower(c) || isdigit(c);
    }
    out[n] = 0;
}

void kd_tool_gist(const char *d, char out[KD_GIST_MAX]) {
    size_t n = 0;
    int space = 0;
    for (const char *p = d ? d : ""; *p && n + 1 < KD_GIST_MAX; p++) {
        unsigned char c = (unsigned char)*p;
        /* a sentence ends at . ? ! followed by space or end, or at a newline */
        if ((c == '.' || c == '?' || c == '!') && (p[1] == 0 || isspace((unsigned char)p[1]))) break;
        if (c == '\n' && n > 0) break;
        if (isspace(c)) {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < KD_GIST_MAX) out[n++] = ' ';
        space = 0;
        out[n++] = (c == '"' || c == '`') ? '\'' : (char)c;
    }
    /* cut at a word end when the limit stopped us (never inside a UTF-8 sequence) */
    if (d && n + 1 >= KD_GIST_MAX) {
        while (n > 0 && out[n - 1] != ' ') n--;
        while (n > 0 && out[n - 1] == ' ') n--;
    }
    while (n > 0 && (out[n - 1] == ',' || out[n - 1] == ':' || out[n - 1] == ';' || out[n - 1] == ' ')) n--;
    out[n] = 0;
}

static int ends_with(const char *w, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n >= k && strncmp(w + n - k, suf, k) == 0;
}

void kd_tool_gist_clause(const char *gist, char out[KD_GIST_MAX], int *is_verb) {
    size_t wl = strcspn(gist, " ,");
    char w[64];
    size_t n = wl < sizeof w - 1 ? wl : sizeof w - 1;
    for (size_t i = 0; i < n; i++) w[i] = (char)tolower((unsigned char)gist[i]);
    w[n] = 0;
    static const char *not_verbs[] = {"this", "the", "a", "an", "is", "has", "was", "does", "status", "its", "analysis",
                                      "always", "class", "process", "access", "bus", "news", "gps", "us", "this"};
    int verb = n >= 3 && n == wl && w[n - 1] == 's' && !ends_with(w, n, "ss") && !ends_with(w, n, "us") &&
               !ends_with(w, n, "is");
    for (size_t i = 0; verb && i < sizeof not_verbs / sizeof not_verbs[0]; i++) verb = strcmp(w, not_verbs[i]) != 0;
    for (size_t i = 0; i < n; i++) verb = verb && isalpha((unsigned char)w[i]);
    if (verb) {
        if (ends_with(w, n, "ies")) strcpy(w + n - 3, "y");
        else if (ends_with(w, n, "ches") || ends_with(w, n, "shes") || ends_with(w, n, "sses") || ends_with(w, n, "xes") ||
                 ends_with(w, n, "zes"))
            w[n - 2] = 0;
        else
            w[n - 1] = 0;
        snprintf(out, KD_GIST_MAX, "%s%s", w, gist + wl);
    } else {
        snprintf(out, KD_GIST_MAX, "%s", gist);
        if (out[0] && out[1] && !isupper((unsigned char)out[1])) out[0] = (char)tolower((unsigned char)out[0]);
    }
    *is_verb = verb;
}
