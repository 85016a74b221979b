/* The stub teacher: a deterministic, registry-driven imitation of a tool-calling LLM.
 *
 * It picks a tool by matching the prompt's words against each tool's name, description and parameter
 * names (weighted by how rare a word is across the registry, plus evidence such as a URL or an
 * arithmetic expression), fills arguments from the prompt by schema, and writes the call as Hermes
 * <tool_call> blocks or the seed's inline JSON. Its top-k logprobs are built over real token ids of
 * the student tokenizer: the written token gets most mass, plausible alternatives (other tool names
 * at tool-name positions, JSON structure at argument positions) get some, only where the answer is
 * written; a log-softmax over the whole vocabulary (background logit 0) gives exact tails.
 */
#include <ctype.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "stub_internal.h"
#include "kdstep/hash.h"
#include "kdstep/teacher.h"

static pthread_once_t g_syn_once = PTHREAD_ONCE_INIT;
static void stem_synonyms(void);

int kd_stub_open(kd_stub_teacher **out, const kd_stub_options *opt, const kd_registry *reg, const kd_tokenizer *tok,
                 kd_error *err) {
    *out = NULL;
    kd_stub_teacher *s = calloc(1, sizeof *s);
    if (!s) return kd_error_set(err, KD_ERR_NOMEM, "out of memory opening the stub teacher");
    s->opt = *opt;
    s->reg = reg;
    s->tok = tok;
    s->vocab = tok ? kd_tokenizer_vocab_size(tok) : 256;
    static const char *json_alt[] = {"\"", "\":", "\",", "}", "{", ":", ",", " \"", "]", "[", "true",
                                     "false", "null", "0", "1", " ", "}}", "\"}", ", \"", "\n"};
    for (size_t i = 0; i < sizeof json_alt / sizeof *json_alt; i++)
        s->n_json_alts = add_unique(s->json_alts, s->n_json_alts, 24, first_token(s, json_alt[i]));
    static const char *text_alt[] = {" the", " I", ",", ".", " The", " is", " a", " result", "\n", " and", " it"};
    for (size_t i = 0; i < sizeof text_alt / sizeof *text_alt; i++)
        s->n_text_alts = add_unique(s->text_alts, s->n_text_alts, 16, first_token(s, text_alt[i]));
    pthread_once(&g_syn_once, stem_synonyms);
    s->n_reg_tools = index_tools(s, NULL, &s->reg_tools);
    if (s->n_reg_tools < 0) {
        free(s);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory indexing the registry");
    }
    *out = s;
    return KD_OK;
}

void kd_stub_close(kd_stub_teacher *s) {
    if (!s) return;
    free_tools(s->reg_tools, s->n_reg_tools);
    free(s);
}

/* ---- words ---- */

#define MAXW 256
struct words {
    char w[MAXW][32];
    int n;
};
typedef struct words words;

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

static void stem(char *w) {
    size_t n = strlen(w);
    if (n > 5 && strcmp(w + n - 3, "ing") == 0) w[n - 3] = 0;
    else if (n > 4 && strcmp(w + n - 2, "ed") == 0) w[n - 2] = 0;
    else if (n > 4 && strcmp(w + n - 3, "ies") == 0) strcpy(w + n - 3, "y");
    else if (n > 3 && w[n - 1] == 's' && w[n - 2] != 's') w[n - 1] = 0;
    n = strlen(w);
    if (n > 4 && w[n - 1] == 'e') w[n - 1] = 0; /* create/creating, write/writing */
}

static void split_words(const char *text, words *out, int append) {
    if (!append) out->n = 0;
    const char *p = text;
    while (*p && out->n < MAXW) {
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
        stem(buf);
        int dup = 0;
        for (int i = 0; i < out->n && !dup; i++) dup = strcmp(out->w[i], buf) == 0;
        if (!dup) strcpy(out->w[out->n++], buf);
    }
}

static int word_match(const char *a, const char *b) {
    if (strcmp(a, b) == 0) return 1;
    size_t i = 0;
    while (a[i] && a[i] == b[i]) i++;
    return i >= 6;
}

static int has_word(const words *w, const char *x) {
    for (int i = 0; i < w->n; i++)
        if (word_match(w->w[i], x)) return 1;
    return 0;
}

/* ---- the tools a request offers, with their words and weights precomputed ---- */


static void tool_words(const tool_view *t, words *tw, int *n_name, int *first_param) {
    char nbuf[256];
    snprintf(nbuf, sizeof nbuf, "%s", t->name);
    for (char *q = nbuf; *q; q++)
        if (*q == '.' || *q == '_') *q = ' ';
    split_words(nbuf, tw, 0);
    *n_name = tw->n;
    split_words(t->description, tw, 1);
    *first_param = tw->n;
    const char *pn;
    const json_t *pv;
    json_object_foreach((json_t *)json_object_get(t->parameters, "properties"), pn, pv) {
        snprintf(nbuf, sizeof nbuf, "%s", pn);
        for (char *q = nbuf; *q; q++)
            if (*q == '_') *q = ' ';
        split_words(nbuf, tw, 1);
    }
}

void free_tools(tool_view *v, int n) {
    if (!v) return;
    for (int i = 0; i < n; i++) {
        free(v[i].tw);
        free(v[i].weight);
        free(v[i].name_ids);
    }
    free(v);
}

/* Document frequency of words across the offered tools, in one pass (a request may offer thousands of
 * tools: comparing every word with every tool was quadratic). has_word(tool, x) holds exactly when the
 * tool has a word with x's key: the word itself under 6 bytes, else its first 6 (word_match's rule). */
