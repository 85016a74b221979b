/* The stub teacher's policy over a request's own tools: see include/kdstep/stub_policy.h. */
#include "kdstep/stub_policy.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/toolwords.h"

#define MAX_SENTENCES 16
#define MAX_GIST_WORDS 48

/* ---- words and fit ------------------------------------------------------------------------------ */

static const char *STOPWORDS[] = {"the", "a", "an", "of", "for", "to", "in", "on", "and", "or", "with", "by", "from", "at",
                                  "as", "is", "are", "be", "this", "that", "it", "its", "their", "given", "based", "using",
                                  "which", "can", "will", "into", "about", "via", "any", "all", "such", "if", "when", "e",
                                  "g", "eg", "ie", "i", "me", "my", "you", "your", "please", "want", "need", "help"};
static const char *GENERIC[] = {"retrieve", "get", "fetch", "specific", "specified", "user", "information", "info", "detail",
                                "list", "data", "provide", "return", "function", "new", "search", "find", "create", "set",
                                "update", "current", "system", "request", "id", "identifier", "unique", "name", "type",
                                "number", "value", "particular", "certain", "api", "tool", "option"};

static int in_list(const char *w, const char **list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(w, list[i]) == 0) return 1;
    return 0;
}

static void stem(char *w) {
    size_t n = strlen(w);
    if (n > 4 && strcmp(w + n - 3, "ies") == 0) strcpy(w + n - 3, "y");
    else if (n > 4 && (strcmp(w + n - 4, "ches") == 0 || strcmp(w + n - 4, "shes") == 0 || strcmp(w + n - 4, "sses") == 0 ||
                       strcmp(w + n - 3, "xes") == 0))
        w[n - 2] = 0;
    else if (n > 3 && w[n - 1] == 's' && w[n - 2] != 's' && w[n - 2] != 'u' && w[n - 2] != 'i')
        w[n - 1] = 0;
}

/* The next lowercase, stemmed word of text at *p (alnum runs); 0 at the end. */
static int next_word(const char **p, char *w, size_t cap) {
    const char *s = *p;
    while (*s && !isalnum((unsigned char)*s)) s++;
    if (!*s) return 0;
    size_t n = 0;
    while (isalnum((unsigned char)*s)) {
        if (n + 1 < cap) w[n++] = (char)tolower((unsigned char)*s);
        s++;
    }
    w[n] = 0;
    stem(w);
    *p = s;
    return 1;
}

static int text_has_word(const char *text, const char *word) {
    char w[64];
    const char *p = text;
    while (next_word(&p, w, sizeof w))
        if (strcmp(w, word) == 0) return 1;
    return 0;
}

/* The tool's name, exactly, with no name character on either side. */
static int names_tool(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *p = strstr(text, name); p && n; p = strstr(p + 1, name)) {
        int before = p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '.');
        int after = isalnum((unsigned char)p[n]) || p[n] == '_' || (p[n] == '.' && isalnum((unsigned char)p[n + 1]));
        if (!before && !after) return 1;
    }
    return 0;
}

double kd_stub_policy_fit(const kd_tool *tool, const char *text) {
    char gist[KD_GIST_MAX], w[64], seen[MAX_GIST_WORDS][64];
    int nseen = 0;
    kd_tool_gist(tool->description && tool->description[0] ? tool->description : tool->name, gist);
    double total = 0, hit = 0;
    const char *p = gist;
    while (next_word(&p, w, sizeof w) && nseen < MAX_GIST_WORDS) {
        if (strlen(w) < 3 || in_list(w, STOPWORDS, sizeof STOPWORDS / sizeof *STOPWORDS)) continue;
        int dup = 0;
        for (int i = 0; i < nseen && !dup; i++) dup = strcmp(seen[i], w) == 0;
        if (dup) continue;
        snprintf(seen[nseen++], 64, "%s", w);
        double wt = in_list(w, GENERIC, sizeof GENERIC / sizeof *GENERIC) ? 0.3 : 1.0;
        total += wt;
        if (text_has_word(text, w)) hit += wt;
    }
    double fit = total > 0 ? hit / total : 0;
    return fit + (names_tool(text, tool->name) ? 1.0 : 0.0);
}

/* ---- reading values ----------------------------------------------------------------------------- */

static int is_word_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* JSON value at s (object, array, anything); *used gets its length. */
static json_t *json_at(const char *s, size_t n, size_t *used) {
    json_error_t je;
    json_t *v = json_loadb(s, n, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &je);
    if (v) *used = (size_t)je.position;
    return v;
}

