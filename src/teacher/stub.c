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

/* ---- the tools a request offers, with their words and weights precomputed ---- */


static void tool_words(const tool_view *t, words *tw, int *n_name, int *first_param) {
    char nbuf[256];
    snprintf(nbuf, sizeof nbuf, "%s", t->name);
    for (char *q = nbuf; *q; q++)
        if (*q == '.' || *q == '_') *q = ' ';
    stub_split_words(nbuf, tw, 0);
    *n_name = tw->n;
    stub_split_words(t->description, tw, 1);
    *first_param = tw->n;
    const char *pn;
    const json_t *pv;
    json_object_foreach((json_t *)json_object_get(t->parameters, "properties"), pn, pv) {
        snprintf(nbuf, sizeof nbuf, "%s", pn);
        for (char *q = nbuf; *q; q++)
            if (*q == '_') *q = ' ';
        stub_split_words(nbuf, tw, 1);
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
 * tools: comparing every word with every tool was quadratic). stub_has_word(tool, x) holds exactly when the
 * tool has a word with x's key: the word itself under 6 bytes, else its first 6 (stub_word_match's rule). */
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
            for (int j = 0; j < v[i].n_name; j++) in_name |= stub_word_match(v[i].tw->w[j], v[i].tw->w[w]);
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
            stub_stem(g_syn[g_nsyn][k]);
        }
}

/* ---- choosing a tool ---- */

/* The prompt with quoted strings, URLs, paths and e-mail addresses blanked: their words are values,
 * not requests ("~/Downloads/x.pdf" asks for no download). */
static void word_text(const char *text, char *out, size_t cap) {
    snprintf(out, cap, "%s", text);
    span s;
    for (int i = 0; stub_nth_quoted(out, 0, &s) && i < 32; i++) memset((char *)s.p - 1, ' ', s.n + 2);
    int (*preds[])(const char *, size_t) = {stub_pred_url, stub_pred_email, stub_pred_path};
    for (int k = 0; k < 3; k++)
        for (int i = 0; stub_find_token(out, preds[k], &s, 0) && i < 32; i++) memset((char *)s.p, ' ', s.n);
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
    for (int i = 0; i < 16 && stub_find_token(text, stub_pred_number, &s, i); i++) {
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
        int hit = stub_has_word(pw, w);
        for (int j = 0; !hit && j < g_nsyn; j++) hit = stub_word_match(g_syn[j][1], w) && stub_has_word(pw, g_syn[j][0]);
        if (!hit) continue;
        sc.total += t->weight[i];
        if (i < t->first_param) sc.request += t->weight[i];
    }
    /* evidence from the shape of the prompt */
    span s;
    double ev = 0;
    int has_path = stub_find_token(text, stub_pred_path, &s, 0);
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
    if (json_object_get(props, "url") && stub_find_token(text, stub_pred_url, &s, 0)) ev += 3;
    else if (req_url) ev -= 2;
    if (json_object_get(props, "expression") && stub_find_expression(wt, &s)) ev += 4;
    else if (req_expr) ev -= 2;
    if (json_object_get(props, "symbol") && stub_find_token(text, stub_pred_ticker, &s, 0)) ev += 1.5;
    if (json_object_get(props, "city") && stub_find_listed(text, STUB_CITIES, NULL, NULL)) ev += 1.5;
    if (json_object_get(props, "target_language") && stub_find_listed(text, STUB_LANGS, NULL, NULL)) ev += 2;
    if (json_object_get(props, "from_unit") && number_unit(text, &s)) ev += 5;
    int dir_tool = strstr(t->name, "dir") != NULL || (strstr(t->name, "list") != NULL && strstr(t->name, "file") != NULL);
    int dir_words = stub_ci_find(text, "files in") || stub_ci_find(text, "folder") || stub_ci_find(text, "directory");
    if (json_object_get(props, "path")) {
        if (has_path) ev += 1 + (!dir_tool && path_has_ext ? 1.5 : 0);
        else if (req_path && strstr(t->name, "file")) ev -= 6; /* a file tool without a file name */
        if (dir_tool && dir_words) ev += 3;
    }
    if (req_date && !stub_find_token(text, stub_pred_date, &s, 0) && !stub_ci_find(text, "today") && !stub_ci_find(text, "tomorrow")) ev -= 2;
    if (json_object_get(props, "target_language") && stub_ci_find(text, "say") && stub_nth_quoted(text, 0, &s)) ev += 4;
    if (json_object_get(props, "to") || json_object_get(props, "from")) {
        /* "to x@y", "email x@y", "write to x@y" call for sending; "from x@y" for searching */
        int send = 0, from = 0;
        for (int i = 0; i < 8 && stub_find_token(text, stub_pred_email, &s, i); i++) {
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
    if (json_object_get(props, "start_date") && json_object_get(props, "end_date") && stub_find_token(text, stub_pred_date, &s, 1)) ev += 2.5;
    if (json_object_get(props, "start_time") && stub_find_token(text, stub_pred_time, &s, 0)) ev += 1.5;
    sc.total += ev;
    sc.request += ev;
    return sc;
}

static int choose_scored(const tool_view *tools, int n, const char *text, tool_score *best_out) {
    char wt[2048];
    word_text(text, wt, sizeof wt);
    words pw;
    stub_split_words(wt, &pw, 0);
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
    stub_split_words(sentence, &sw, 0);
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)json_object_get(t->parameters, "properties"), k, v) {
        char kb[128];
        snprintf(kb, sizeof kb, "%s", k);
        for (char *q = kb; *q; q++)
            if (*q == '_') *q = ' ';
        words pw;
        stub_split_words(kb, &pw, 0);
        if (pw.n && stub_has_word(&sw, pw.w[pw.n - 1]) && strlen(pw.w[pw.n - 1]) > 3) return 1;
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