typedef struct df_slot {
    char key[8];
    int last_tool, count;
} df_slot;
typedef struct word_df {
    df_slot *slots;
    size_t cap;
} word_df;

static df_slot *df_find(word_df *d, const char *w) {
    char key[8] = {0};
    memcpy(key, w, strnlen(w, 6));
    size_t j = kd_hash64(key, strlen(key)) & (d->cap - 1);
    while (d->slots[j].key[0] && strcmp(d->slots[j].key, key) != 0) j = (j + 1) & (d->cap - 1);
    if (!d->slots[j].key[0]) {
        memcpy(d->slots[j].key, key, sizeof key);
        d->slots[j].last_tool = -1;
    }
    return &d->slots[j];
}

static int df_build(word_df *d, const tool_view *v, int m) {
    size_t total = 0;
    for (int i = 0; i < m; i++) total += (size_t)v[i].tw->n;
    d->cap = 16;
    while (d->cap < 2 * total + 1) d->cap *= 2;
    d->slots = calloc(d->cap, sizeof *d->slots);
    if (!d->slots) return -1;
    for (int i = 0; i < m; i++)
        for (int w = 0; w < v[i].tw->n; w++) {
            df_slot *sl = df_find(d, v[i].tw->w[w]);
            if (sl->last_tool != i) {
                sl->last_tool = i;
                sl->count++;
            }
        }
    return 0;
}

static int df_get(word_df *d, const char *w) { return df_find(d, w)->count; }

int index_tools(const kd_stub_teacher *s, const json_t *tools, tool_view **out) {
    size_t n = tools ? json_array_size(tools) : (size_t)(s->reg ? s->reg->count : 0);
    tool_view *v = calloc(n ? n : 1, sizeof *v);
    if (!v) return -1;
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        if (tools) {
            const json_t *t = json_array_get(tools, i);
            const json_t *fn = json_object_get(t, "function");
            if (!fn) fn = t; /* BFCL entries have no wrapper */
            const char *name = json_string_value(json_object_get(fn, "name"));
            if (!name) continue;
            const char *desc = json_string_value(json_object_get(fn, "description"));
            v[m].name = name;
            v[m].description = desc ? desc : "";
            v[m].parameters = json_object_get(fn, "parameters");
        } else {
            v[m].name = s->reg->tools[i].name;
            v[m].description = s->reg->tools[i].description ? s->reg->tools[i].description : "";
            v[m].parameters = s->reg->tools[i].parameters;
        }
        v[m].tw = malloc(sizeof(words));
        if (!v[m].tw) {
            free_tools(v, m + 1);
            return -1;
        }
        tool_words(&v[m], v[m].tw, &v[m].n_name, &v[m].first_param);
        m++;
    }
    word_df df;
    if (df_build(&df, v, m)) {
        free_tools(v, m);
        return -1;
    }
    for (int i = 0; i < m; i++) {
        v[i].weight = calloc((size_t)(v[i].tw->n ? v[i].tw->n : 1), sizeof(double));
        if (!v[i].weight) {
            free(df.slots);
            free_tools(v, m);
            return -1;
        }
        for (int w = 0; w < v[i].tw->n; w++) {
            int df_w = df_get(&df, v[i].tw->w[w]);
            double idf = log(1.0 + (double)m / (df_w ? df_w : 1));
            int in_name = 0;
            for (int j = 0; j < v[i].n_name; j++) in_name |= word_match(v[i].tw->w[j], v[i].tw->w[w]);
            v[i].weight[w] = idf * (in_name ? 3.0 : w >= v[i].first_param ? 1.2 : 1.0);
        }
        kd_encoding enc = {0};
        if (stub_encode(s, v[i].name, strlen(v[i].name), &enc, NULL) == KD_OK && enc.count) {
            v[i].name_ids = malloc(enc.count * sizeof(int32_t));
            if (v[i].name_ids) {
                memcpy(v[i].name_ids, enc.ids, enc.count * sizeof(int32_t));
                v[i].n_name_ids = (int)enc.count;
            }
        }
        stub_encoding_free(s, &enc);
    }
    free(df.slots);
    *out = v;
    return m;
}

/* The registry's index is built once at open and shared (read-only) by every request. */

/* Words a user says for a tool that its own text lacks. */
static const char *SYNONYMS[][2] = {
    {"open", "read"},         {"temperature", "weather"}, {"rain", "weather"},     {"sunny", "weather"},
    {"mail", "email"},        {"inbox", "mailbox"},       {"compute", "calculator"}, {"calculate", "calculator"},
    {"execute", "run"},       {"folder", "directory"},    {"download", "fetch"},   {"look", "search"},
    {"google", "search"},     {"meeting", "event"},       {"schedule", "calendar"}, {"appointment", "event"},
    {"save", "write"},        {"share", "stock"},         {"ticker", "symbol"},    {"quote", "price"},
    {"trading", "stock"},     {"ls", "list"},             {"show", "read"},         {"week", "forecast"},
    {"next", "forecast"},     {"multiply", "arithmetic"}, {"sum", "arithmetic"},   {"inche", "convert"},
    {"find", "search"},       {"mention", "search"},      {"containing", "write"},    {"express", "convert"},
    {"spanish", "translate"}, {"french", "translate"},    {"german", "translate"}, {"agenda", "calendar"},
    {NULL, NULL}};

