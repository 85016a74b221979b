/* Guided tool calls: see include/kdstep/toolguide.h.
 *
 * The scan is a byte-level state machine over the generated text: the fixed frames of the template
 * are matched literally, the name against the offered names, the arguments by a JSON scanner with a
 * stack of containers (and, at schema level, the named tool's parameters at depth 1). Masking runs the
 * scan over each candidate token's bytes from a copy of the current state. */
#include "kdstep/toolguide.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/fsutil.h"

static const char OPENING[] = "<tool_call>\n{\"name\": \"";
static const char AFTER_NAME[] = ", \"arguments\": {"; /* between the name's closing quote and the first key */
static const char CLOSING[] = "}\n</tool_call>";       /* after the arguments object */
#define LEN(s) ((int)sizeof s - 1)

enum { S_OUT, S_NAME, S_AFTER_NAME, S_ARGS, S_CLOSING };
enum { X_KEY_OR_END, X_KEY, X_COLON, X_VALUE, X_VALUE_OR_END, X_AFTER };
enum { SC_NONE, SC_STR, SC_NUM, SC_LIT };
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
enum { T_ANY, T_STRING, T_INTEGER, T_NUMBER, T_BOOLEAN, T_ARRAY, T_OBJECT };

int kd_guide_mode_parse(const char *s) {
    static const char *const NAMES[] = {"none", "names", "json", "schema"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, NAMES[i])) return i;
    return -1;
}

/* ---------------------------------------------------------------- the tools */

static const json_t *tool_function(const json_t *t) {
    const json_t *f = json_object_get(t, "function");
    return json_is_object(f) ? f : t;
}

static int name_ok(const char *s, size_t len, const char *what, size_t i, kd_error *err) {
    if (len == 0 || len > KD_GUIDE_MAX_NAME)
        return kd_error_set(err, KD_ERR_INVALID,
                            "guided decoding: tools[%zu]: %s \"%.40s\" is %zu bytes; guided names are 1 to %d bytes "
                            "(shorten it, or set eval.guide=none)",
                            i, what, s, len, KD_GUIDE_MAX_NAME);
    return KD_OK;
}

/* The declared type of a parameter (JSON Schema names and the Python ones BFCL writes). */
static int param_type(const json_t *p) {
    const char *t = json_string_value(json_object_get(p, "type"));
    if (!t) return T_ANY;
    static const struct {
        const char *name;
        int type;
    } TYPES[] = {{"string", T_STRING}, {"str", T_STRING},    {"integer", T_INTEGER}, {"int", T_INTEGER},
                 {"number", T_NUMBER}, {"float", T_NUMBER},  {"double", T_NUMBER},   {"boolean", T_BOOLEAN},
                 {"bool", T_BOOLEAN},  {"array", T_ARRAY},   {"list", T_ARRAY},      {"tuple", T_ARRAY},
                 {"object", T_OBJECT}, {"dict", T_OBJECT}};
    for (size_t i = 0; i < sizeof TYPES / sizeof *TYPES; i++)
        if (!strcmp(t, TYPES[i].name)) return TYPES[i].type;
    return T_ANY;
}

/* A string enum: every value a string of 1..KD_GUIDE_MAX_NAME bytes; otherwise not guided. */
static size_t string_enum(const json_t *p) {
    const json_t *e = json_object_get(p, "enum");
    size_t n = json_array_size(e);
    for (size_t j = 0; j < n; j++) {
        const json_t *v = json_array_get(e, j);
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > KD_GUIDE_MAX_NAME) return 0;
    }
    return n;
}

static int is_required(const json_t *params, const char *k) {
    const json_t *req = json_object_get(params, "required");
    for (size_t j = 0; j < json_array_size(req); j++)
        if (json_is_string(json_array_get(req, j)) && !strcmp(json_string_value(json_array_get(req, j)), k)) return 1;
    return 0;
}

/* Count the names, parameters and enum values, checking each. */
static int count_tools(const json_t *tools, int mode, size_t *nk, size_t *ns, kd_error *err) {
    *nk = *ns = 0;
    for (size_t i = 0; i < json_array_size(tools); i++) {
        const json_t *f = tool_function(json_array_get(tools, i)), *name = json_object_get(f, "name");
        if (!json_is_string(name))
            return kd_error_set(err, KD_ERR_INVALID, "guided decoding: tools[%zu]: function.name is not a string", i);
        int rc = name_ok(json_string_value(name), json_string_length(name), "function.name", i, err);
        if (rc) return rc;
        const json_t *props = json_object_get(json_object_get(f, "parameters"), "properties");
        if (mode < KD_GUIDE_SCHEMA || !json_is_object(props)) continue;
        if (json_object_size(props) > KD_GUIDE_MAX_KEYS)
            return kd_error_set(err, KD_ERR_INVALID,
                                "guided decoding: tools[%zu] (%s): %zu parameters; schema guidance takes up to %d (set "
                                "eval.guide=json)",
                                i, json_string_value(name), json_object_size(props), KD_GUIDE_MAX_KEYS);
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)props, k, v) {
            if ((rc = name_ok(k, strlen(k), "parameter", i, err))) return rc;
            (*nk)++;
            *ns += string_enum(v);
        }
    }
    return KD_OK;
}