static const char *type_at(const json_t *schema, size_t i) {
    const json_t *t = json_object_get(schema, "type");
    if (json_is_string(t)) return i == 0 ? json_string_value(t) : NULL;
    if (json_is_array(t)) return json_string_value(json_array_get(t, i));
    return i == 0 ? "any" : NULL;
}

static json_t *read_value(const char *s, size_t n, const json_t *schema, int explicit_, size_t *used);

static json_t *read_enum(const char *s, size_t n, const json_t *en, size_t *used) {
    size_t best = 0;
    const json_t *pick = NULL;
    size_t i;
    const json_t *v;
    json_array_foreach(en, i, v) {
        if (json_is_string(v)) {
            const char *e = json_string_value(v);
            size_t k = strlen(e);
            if (k + 2 <= n && s[0] == '"' && strncmp(s + 1, e, k) == 0 && s[k + 1] == '"' && k + 2 > best) {
                best = k + 2;
                pick = v;
            } else if (k && k <= n && strncasecmp(s, e, k) == 0 && (k == n || !is_word_char(s[k])) && k > best) {
                best = k;
                pick = v;
            }
        } else if (json_is_number(v)) {
            char *end;
            double x = strtod(s, &end);
            size_t k = (size_t)(end - s);
            if (k && k <= n && x == json_number_value(v) && k > best && !is_word_char(s[k])) {
                best = k;
                pick = v;
            }
        } else if (json_is_boolean(v)) {
            const char *e = json_is_true(v) ? "true" : "false";
            size_t k = strlen(e);
            if (k <= n && strncmp(s, e, k) == 0 && k > best) best = k, pick = v;
        }
    }
    if (!pick) return NULL;
    *used = best;
    return json_deep_copy(pick);
}

static json_t *read_string(const char *s, size_t n, int explicit_, size_t *used) {
    if (n && s[0] == '"') {
        const char *e = memchr(s + 1, '"', n - 1);
        if (!e) return NULL;
        *used = (size_t)(e - s) + 1;
        return json_stringn(s + 1, (size_t)(e - s) - 1);
    }
    if (!explicit_) return NULL;
    size_t k = 0;
    while (k < n && !isspace((unsigned char)s[k]) && !strchr(",;)\"", s[k])) k++;
    size_t v = k;
    if (v && strchr(".?!", s[v - 1])) v--;
    if (!v) return NULL;
    *used = v;
    return json_stringn(s, v);
}

static json_t *read_number(const char *s, size_t n, int integer, size_t *used) {
    if (!n || !(isdigit((unsigned char)s[0]) || (s[0] == '-' && n > 1 && isdigit((unsigned char)s[1])))) return NULL;
    char buf[64];
    size_t k = n < sizeof buf - 1 ? n : sizeof buf - 1;
    memcpy(buf, s, k);
    buf[k] = 0;
    char *end;
    if (integer) {
        long long x = strtoll(buf, &end, 10);
        if (*end == '.' && isdigit((unsigned char)end[1])) return NULL;
        if (is_word_char(*end)) return NULL;
        *used = (size_t)(end - buf);
        return json_integer(x);
    }
    double x = strtod(buf, &end);
    if (is_word_char(*end)) return NULL;
    *used = (size_t)(end - buf);
    return json_real(x);
}