static char g_syn[64][2][32];
static int g_nsyn;
static void stem_synonyms(void) {
    for (g_nsyn = 0; SYNONYMS[g_nsyn][0] && g_nsyn < 64; g_nsyn++)
        for (int k = 0; k < 2; k++) {
            snprintf(g_syn[g_nsyn][k], 32, "%s", SYNONYMS[g_nsyn][k]);
            stem(g_syn[g_nsyn][k]);
        }
}

/* ---- argument extraction from the prompt ---- */

typedef struct span {
    const char *p;
    size_t n;
} span;

/* i-th "quoted" or 'quoted' or `quoted` string. */
static int nth_quoted(const char *text, int i, span *out) {
    const char *p = text;
    int k = 0;
    while ((p = strpbrk(p, "\"'`"))) {
        char q = *p;
        /* an apostrophe inside a word (it's) is not a quote */
        if (q == '\'' && p > text && isalnum((unsigned char)p[-1])) {
            p++;
            continue;
        }
        const char *e = strchr(p + 1, q);
        if (!e) return 0;
        if (k++ == i) {
            out->p = p + 1;
            out->n = (size_t)(e - p - 1);
            return 1;
        }
        p = e + 1;
    }
    return 0;
}

static int is_tokch(char c) { return c && !isspace((unsigned char)c) && c != '"' && c != '\'' && c != '`' && c != ','; }

/* Bare tokens (whitespace separated, trailing punctuation stripped) that satisfy pred. */
static int find_token(const char *text, int (*pred)(const char *, size_t), span *out, int nth) {
    const char *p = text;
    int k = 0;
    while (*p) {
        while (*p && !is_tokch(*p)) p++;
        const char *b = p;
        while (is_tokch(*p)) p++;
        size_t n = (size_t)(p - b);
        while (n && strchr(".?!:;)", b[n - 1])) n--;
        if (n && pred(b, n)) {
            if (k++ == nth) {
                out->p = b;
                out->n = n;
                return 1;
            }
        }
    }
    return 0;
}

static int pred_url(const char *b, size_t n) { return (n > 8 && strncmp(b, "http://", 7) == 0) || (n > 9 && strncmp(b, "https://", 8) == 0); }

static int pred_path(const char *b, size_t n) {
    if (pred_url(b, n)) return 0;
    if (memchr(b, '@', n)) return 0;
    int alnum = 0;
    for (size_t i = 0; i < n; i++) alnum += isalnum((unsigned char)b[i]) != 0;
    if (alnum == 0 || b[0] == '(' || b[n - 1] == ')') return 0;
    if (memchr(b, '/', n)) return 1;
    const char *dot = NULL;
    for (size_t i = 1; i + 1 < n; i++)
        if (b[i] == '.') dot = b + i;
    if (!dot) return 0;
    size_t ext = (size_t)(b + n - dot - 1);
    if (ext < 1 || ext > 5) return 0;
    for (const char *q = dot + 1; q < b + n; q++)
        if (!isalnum((unsigned char)*q)) return 0;
    /* "3.5" is a number, not a file */
    return !isdigit((unsigned char)dot[1]) || !isdigit((unsigned char)b[0]);
}

static int pred_email(const char *b, size_t n) {
    const char *at = memchr(b, '@', n);
    return at && at > b && memchr(at, '.', (size_t)(b + n - at)) != NULL;
}

static int pred_date(const char *b, size_t n) {
    return n == 10 && isdigit((unsigned char)b[0]) && isdigit((unsigned char)b[3]) && b[4] == '-' && b[7] == '-' &&
           isdigit((unsigned char)b[9]);
}

static int pred_time(const char *b, size_t n) {
    return (n == 5 && isdigit((unsigned char)b[0]) && isdigit((unsigned char)b[1]) && b[2] == ':' && isdigit((unsigned char)b[3])) ||
           (n == 4 && isdigit((unsigned char)b[0]) && b[1] == ':' && isdigit((unsigned char)b[2]));
}

static int pred_ticker(const char *b, size_t n) {
    if (n < 2 || n > 5) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isupper((unsigned char)b[i])) return 0;
    /* common words in capitals that are not tickers */
    static const char *no[] = {"I", "OK", "USD", "EUR", "GBP", "JPY", "PDF", "CSV", "JSON", "URL", "API", "UTC", "AM", "PM", NULL};
    for (int i = 0; no[i]; i++)
        if (strlen(no[i]) == n && strncmp(no[i], b, n) == 0) return 0;
    return 1;
}

static int pred_number(const char *b, size_t n) {
    size_t i = 0;
    if (b[0] == '-' && n > 1) i = 1;
    int digits = 0, dots = 0;
    for (; i < n; i++) {
        if (isdigit((unsigned char)b[i])) digits++;
        else if (b[i] == '.' && !dots) dots++;
        else return 0;
    }
    return digits > 0 && b[n - 1] != '.';
}

/* A run like "12 * (3 + 4)" : digits and operators with at least one operator between digits. */
static int find_expression(const char *text, span *out) {
    const char *p = text;
    while (*p) {
        if (isdigit((unsigned char)*p) || *p == '(') {
            const char *b = p, *last = p;
            int ops = 0, digits = 0;
            while (*p && (isdigit((unsigned char)*p) || strchr(" +-*/^().%", *p))) {
                if (isdigit((unsigned char)*p)) {
                    digits++;
                    last = p;
                } else if (strchr("+-*/^%", *p)) ops++;
                else if (*p == ')') last = p;
                p++;
            }
            if (ops && digits >= 2) {
                out->p = b;
                out->n = (size_t)(last - b + 1);
                return 1;
            }
        } else p++;
    }
    return 0;
}