static int fill_tools(kd_tool_guide *g, const json_t *tools) {
    int k_at = 0;
    for (size_t i = 0; i < json_array_size(tools); i++) {
        const json_t *f = tool_function(json_array_get(tools, i)), *params = json_object_get(f, "parameters");
        g->key_start[i] = k_at;
        if (!(g->names[i] = strdup(json_string_value(json_object_get(f, "name"))))) return KD_ERR_NOMEM;
        g->n_tools = (int)i + 1;
        const json_t *props = json_object_get(params, "properties");
        if (g->mode < KD_GUIDE_SCHEMA || !json_is_object(props)) continue;
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)props, k, v) {
            kd_guide_key *key = &g->keys[k_at++];
            g->n_keys = k_at; /* what close frees, even when a later allocation fails */
            if (!(key->name = strdup(k))) return KD_ERR_NOMEM;
            key->type = param_type(v);
            key->required = is_required(params, k);
            key->enum_start = g->n_strs;
            size_t ne = string_enum(v);
            if (ne && key->type != T_STRING && key->type != T_ANY) ne = 0;
            for (size_t j = 0; j < ne; j++)
                if (!(g->strs[g->n_strs++] = strdup(json_string_value(json_array_get(json_object_get(v, "enum"), j)))))
                    return KD_ERR_NOMEM;
            key->n_enum = (int)ne;
        }
    }
    g->key_start[g->n_tools] = k_at;
    return KD_OK;
}

int kd_tool_guide_open(kd_tool_guide **out, const kd_tokenizer *tok, const json_t *tools, int mode, kd_error *err) {
    *out = NULL;
    if (mode < KD_GUIDE_NAMES || mode > KD_GUIDE_SCHEMA)
        return kd_error_set(err, KD_ERR_INVALID, "guided decoding: mode %d is not names (1), json (2) or schema (3)", mode);
    if (!json_is_array(tools)) return kd_error_set(err, KD_ERR_INVALID, "guided decoding: tools is not an array");
    size_t n = json_array_size(tools), nk, ns;
    int rc = count_tools(tools, mode, &nk, &ns, err);
    if (rc) return rc;
    kd_tool_guide *g = kd_calloc(1, sizeof *g);
    if (!g) return kd_error_set(err, KD_ERR_NOMEM, "guided decoding: out of memory");
    g->tok = tok;
    g->mode = mode;
    g->names = kd_calloc(n + 1, sizeof *g->names);
    g->key_start = kd_calloc(n + 1, sizeof *g->key_start);
    g->keys = kd_calloc(nk + 1, sizeof *g->keys);
    g->strs = kd_calloc(ns + 1, sizeof *g->strs);
    rc = (!g->names || !g->key_start || !g->keys || !g->strs) ? KD_ERR_NOMEM : fill_tools(g, tools);
    if (rc) {
        kd_tool_guide_close(g);
        return kd_error_set(err, KD_ERR_NOMEM, "guided decoding: out of memory");
    }
    g->scan = (kd_guide_scan){.state = S_OUT, .tool = -1, .key = -1};
    *out = g;
    return KD_OK;
}

void kd_tool_guide_close(kd_tool_guide *g) {
    if (!g) return;
    for (int i = 0; i < g->n_tools; i++) free(g->names[i]);
    for (int i = 0; i < g->n_keys; i++) free(g->keys[i].name);
    for (int i = 0; i < g->n_strs; i++) free(g->strs[i]);
    free(g->names);
    free(g->key_start);
    free(g->keys);
    free(g->strs);
    free(g->ban);
    free(g);
}

/* ---------------------------------------------------------------- names, keys and enum values */

/* Does the C string s start with part[len] (exact: equal it)? part never holds a NUL (add_part
 * refuses it), so strncmp stops at s's end. */
static int starts(const char *s, const char *part, int len, int exact) {
    return !strncmp(s, part, (size_t)len) && (!exact || s[len] == 0);
}