/* "a", "b" and "c" (or 1, 2 and 3), or a JSON array. */
static json_t *read_list(const char *s, size_t n, const json_t *schema, size_t *used) {
    if (n && s[0] == '[') {
        json_t *v = json_at(s, n, used);
        if (json_is_array(v)) return v;
        json_decref(v);
        return NULL;
    }
    const json_t *items = json_object_get(schema, "items");
    json_t *arr = json_array();
    size_t at = 0;
    for (;;) {
        size_t k = 0;
        json_t *v = read_value(s + at, n - at, items ? items : json_object_get(schema, "-"), 0, &k);
        if (!v) break;
        json_array_append_new(arr, v);
        at += k;
        *used = at;
        if (at + 2 <= n && strncmp(s + at, ", ", 2) == 0) at += 2;
        else if (at + 5 <= n && strncmp(s + at, " and ", 5) == 0) at += 5;
        else break;
    }
    if (json_array_size(arr) == 0) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

static json_t *read_typed(const char *s, size_t n, const json_t *schema, const char *t, int explicit_, size_t *used) {
    if (!strcmp(t, "string")) return read_string(s, n, explicit_, used);
    if (!strcmp(t, "integer")) return read_number(s, n, 1, used);
    if (!strcmp(t, "number")) return read_number(s, n, 0, used);
    if (!strcmp(t, "boolean")) {
        if (n >= 4 && !strncmp(s, "true", 4) && (n == 4 || !is_word_char(s[4]))) return *used = 4, json_true();
        if (n >= 5 && !strncmp(s, "false", 5) && (n == 5 || !is_word_char(s[5]))) return *used = 5, json_false();
        return NULL;
    }
    if (!strcmp(t, "null")) return n >= 4 && !strncmp(s, "null", 4) ? (*used = 4, json_null()) : NULL;
    if (!strcmp(t, "array")) return read_list(s, n, schema, used);
    if (!strcmp(t, "object")) {
        if (!n || s[0] != '{') return NULL;
        json_t *v = json_at(s, n, used);
        if (json_is_object(v)) return v;
        json_decref(v);
        return NULL;
    }
    /* no type: JSON, a quoted string, a number, a boolean */
    if (n && (s[0] == '{' || s[0] == '[')) return json_at(s, n, used);
    json_t *v = read_string(s, n, 0, used);
    if (!v) v = read_number(s, n, 0, used);
    if (!v) v = read_typed(s, n, schema, "boolean", 0, used);
    return v;
}

static json_t *read_value(const char *s, size_t n, const json_t *schema, int explicit_, size_t *used) {
    const json_t *en = json_object_get(schema, "enum");
    if (json_is_array(en) && json_array_size(en)) return read_enum(s, n, en, used);
    const char *t;
    for (size_t i = 0; (t = type_at(schema, i)) != NULL; i++) {
        json_t *v = read_typed(s, n, schema, t, explicit_, used);
        if (v) return v;
    }
    return NULL;
}

/* ---- arguments ----------------------------------------------------------------------------------- */

/* After the parameter words: ":" "to" "is" "=" make the connection explicit (a bare word may follow);
 * "of" "as" "for" or a space let a typed value follow. Returns the value's start. */
static size_t skip_connector(const char *w, size_t n, size_t at, int *explicit_) {
    *explicit_ = 0;
    if (at < n && w[at] == ':') {
        *explicit_ = 1;
        at++;
    }
    while (at < n && w[at] == ' ') at++;
    static const char *strong[] = {"to ", "is ", "= ", "equal to ", "set to "};
    static const char *weak[] = {"of ", "as ", "for "};
    for (size_t i = 0; !*explicit_ && i < sizeof strong / sizeof *strong; i++)
        if (n - at >= strlen(strong[i]) && strncmp(w + at, strong[i], strlen(strong[i])) == 0) {
            at += strlen(strong[i]);
            *explicit_ = 1;
        }
    for (size_t i = 0; !*explicit_ && i < sizeof weak / sizeof *weak; i++)
        if (n - at >= strlen(weak[i]) && strncmp(w + at, weak[i], strlen(weak[i])) == 0) at += strlen(weak[i]);
    return at;
}

static size_t ci_find(const char *w, size_t n, size_t from, const char *pw) {
    size_t k = strlen(pw);
    for (size_t i = from; k && i + k <= n; i++)
        if (strncasecmp(w + i, pw, k) == 0 && (i == 0 || !is_word_char(w[i - 1])) && (i + k == n || !is_word_char(w[i + k])))
            return i;
    return (size_t)-1;
}

typedef struct param_ref {
    const char *name;
    const json_t *schema;
    char words[KD_PARAM_WORDS_MAX];
    int required;
} param_ref;

static int by_words_len(const void *a, const void *b) {
    const param_ref *x = a, *y = b;
    size_t lx = strlen(x->words), ly = strlen(y->words);
    return lx < ly ? 1 : lx > ly ? -1 : strcmp(x->name, y->name);
}

json_t *kd_stub_policy_arguments(const kd_tool *tool, const char *text, int *missing) {
    *missing = 0;
    size_t n = strlen(text);
    char *w = malloc(n + 1);
    json_t *args = json_object();
    const json_t *props = json_object_get(tool->parameters, "properties");
    size_t np = json_object_size(props);
    param_ref *ps = calloc(np + 1, sizeof *ps);
    if (!w || !args || !ps) {
        free(w);
        free(ps);
        return args;
    }
    memcpy(w, text, n + 1);
    /* the tool's own gist is the request, not a value: blank it (from its second word on) */
    char gist[KD_GIST_MAX];
    kd_tool_gist(tool->description, gist);
    const char *tail = strchr(gist, ' ');
    if (tail && strlen(tail) > 8) {
        size_t at = ci_find(w, n, 0, tail + 1);
        if (at != (size_t)-1) memset(w + at, ' ', strlen(tail + 1));
    }
    const char *k;
    const json_t *v;
    size_t i = 0;
    json_object_foreach((json_t *)props, k, v) {
        ps[i].name = k;
        ps[i].schema = v;
        kd_param_words(k, ps[i].words);
        i++;
    }
    const json_t *req = json_object_get(tool->parameters, "required");
    for (i = 0; i < np; i++) {
        size_t j;
        const json_t *r;
        json_array_foreach(req, j, r) ps[i].required |= json_is_string(r) && strcmp(json_string_value(r), ps[i].name) == 0;
    }
    qsort(ps, np, sizeof *ps, by_words_len);
    for (i = 0; i < np; i++) {
        json_t *val = NULL;
        for (size_t at = ci_find(w, n, 0, ps[i].words); at != (size_t)-1 && !val;
             at = ci_find(w, n, at + 1, ps[i].words)) {
            int ex;
            size_t vs = skip_connector(w, n, at + strlen(ps[i].words), &ex), used = 0;
            val = read_value(w + vs, n - vs, ps[i].schema, ex, &used);
            if (val) memset(w + at, ' ', vs + used - at);
        }
        if (val) json_object_set_new(args, ps[i].name, val);
        else *missing += ps[i].required;
    }
    free(ps);
    free(w);
    return args;
}

/* ---- sentences and the plan ---------------------------------------------------------------------- */

/* Split at . ? ! followed by a space or the end, outside double quotes and JSON brackets. */
static int split_sentences(const char *text, char **out, int max) {
    int n = 0, quoted = 0, depth = 0;
    const char *start = text;
    for (const char *p = text;; p++) {
        int end = *p == 0;
        if (!end) {
            if (*p == '"') quoted = !quoted;
            else if (!quoted && (*p == '{' || *p == '[')) depth++;
            else if (!quoted && (*p == '}' || *p == ']') && depth > 0) depth--;
            else if (!quoted && !depth && strchr(".?!", *p) && (p[1] == 0 || p[1] == ' '))
                end = 1;
        }
        if (end) {
            const char *e = *p ? p + 1 : p;
            while (start < e && *start == ' ') start++;
            if (e > start && n < max) out[n++] = strndup(start, (size_t)(e - start));
            if (!*p) break;
            start = p + 1;
        }
    }
    return n;
}

int kd_stub_policy_plan(const kd_registry *tools, const char *prompt, kd_policy_call *calls, int max) {
    char *sent[MAX_SENTENCES];
    int ns = split_sentences(prompt ? prompt : "", sent, MAX_SENTENCES), nc = 0;
    for (int si = 0; si < ns; si++) {
        int best = -1, best_missing = 0;
        double best_score = -1, best_fit = 0;
        json_t *best_args = NULL;
        for (int t = 0; t < tools->count; t++) {
            const kd_tool *tool = &tools->tools[t];
            double fit = kd_stub_policy_fit(tool, sent[si]);
            if (fit < KD_POLICY_MIN_FIT) continue;
            int missing = 0;
            json_t *args = kd_stub_policy_arguments(tool, sent[si], &missing);
            /* a tool whose required arguments were all read beats one that lacks some */
            double score = fit + 0.05 * (double)json_object_size(args) - (missing ? 1.0 : 0.0);
            if (score > best_score) {
                json_decref(best_args);
                best = t, best_score = score, best_fit = fit, best_args = args, best_missing = missing;
            } else {
                json_decref(args);
            }
        }
        /* a tool lacking required arguments is called only when the sentence fits it well */
        if (best >= 0 && best_missing && best_fit < KD_POLICY_MIN_FIT) best = -1;
        if (best >= 0 && nc < max) {
            calls[nc].tool = best;
            calls[nc].arguments = best_args;
            calls[nc].fit = best_fit;
            nc++;
        } else {
            json_decref(best_args);
        }
        free(sent[si]);
    }
    return nc;
}

void kd_policy_calls_free(kd_policy_call *calls, int n) {
    for (int i = 0; i < n; i++) {
        json_decref(calls[i].arguments);
        calls[i].arguments = NULL;
    }
}