static const char *CITIES[] = {"Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "New York", "San Francisco",
                               "Sydney", "Toronto", "Chicago", "Boston", "Seattle", "Amsterdam", "Vienna", "Zurich",
                               "Oslo", "Lisbon", "Dublin", "Prague", "Cairo", "Mumbai", "Delhi", "Beijing", "Seoul",
                               "Singapore", "Moscow", "Istanbul", "Nairobi", "Lima", "Austin", "Denver", "Miami",
                               "Montreal", "Stockholm", "Helsinki", "Copenhagen", "Warsaw", "Athens", "Bangkok", NULL};
static const char *LANGS[] = {"English", "Spanish", "French", "German", "Italian", "Portuguese", "Japanese", "Chinese",
                              "Korean", "Russian", "Arabic", "Dutch", "Swedish", "Polish", "Turkish", "Hindi", NULL};
static const char *UNITS[] = {"kilometers", "kilometres", "km", "miles", "meters", "metres", "feet", "inches", "cm",
                              "centimeters", "kilograms", "kg", "pounds", "lb", "grams", "ounces", "liters",
                              "litres", "gallons", "celsius", "fahrenheit", "kelvin", "hours", "minutes", "seconds",
                              "days", "mph", "kph", "yards", "mm", NULL};

static const char *ci_find(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0 && (p == hay || !isalnum((unsigned char)p[-1])) && !isalnum((unsigned char)p[n]))
            return p;
    return NULL;
}

/* First word of `list` found in text (the earliest occurrence after `after` when given). */
static const char *find_listed(const char *text, const char **list, const char *after, const char **at) {
    const char *best = NULL, *bp = NULL;
    for (int i = 0; list[i]; i++) {
        const char *p = ci_find(after ? after : text, list[i]);
        if (p && (!bp || p < bp)) {
            bp = p;
            best = list[i];
        }
    }
    if (at) *at = bp;
    return best;
}

/* Text after a trigger word such as "for"/"about", to the end of the clause. */
static int text_after(const char *text, const char **triggers, span *out) {
    for (int i = 0; triggers[i]; i++) {
        const char *p = ci_find(text, triggers[i]);
        if (!p) continue;
        p += strlen(triggers[i]);
        while (*p == ' ' || *p == ':') p++;
        const char *e = p;
        while (*e && !strchr("?!\n;", *e) && !(e[0] == '.' && (e[1] == ' ' || e[1] == 0))) e++;
        while (e > p && (e[-1] == ' ' || e[-1] == ',')) e--;
        if (e > p) {
            out->p = p;
            out->n = (size_t)(e - p);
            return 1;
        }
    }
    return 0;
}

typedef struct argctx {
    const char *text;
    int quoted_used;
    int numbers_used[16];
    int n_numbers_used;
} argctx;

static int number_used(const argctx *a, int i) {
    for (int j = 0; j < a->n_numbers_used; j++)
        if (a->numbers_used[j] == i) return 1;
    return 0;
}

/* The number next to a word about this parameter ("5 results", "3 days", "precision 2"). */
static int number_for(argctx *a, const char *pname, const char *pdesc, span *out) {
    words pw;
    split_words(pname, &pw, 0);
    split_words(pdesc ? pdesc : "", &pw, 1);
    span s;
    for (int i = 0; i < 16 && find_token(a->text, pred_number, &s, i); i++) {
        if (number_used(a, i)) continue;
        /* the word right after and right before the number */
        char after[64] = {0}, before[64] = {0};
        const char *q = s.p + s.n;
        while (*q == ' ') q++;
        size_t k = 0;
        while (isalpha((unsigned char)q[k]) && k < 63) {
            after[k] = (char)tolower((unsigned char)q[k]);
            k++;
        }
        const char *b = s.p;
        while (b > a->text && b[-1] == ' ') b--;
        const char *bs = b;
        while (bs > a->text && isalpha((unsigned char)bs[-1])) bs--;
        for (k = 0; bs + k < b && k < 63; k++) before[k] = (char)tolower((unsigned char)bs[k]);
        stem(after);
        stem(before);
        if ((after[0] && has_word(&pw, after)) || (before[0] && has_word(&pw, before))) {
            a->numbers_used[a->n_numbers_used++] = i;
            *out = s;
            return 1;
        }
    }
    return 0;
}

static int first_free_number(argctx *a, span *out) {
    span s;
    for (int i = 0; i < 16 && find_token(a->text, pred_number, &s, i); i++) {
        if (number_used(a, i)) continue;
        a->numbers_used[a->n_numbers_used++] = i;
        *out = s;
        return 1;
    }
    return 0;
}

static json_t *span_str(span s) { return json_stringn(s.p, s.n); }

static int name_has(const char *name, const char *part) { return strstr(name, part) != NULL; }