/* The first of strs[n] (of keys[n] not in `used`) that starts with part[len] (exact: equals it); -1 if none. */
static int find_str(char *const *strs, int n, const char *part, int len, int exact) {
    for (int i = 0; i < n; i++)
        if (starts(strs[i], part, len, exact)) return i;
    return -1;
}

static int find_key(const kd_guide_key *keys, int n, uint64_t used, const char *part, int len, int exact) {
    for (int i = 0; i < n; i++)
        if (!(used >> i & 1) && starts(keys[i].name, part, len, exact)) return i;
    return -1;
}

/* The named tool's parameters at schema level; 0 (anything goes) otherwise or when it lists none. */
static int tool_keys(const kd_tool_guide *g, const kd_guide_scan *s, const kd_guide_key **keys) {
    if (g->mode < KD_GUIDE_SCHEMA || s->tool < 0) return 0;
    *keys = g->keys + g->key_start[s->tool];
    return g->key_start[s->tool + 1] - g->key_start[s->tool];
}

/* A byte of a name, key, enum value or literal; a NUL is in none of them. */
static int add_part(kd_guide_scan *s, unsigned char c) {
    if (c == 0 || s->n_part >= KD_GUIDE_MAX_NAME) return -1;
    s->part[s->n_part++] = (char)c;
    return 0;
}

/* ---------------------------------------------------------------- the arguments' JSON */

/* The declared type of the value about to be written: only top-level values of a known parameter. */
static const kd_guide_key *value_key(const kd_tool_guide *g, const kd_guide_scan *s) {
    const kd_guide_key *keys = NULL;
    if (s->depth != 1 || s->key < 0 || tool_keys(g, s, &keys) == 0) return NULL;
    return &keys[s->key];
}

static int push(kd_guide_scan *s, char kind) {
    if (s->depth >= KD_GUIDE_MAX_DEPTH) return -1;
    s->stack[s->depth++] = kind;
    s->expect = kind == 'o' ? X_KEY_OR_END : X_VALUE_OR_END;
    return 0;
}

/* The first byte of a value. */
static int value_start(const kd_tool_guide *g, kd_guide_scan *s, unsigned char c) {
    const kd_guide_key *k = value_key(g, s);
    int t = k ? k->type : T_ANY;
    if (c == '"') {
        if (t != T_ANY && t != T_STRING) return -1;
        s->scalar = SC_STR;
        s->in_key = 0;
        s->n_part = 0;
        return 0;
    }
    if (c == '{') return t == T_ANY || t == T_OBJECT ? push(s, 'o') : -1;
    if (c == '[') return t == T_ANY || t == T_ARRAY ? push(s, 'a') : -1;
    if (c == '-' || (c >= '0' && c <= '9')) {
        if (t != T_ANY && t != T_INTEGER && t != T_NUMBER) return -1;
        s->scalar = SC_NUM;
        s->num = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
        s->n_part = 1;
        return 0;
    }
    if (c == 't' || c == 'f' || c == 'n') {
        if (t != T_ANY && !(t == T_BOOLEAN && c != 'n')) return -1;
        s->scalar = SC_LIT;
        s->n_part = 0;
        return add_part(s, c);
    }
    return -1;
}

/* A closing '}' or ']' of the innermost container. */
static int close_container(const kd_tool_guide *g, kd_guide_scan *s, unsigned char c) {
    if (s->depth == 0 || s->stack[s->depth - 1] != (c == '}' ? 'o' : 'a')) return -1;
    if (s->depth == 1) { /* the arguments object: every required parameter written */
        const kd_guide_key *keys = NULL;
        int nk = tool_keys(g, s, &keys);
        for (int i = 0; i < nk; i++)
            if (keys[i].required && !(s->used >> i & 1)) return -1;
        s->state = S_CLOSING;
        s->lit = 0;
        return 0;
    }
    s->depth--;
    s->expect = X_AFTER;
    if (s->depth == 1) s->key = -1;
    return 0;
}

