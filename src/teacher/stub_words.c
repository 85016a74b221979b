/* The stub teacher: the words of a text (lower case, stop words dropped, stemmed), by which it
 * matches a prompt with a tool and a number with its parameter; see stub_internal.h. */
#include <ctype.h>
#include <string.h>

#include "stub_internal.h"

static const char *STOP[] = {"once", "done", "after", "now", "hey", "quick", "need", "thanks", "thank", "urgent",
                             "rush", "keep", "short", "advance", "want", "like", "could", "would", "good", "use", "set","the", "a", "an", "of", "to", "and", "or", "in", "for", "from", "with", "its", "it",
                             "this", "that", "is", "are", "by", "as", "into", "on", "at", "be", "me", "my", "please",
                             "can", "you", "your", "i", "what", "whats", "how", "do", "does", "return", "returns",
                             "get", "all", "one", "another", "their", "them", "then", "also", "give", "tell",
                             "such", "top", "there", "these", "those", "there", "some", "current", "latest", "text", "just", "wanted",
                             "content", "contents", NULL};

static int is_stop(const char *w) {
    for (int i = 0; STOP[i]; i++)
        if (strcmp(w, STOP[i]) == 0) return 1;
    return 0;
}

void stub_stem(char *w) {
    size_t n = strlen(w);
    if (n > 5 && strcmp(w + n - 3, "ing") == 0) w[n - 3] = 0;
    else if (n > 4 && strcmp(w + n - 2, "ed") == 0) w[n - 2] = 0;
    else if (n > 4 && strcmp(w + n - 3, "ies") == 0) strcpy(w + n - 3, "y");
    else if (n > 3 && w[n - 1] == 's' && w[n - 2] != 's') w[n - 1] = 0;
    n = strlen(w);
    if (n > 4 && w[n - 1] == 'e') w[n - 1] = 0; /* create/creating, write/writing */
}

void stub_split_words(const char *text, words *out, int append) {
    if (!append) out->n = 0;
    const char *p = text;
    while (*p && out->n < STUB_MAXW) {
        while (*p && !isalnum((unsigned char)*p)) p++;
        char buf[32];
        size_t n = 0;
        while (*p && isalnum((unsigned char)*p)) {
            if (n < 31) buf[n++] = (char)tolower((unsigned char)*p);
            p++;
        }
        if (!n) break;
        buf[n] = 0;
        if (is_stop(buf)) continue;
        stub_stem(buf);
        int dup = 0;
        for (int i = 0; i < out->n && !dup; i++) dup = strcmp(out->w[i], buf) == 0;
        if (!dup) strcpy(out->w[out->n++], buf);
    }
}

int stub_word_match(const char *a, const char *b) {
    if (strcmp(a, b) == 0) return 1;
    size_t i = 0;
    while (a[i] && a[i] == b[i]) i++;
    return i >= 6;
}

int stub_has_word(const words *w, const char *x) {
    for (int i = 0; i < w->n; i++)
        if (stub_word_match(w->w[i], x)) return 1;
    return 0;
}