/* A string argument from the prompt, by what the parameter's name says it is. NULL: nothing fits. */
static json_t *fill_string(argctx *a, const char *pname, const json_t *schema, int required) {
    const char *text = a->text;
    span s;
    const json_t *en = json_object_get(schema, "enum");
    if (json_is_array(en)) {
        size_t i;
        const json_t *v;
        json_array_foreach(en, i, v) {
            if (json_is_string(v) && ci_find(text, json_string_value(v))) return json_incref((json_t *)v);
        }
        return required && json_array_size(en) ? json_incref(json_array_get(en, 0)) : NULL;
    }
    if (name_has(pname, "url")) return find_token(text, pred_url, &s, 0) ? span_str(s) : NULL;
    if (name_has(pname, "path") || name_has(pname, "file") || strcmp(pname, "cwd") == 0) {
        if (find_token(text, pred_path, &s, 0)) return span_str(s);
        static const char *dtrig[] = {"files in ", "folder ", "directory ", "contents of ", "open ", "Open ", NULL};
        if (strcmp(pname, "cwd") != 0 && text_after(text, dtrig, &s)) {
            size_t n = 0;
            while (n < s.n && is_tokch(s.p[n])) n++;
            while (n && strchr(".?!:;)", s.p[n - 1])) n--;
            if (n) return json_stringn(s.p, n);
        }
        return strcmp(pname, "cwd") == 0 ? NULL : (required ? json_string(".") : NULL);
    }
    if (name_has(pname, "date")) {
        int which = name_has(pname, "end") ? 1 : 0;
        if (find_token(text, pred_date, &s, which)) return span_str(s);
        if (which && find_token(text, pred_date, &s, 0)) return span_str(s);
        if (ci_find(text, "tomorrow")) return json_string("tomorrow");
        return required ? json_string("today") : NULL;
    }
    if (name_has(pname, "time") && !name_has(pname, "timeout")) return find_token(text, pred_time, &s, 0) ? span_str(s) : NULL;
    if (strcmp(pname, "city") == 0 || strcmp(pname, "location") == 0) {
        const char *c = find_listed(text, CITIES, NULL, NULL);
        if (c) return json_string(c);
        static const char *trig[] = {" in ", " for ", " at ", NULL};
        if (text_after(text, trig, &s)) {
            size_t n = 0;
            while (n < s.n && (isalpha((unsigned char)s.p[n]) || s.p[n] == ' ') &&
                   (n == 0 || s.p[n] != ' ' || isupper((unsigned char)s.p[n + 1])))
                n++;
            if (n && isupper((unsigned char)s.p[0])) return json_stringn(s.p, n);
        }
        return strcmp(pname, "city") == 0 && required ? json_string("London") : NULL;
    }
    if (name_has(pname, "symbol")) return find_token(text, pred_ticker, &s, 0) ? span_str(s) : (required ? json_string("AAPL") : NULL);
    if (name_has(pname, "language")) {
        if (name_has(pname, "source")) {
            static const char *trig[] = {"from ", NULL};
            if (text_after(text, trig, &s)) {
                const char *l = find_listed(s.p, LANGS, NULL, NULL);
                if (l && ci_find(s.p, l) == s.p) return json_string(l);
            }
            return NULL;
        }
        const char *at = NULL;
        const char *into = ci_find(text, "into");
        if (!into) into = ci_find(text, "to");
        const char *l = find_listed(text, LANGS, into, &at);
        if (!l) l = find_listed(text, LANGS, NULL, &at);
        return l ? json_string(l) : (required ? json_string("English") : NULL);
    }
    if (strcmp(pname, "from_unit") == 0 || strcmp(pname, "to_unit") == 0) {
        const char *at = NULL;
        const char *u1 = find_listed(text, UNITS, NULL, &at);
        if (strcmp(pname, "from_unit") == 0) return u1 ? json_string(u1) : json_string("meters");
        const char *u2 = u1 ? find_listed(text, UNITS, at + strlen(u1), NULL) : NULL;
        return u2 ? json_string(u2) : json_string("feet");
    }
    if (strcmp(pname, "from") == 0 || strcmp(pname, "sender") == 0)
        return find_token(text, pred_email, &s, 0) ? span_str(s) : NULL;
    if (strcmp(pname, "expression") == 0) {
        if (nth_quoted(text, a->quoted_used, &s)) {
            a->quoted_used++;
            return span_str(s);
        }
        return find_expression(text, &s) ? span_str(s) : (required ? json_string("0") : NULL);
    }
    if (strcmp(pname, "pattern") == 0) {
        span t;
        for (int i = 0; find_token(text, pred_path, &t, i); i++)
            if (t.p[0] == '*') return span_str(t);
        return NULL;
    }
    if (strcmp(pname, "site") == 0) {
        static const char *trig[] = {"on site ", "site:", "on the site ", NULL};
        if (!text_after(text, trig, &s)) return NULL;
        size_t n = 0;
        while (n < s.n && is_tokch(s.p[n])) n++;
        return json_stringn(s.p, n);
    }
    /* free text: quoted first, then the clause after a trigger word */
    if (!required && strcmp(pname, "location") != 0 && !name_has(pname, "content") && !name_has(pname, "body") &&
        !name_has(pname, "query") && !name_has(pname, "title") && !name_has(pname, "subject") && !name_has(pname, "command") &&
        !name_has(pname, "text"))
        return NULL;
    if (nth_quoted(text, a->quoted_used, &s)) {
        a->quoted_used++;
        return span_str(s);
    }
    if (!required) return NULL;
    static const char *trig_query[] = {"search the web for ", "search for ", "look up ", "find ", "about ", "for ", "search ", NULL};
    static const char *trig_cmd[] = {"run ", "execute ", NULL};
    static const char *trig_title[] = {"called ", "titled ", "named ", "for ", NULL};
    static const char *trig_text[] = {"translate ", "saying ", "that says ", NULL};
    const char **trig = name_has(pname, "command") ? trig_cmd
                        : name_has(pname, "title") || name_has(pname, "subject") ? trig_title
                        : name_has(pname, "text") ? trig_text
                                                  : trig_query;
    if (text_after(text, trig, &s)) return span_str(s);
    return json_string(text);
}