/* A byte between values: whitespace, separators, the start of a key or value, a close. */
static int structural(const kd_tool_guide *g, kd_guide_scan *s, unsigned char c) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') return ++s->ws > KD_GUIDE_MAX_SPACE ? -1 : 0;
    s->ws = 0;
    int obj = s->stack[s->depth - 1] == 'o';
    switch (s->expect) {
    case X_KEY_OR_END:
        if (c == '}') return close_container(g, s, c);
        /* fall through */
    case X_KEY:
        if (c != '"') return -1;
        s->scalar = SC_STR;
        s->in_key = 1;
        s->n_part = 0;
        return 0;
    case X_COLON:
        if (c != ':') return -1;
        s->expect = X_VALUE;
        return 0;
    case X_VALUE_OR_END:
        if (c == ']') return close_container(g, s, c);
        /* fall through */
    case X_VALUE: s->expect = X_AFTER; return value_start(g, s, c);
    default: /* X_AFTER */
        if (c == ',') {
            s->expect = obj ? X_KEY : X_VALUE;
            return 0;
        }
        if (c == '}' || c == ']') return close_container(g, s, c);
        return -1;
    }
}

/* The end of a key or a string value: the key must name an unwritten parameter, the value an enum's. */
static int string_end(const kd_tool_guide *g, kd_guide_scan *s) {
    s->scalar = SC_NONE;
    const kd_guide_key *keys = NULL;
    if (s->in_key) {
        s->in_key = 0;
        s->expect = X_COLON;
        int nk = s->depth == 1 ? tool_keys(g, s, &keys) : 0;
        if (nk == 0) return 0;
        s->key = find_key(keys, nk, s->used, s->part, s->n_part, 1);
        if (s->key < 0) return -1;
        s->used |= (uint64_t)1 << s->key;
        return 0;
    }
    const kd_guide_key *k = value_key(g, s);
    if (k && k->n_enum > 0 && find_str(g->strs + k->enum_start, k->n_enum, s->part, s->n_part, 1) < 0) return -1;
    return 0;
}

/* A byte inside a key or string value. */
static int string_byte(const kd_tool_guide *g, kd_guide_scan *s, unsigned char c) {
    const kd_guide_key *keys = NULL, *k = NULL;
    int nk = s->in_key && s->depth == 1 ? tool_keys(g, s, &keys) : 0;
    if (!s->in_key) k = value_key(g, s);
    int guided = nk > 0 || (k && k->n_enum > 0);
    if (s->hex > 0) {
        s->hex--;
        return ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) ? 0 : -1;
    }
    if (s->esc) {
        s->esc = 0;
        if (c == 'u') s->hex = 4;
        return strchr("\"\\/bfnrtu", c) && c ? 0 : -1;
    }
    if (c == '"') return string_end(g, s);
    if (c < 0x20) return -1;
    if (c == '\\') {
        s->esc = 1;
        return guided ? -1 : 0; /* names and enum values are matched as written, unescaped */
    }
    if (!guided) return 0;
    if (add_part(s, c)) return -1;
    if (nk > 0) return find_key(keys, nk, s->used, s->part, s->n_part, 0) >= 0 ? 0 : -1;
    return find_str(g->strs + k->enum_start, k->n_enum, s->part, s->n_part, 0) >= 0 ? 0 : -1;
}

/* A byte inside a number; 1 when the byte ends it (the caller then reads it as structure). */
static int number_byte(const kd_tool_guide *g, kd_guide_scan *s, unsigned char c) {
    const kd_guide_key *k = value_key(g, s);
    int integer = k && k->type == T_INTEGER, digit = c >= '0' && c <= '9', e = c == 'e' || c == 'E';
    switch (s->num) {
    case N_MINUS: s->num = c == '0' ? N_ZERO : N_INT; return digit ? 0 : -1;
    case N_ZERO:
    case N_INT:
    case N_FRAC:
        if (digit && s->num != N_ZERO) return 0;
        if (digit) return -1; /* a leading zero */
        if (c == '.' && s->num != N_FRAC && !integer) return s->num = N_DOT, 0;
        if (e && !integer) return s->num = N_E, 0;
        return 1;
    case N_DOT: s->num = N_FRAC; return digit ? 0 : -1;
    case N_E:
        if (c == '+' || c == '-') return s->num = N_ESIGN, 0;
        s->num = N_EXP;
        return digit ? 0 : -1;
    case N_ESIGN: s->num = N_EXP; return digit ? 0 : -1;
    default: return digit ? 0 : 1; /* N_EXP */
    }
}

static int args_byte(const kd_tool_guide *g, kd_guide_scan *s, unsigned char c) {
    if (s->scalar == SC_STR) return string_byte(g, s, c);
    if (s->scalar == SC_NUM) {
        int r = number_byte(g, s, c);
        if (r == 0 && ++s->n_part > KD_GUIDE_MAX_NUMBER) return -1; /* a run of digits ends */
        if (r <= 0) return r;
        s->scalar = SC_NONE;
    } else if (s->scalar == SC_LIT) {
        const char *lit = s->part[0] == 't' ? "true" : s->part[0] == 'f' ? "false" : "null";
        if (c != (unsigned char)lit[s->n_part]) return -1;
        if (add_part(s, c)) return -1;
        if (lit[s->n_part] == 0) s->scalar = SC_NONE;
        return 0;
    }
    return structural(g, s, c);
}