json_t *fill_args(const char *text, const json_t *params) {
    json_t *args = json_object();
    argctx a = {.text = text};
    const json_t *props = json_object_get(params, "properties");
    const json_t *req = json_object_get(params, "required");
    const char *pname;
    const json_t *schema;
    json_object_foreach((json_t *)props, pname, schema) {
        int required = 0;
        size_t i;
        const json_t *r;
        json_array_foreach(req, i, r) required |= json_is_string(r) && strcmp(json_string_value(r), pname) == 0;
        const char *type = json_string_value(json_object_get(schema, "type"));
        const char *desc = json_string_value(json_object_get(schema, "description"));
        json_t *v = NULL;
        span s;
        if (!type || strcmp(type, "string") == 0) v = fill_string(&a, pname, schema, required);
        else if (strcmp(type, "integer") == 0 || strcmp(type, "number") == 0) {
            int found = number_for(&a, pname, desc, &s);
            if (!found && required) found = first_free_number(&a, &s);
            if (found) {
                char buf[64];
                snprintf(buf, sizeof buf, "%.*s", (int)(s.n < 63 ? s.n : 63), s.p);
                double x = strtod(buf, NULL);
                v = strcmp(type, "integer") == 0 ? json_integer((json_int_t)x) : json_real(x);
                if (strcmp(type, "number") == 0 && x == floor(x) && fabs(x) < 1e15) {
                    json_decref(v);
                    v = json_integer((json_int_t)x);
                }
            } else if (required) v = json_integer(1);
            /* keep within the schema's bounds */
            const json_t *mn = json_object_get(schema, "minimum"), *mx = json_object_get(schema, "maximum");
            if (v && json_is_number(mn) && json_number_value(v) < json_number_value(mn)) {
                json_decref(v);
                v = json_integer((json_int_t)ceil(json_number_value(mn)));
            }
            if (v && json_is_number(mx) && json_number_value(v) > json_number_value(mx)) {
                json_decref(v);
                v = json_integer((json_int_t)floor(json_number_value(mx)));
            }
        } else if (strcmp(type, "boolean") == 0) {
            char w[64];
            snprintf(w, sizeof w, "%s", pname);
            stem(w);
            words tw;
            split_words(text, &tw, 0);
            if (has_word(&tw, w)) v = json_true();
            else if (required) v = json_false();
        } else if (strcmp(type, "array") == 0) {
            const json_t *items = json_object_get(schema, "items");
            const char *it = json_string_value(json_object_get(items, "type"));
            if (!it || strcmp(it, "string") == 0) {
                json_t *arr = json_array();
                int cc = strcmp(pname, "cc") == 0;
                /* emails: "to"/"attendees" take those before "cc", "cc" those after it */
                const char *ccp = ci_find(text, "cc");
                for (int i = 0; i < 8 && find_token(text, pred_email, &s, i); i++) {
                    int after_cc = ccp && s.p > ccp;
                    if ((strcmp(pname, "to") == 0 || name_has(pname, "attendee") || cc) && after_cc == cc)
                        json_array_append_new(arr, span_str(s));
                }
                if (json_array_size(arr) == 0 && required) {
                    json_t *one = fill_string(&a, pname, items ? items : schema, 1);
                    if (one) json_array_append_new(arr, one);
                }
                if (json_array_size(arr)) v = arr;
                else json_decref(arr);
            }
        } else if (strcmp(type, "object") == 0 && required) {
            v = fill_args(text, schema);
        }
        if (v) json_object_set_new(args, pname, v);
    }
    return args;
}

/* ---- choosing a tool ---- */

/* The prompt with quoted strings, URLs, paths and e-mail addresses blanked: their words are values,
 * not requests ("~/Downloads/x.pdf" asks for no download). */
static void word_text(const char *text, char *out, size_t cap) {
    snprintf(out, cap, "%s", text);
    span s;
    for (int i = 0; nth_quoted(out, 0, &s) && i < 32; i++) memset((char *)s.p - 1, ' ', s.n + 2);
    int (*preds[])(const char *, size_t) = {pred_url, pred_email, pred_path};
    for (int k = 0; k < 3; k++)
        for (int i = 0; find_token(out, preds[k], &s, 0) && i < 32; i++) memset((char *)s.p, ' ', s.n);
}

/* A number followed by a unit word ("25 km", "143 fahrenheit"). */
static const char *UNIT_WORDS[] = {"m", "ft", "mi", "km", "cm", "mm", "in", "yd", "lb", "lbs", "kg", "g", "oz", "l", "ml",
                                   "gal", "celsius", "fahrenheit", "kelvin", "c", "f", "k", "kilometers", "kilometres",
                                   "miles", "meters", "metres", "feet", "inches", "centimeters", "kilograms", "pounds",
                                   "grams", "ounces", "liters", "litres", "gallons", "yards", "mph", "kph", NULL};

static int is_unit_word(const char *p, size_t n) {
    for (int i = 0; UNIT_WORDS[i]; i++)
        if (strlen(UNIT_WORDS[i]) == n && strncasecmp(UNIT_WORDS[i], p, n) == 0) return 1;
    return 0;
}

/* The i-th unit word that follows a number; *at its position. */
static int number_unit(const char *text, span *out) {
    span s;
    for (int i = 0; i < 16 && find_token(text, pred_number, &s, i); i++) {
        const char *q = s.p + s.n;
        if (*q != ' ') continue;
        q++;
        size_t n = 0;
        while (isalpha((unsigned char)q[n])) n++;
        if (n && is_unit_word(q, n)) {
            out->p = q;
            out->n = n;
            return 1;
        }
    }
    return 0;
}

typedef struct tool_score {
    double total;   /* everything */
    double request; /* name and description words and shape evidence: what makes a clause a request */
} tool_score;

static tool_score score_tool(const tool_view *t, const words *pw, const tool_view *all, int n, const char *text,
                             const char *wt) {
    (void)all;
    (void)n;
    const json_t *props = json_object_get(t->parameters, "properties");
    tool_score sc = {0, 0};
    for (int i = 0; i < t->tw->n; i++) {
        const char *w = t->tw->w[i];
        int hit = has_word(pw, w);
        for (int j = 0; !hit && j < g_nsyn; j++) hit = word_match(g_syn[j][1], w) && has_word(pw, g_syn[j][0]);
        if (!hit) continue;
        sc.total += t->weight[i];
        if (i < t->first_param) sc.request += t->weight[i];
    }
    /* evidence from the shape of the prompt */
    span s;
    double ev = 0;
    int has_path = find_token(text, pred_path, &s, 0);
    int path_has_ext = 0;
    if (has_path) {
        const char *slash = s.p, *dot = NULL;
        for (const char *q = s.p; q < s.p + s.n; q++) {
            if (*q == '/') slash = q;
            if (*q == '.') dot = q;
        }
        path_has_ext = dot && dot > slash && dot + 1 < s.p + s.n;
    }
    const json_t *req = json_object_get(t->parameters, "required");
    int req_path = 0, req_url = 0, req_expr = 0, req_to = 0, req_date = 0;
    size_t ri;
    const json_t *rv;
    json_array_foreach(req, ri, rv) {
        const char *r = json_string_value(rv);
        if (!r) continue;
        req_path |= strcmp(r, "path") == 0;
        req_url |= strcmp(r, "url") == 0;
        req_expr |= strcmp(r, "expression") == 0;
        req_to |= strcmp(r, "to") == 0;
        req_date |= strcmp(r, "date") == 0 || strcmp(r, "start_date") == 0;
    }
    if (json_object_get(props, "url") && find_token(text, pred_url, &s, 0)) ev += 3;
    else if (req_url) ev -= 2;
    if (json_object_get(props, "expression") && find_expression(wt, &s)) ev += 4;
    else if (req_expr) ev -= 2;
    if (json_object_get(props, "symbol") && find_token(text, pred_ticker, &s, 0)) ev += 1.5;
    if (json_object_get(props, "city") && find_listed(text, CITIES, NULL, NULL)) ev += 1.5;
    if (json_object_get(props, "target_language") && find_listed(text, LANGS, NULL, NULL)) ev += 2;
    if (json_object_get(props, "from_unit") && number_unit(text, &s)) ev += 5;
    int dir_tool = strstr(t->name, "dir") != NULL || (strstr(t->name, "list") != NULL && strstr(t->name, "file") != NULL);
    int dir_words = ci_find(text, "files in") || ci_find(text, "folder") || ci_find(text, "directory");
    if (json_object_get(props, "path")) {
        if (has_path) ev += 1 + (!dir_tool && path_has_ext ? 1.5 : 0);
        else if (req_path && strstr(t->name, "file")) ev -= 6; /* a file tool without a file name */
        if (dir_tool && dir_words) ev += 3;
    }
    if (req_date && !find_token(text, pred_date, &s, 0) && !ci_find(text, "today") && !ci_find(text, "tomorrow")) ev -= 2;
    if (json_object_get(props, "target_language") && ci_find(text, "say") && nth_quoted(text, 0, &s)) ev += 4;
    if (json_object_get(props, "to") || json_object_get(props, "from")) {
        /* "to x@y", "email x@y", "write to x@y" call for sending; "from x@y" for searching */
        int send = 0, from = 0;
        for (int i = 0; i < 8 && find_token(text, pred_email, &s, i); i++) {
            const char *b = s.p;
            while (b > text && b[-1] == ' ') b--;
            const char *w = b;
            while (w > text && isalpha((unsigned char)w[-1])) w--;
            size_t wl = (size_t)(b - w);
            if ((wl == 2 && strncasecmp(w, "to", 2) == 0) || (wl == 5 && strncasecmp(w, "email", 5) == 0)) send = 1;
            if (wl == 4 && strncasecmp(w, "from", 4) == 0) from = 1;
            if (i == 0 && b > text && (b[-1] == '"' || b[-1] == ':')) from = 1; /* (from: "x@y") */
        }
        if (req_to && send) ev += 8;
        else if (req_to) ev -= 2;
        if (!req_to && json_object_get(props, "from") && from) ev += 1.5;
    }
    if (json_object_get(props, "start_date") && json_object_get(props, "end_date") && find_token(text, pred_date, &s, 1)) ev += 2.5;
    if (json_object_get(props, "start_time") && find_token(text, pred_time, &s, 0)) ev += 1.5;
    sc.total += ev;
    sc.request += ev;
    return sc;
}

static int choose_scored(const tool_view *tools, int n, const char *text, tool_score *best_out) {
    char wt[2048];
    word_text(text, wt, sizeof wt);
    words pw;
    split_words(wt, &pw, 0);
    int best = -1;
    tool_score bs = {0, 0};
    for (int i = 0; i < n; i++) {
        tool_score sc = score_tool(&tools[i], &pw, tools, n, text, wt);
        if (sc.total > bs.total + 1e-9) {
            bs = sc;
            best = i;
        }
    }
    if (best_out) *best_out = bs;
    return bs.total >= 2.5 ? best : -1;
}

static int choose(const tool_view *tools, int n, const char *text, double *best_score) {
    tool_score sc;
    int i = choose_scored(tools, n, text, &sc);
    if (best_score) *best_score = sc.total;
    return i;
}