/* ---------------------------------------------------------------- the frame */

/* Match c against fixed text at s->lit: 1 when the text is complete, 0 while it goes on, -1 on a miss. */
static int literal(kd_guide_scan *s, const char *text, int len, unsigned char c) {
    if (c != (unsigned char)text[s->lit]) return -1;
    return ++s->lit == len;
}

/* Advance the scan by one byte; -1 when the byte breaks the rule. */
static int scan_byte(const kd_tool_guide *g, kd_guide_scan *s, unsigned char c) {
    int r;
    switch (s->state) {
    case S_OUT:
        if ((r = literal(s, OPENING, LEN(OPENING), c)) < 0) s->lit = c == (unsigned char)OPENING[0]; /* '<' only opens it */
        if (r == 1) *s = (kd_guide_scan){.state = S_NAME, .tool = -1, .key = -1};
        return 0;
    case S_NAME:
        if (c == '"') {
            s->tool = find_str(g->names, g->n_tools, s->part, s->n_part, 1);
            s->state = S_AFTER_NAME;
            s->lit = 0;
            return s->tool < 0 ? -1 : 0;
        }
        if (add_part(s, c)) return -1;
        return find_str(g->names, g->n_tools, s->part, s->n_part, 0) >= 0 ? 0 : -1;
    case S_AFTER_NAME:
        if ((r = literal(s, AFTER_NAME, LEN(AFTER_NAME), c)) < 0) return -1;
        if (r == 1 && g->mode == KD_GUIDE_NAMES) *s = (kd_guide_scan){.state = S_OUT, .tool = -1, .key = -1};
        else if (r == 1) {
            s->state = S_ARGS;
            s->depth = 1;
            s->stack[0] = 'o';
            s->expect = X_KEY_OR_END;
            s->key = -1;
            s->used = 0;
        }
        return 0;
    case S_ARGS: return args_byte(g, s, c);
    default: /* S_CLOSING */
        if ((r = literal(s, CLOSING, LEN(CLOSING), c)) < 0) return -1;
        if (r == 1) *s = (kd_guide_scan){.state = S_OUT, .tool = -1, .key = -1};
        return 0;
    }
}

/* ---------------------------------------------------------------- masking */

int kd_tool_guide_mask(kd_tool_guide *g, float *logits, int V) {
    if (!g || g->n_tools == 0) return V;
    if (g->n_ban < V) {
        uint8_t *b = realloc(g->ban, (size_t)V);
        if (!b) return V; /* out of memory: decode unguided rather than fail the prompt */
        g->ban = b;
        g->n_ban = V;
    }
    int open = 0;
    for (int id = 0; id < V; id++) {
        g->ban[id] = 0;
        if (logits[id] == -INFINITY) continue;
        const char *bytes;
        size_t len;
        if (kd_tokenizer_token_bytes(g->tok, id, &bytes, &len)) { /* an unused id: not the guide's to mask */
            open++;
            continue;
        }
        /* outside a call, only a token holding the opening's last byte can enter a guided part */
        if (g->scan.state == S_OUT && !memchr(bytes, '"', len)) {
            open++;
            continue;
        }
        kd_guide_scan s; /* part[] is last: only its written bytes are copied */
        memcpy(&s, &g->scan, offsetof(kd_guide_scan, part) + (size_t)g->scan.n_part);
        int bad = 0;
        for (size_t i = 0; i < len && !bad; i++) bad = scan_byte(g, &s, (unsigned char)bytes[i]);
        g->ban[id] = (uint8_t)(bad != 0);
        open += !bad;
    }
    if (open == 0) return V;
    int any = 0;
    for (int id = 0; id < V; id++)
        if (g->ban[id]) {
            logits[id] = -INFINITY;
            any = 1;
        }
    g->masked_steps += any;
    return open;
}

void kd_tool_guide_push(kd_tool_guide *g, int32_t id) {
    if (!g) return;
    const char *bytes;
    size_t len;
    if (kd_tokenizer_token_bytes(g->tok, id, &bytes, &len)) return;
    for (size_t i = 0; i < len; i++)
        if (scan_byte(g, &g->scan, (unsigned char)bytes[i])) /* taken unmasked: start over outside a call */
            g->scan = (kd_guide_scan){.state = S_OUT, .tool = -1, .key = -1};
}