/* Sentences (split at . ? ! ; followed by a space, outside quotes). */
static int split_sentences(const char *text, char parts[][1024], int maxp) {
    int n = 0;
    const char *b = text, *p = text;
    char q = 0;
    while (*p && n < maxp) {
        if (q) {
            if (*p == q) {
                q = 0;
                /* a closing quote ends a sentence when a capital follows: "...attached." Once */
                if (p[1] == ' ' && isupper((unsigned char)p[2]) && p > b && strchr(".?!", p[-1])) {
                    size_t len = (size_t)(p + 1 - b);
                    if (len > 1023) len = 1023;
                    memcpy(parts[n], b, len);
                    parts[n++][len] = 0;
                    b = p + 2;
                    if (n >= maxp) break;
                }
            }
        } else if (strncmp(p, ", then ", 7) == 0 || strncmp(p, " and then ", 10) == 0) {
            size_t len = (size_t)(p - b);
            if (len > 1023) len = 1023;
            memcpy(parts[n], b, len);
            parts[n++][len] = 0;
            b = p + (p[0] == ',' ? 7 : 10);
            p = b;
            continue;
        } else if (*p == ')' && p[1] == ' ' && isupper((unsigned char)p[2])) {
            size_t len = (size_t)(p + 1 - b);
            if (len > 1023) len = 1023;
            memcpy(parts[n], b, len);
            parts[n++][len] = 0;
            b = p + 2;
        } else if ((*p == '"' || *p == '`' || (*p == '\'' && (p == text || !isalnum((unsigned char)p[-1]))))) {
            q = *p;
        } else if (strchr(".?!;", *p) && (p[1] == ' ' || p[1] == 0)) {
            size_t len = (size_t)(p + 1 - b);
            if (len > 1023) len = 1023;
            memcpy(parts[n], b, len);
            parts[n++][len] = 0;
            b = p + 1;
            while (*b == ' ') b++;
        }
        p++;
    }
    if (*b && n < maxp) {
        size_t len = strlen(b);
        if (len > 1023) len = 1023;
        memcpy(parts[n], b, len);
        parts[n++][len] = 0;
    }
    return n;
}

/* A sentence that sets a parameter of the request before it: "(units: ...)", "Use limit 5.", or one
 * that names one of that tool's parameters. */
static int continues(const tool_view *t, const char *sentence) {
    const char *p = sentence;
    while (*p == ' ') p++;
    if (*p == '(' || strncasecmp(p, "use ", 4) == 0 || strncasecmp(p, "set ", 4) == 0) return 1;
    words sw;
    split_words(sentence, &sw, 0);
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)json_object_get(t->parameters, "properties"), k, v) {
        char kb[128];
        snprintf(kb, sizeof kb, "%s", k);
        for (char *q = kb; *q; q++)
            if (*q == '_') *q = ' ';
        words pw;
        split_words(kb, &pw, 0);
        if (pw.n && has_word(&sw, pw.w[pw.n - 1]) && strlen(pw.w[pw.n - 1]) > 3) return 1;
    }
    return 0;
}

/* Requests in a prompt: a sentence whose name/description words (or shape) point at a tool starts a
 * request; other sentences ("Use max bytes 200.", "Thanks!") add detail to the one before; a sentence
 * pointing at the same tool as the one before continues it. */
int split_requests(const tool_view *tv, int ntools, const char *text, char parts[][1024], int *picks, int maxp) {
    char sent[16][1024];
    int ns = split_sentences(text, sent, 16), n = 0;
    char prefix[1024] = "";
    for (int i = 0; i < ns; i++) {
        tool_score sc;
        int t = choose_scored(tv, ntools, sent[i], &sc);
        int starts = t >= 0 && sc.request >= 2.0;
        if (starts && n > 0 && (picks[n - 1] == t || continues(&tv[picks[n - 1]], sent[i]))) starts = 0;
        if (starts && n < maxp) {
            snprintf(parts[n], 1024, "%s%s%s", prefix, prefix[0] ? " " : "", sent[i]);
            picks[n++] = t;
            prefix[0] = 0;
        } else if (n > 0) {
            size_t l = strlen(parts[n - 1]);
            snprintf(parts[n - 1] + l, 1024 - l, " %s", sent[i]);
        } else {
            size_t l = strlen(prefix);
            snprintf(prefix + l, sizeof prefix - l, "%s%s", l ? " " : "", sent[i]);
        }
    }
    if (n == 0) { /* no sentence alone: the prompt as a whole */
        int t = choose(tv, ntools, text, NULL);
        if (t >= 0) {
            snprintf(parts[0], 1024, "%s", text);
            picks[0] = t;
            n = 1;
        }
    }
    return n;
}

const char *kd_stub_choose_tool(kd_stub_teacher *s, const char *prompt, const json_t *tools) {
    tool_view *tv = NULL;
    int n = request_tools(s, tools, &tv);
    if (n < 0) return NULL;
    int i = choose(tv, n, prompt, NULL);
    const char *name = i >= 0 ? tv[i].name : NULL;
    release_tools(s, tv, n);
    return name;
}

int request_tools(const kd_stub_teacher *s, const json_t *tools, tool_view **out) {
    if (!tools) {
        *out = s->reg_tools;
        return s->n_reg_tools;
    }
    return index_tools(s, tools, out);
}

void release_tools(const kd_stub_teacher *s, tool_view *tv, int n) {
    if (tv != s->reg_tools) free_tools(tv, n);
}

