/* BFCL-style scoring of tool calls; see include/kdstep/score.h for the rules. */
#include "kdstep/score.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "kdstep/extract.h"
#include "kdstep/registry.h"

const char *const kd_score_metric_names[KD_SCORE_NMETRICS] = {"tool_name_accuracy", "json_validity", "schema_validity",
                                                               "ast_accuracy", "no_call_accuracy"};

typedef struct tally {
    long pass[KD_SCORE_NMETRICS];
    long applies[KD_SCORE_NMETRICS];
    long count;
} tally;

struct kd_scorer {
    json_t *answers;     /* id -> {"calls": [BFCL answer entries], "category": s} */
    json_t *seen;        /* id -> true, for predictions scored so far */
    kd_registry *global; /* --tools as one registry, or NULL */
    kd_registry **regs;  /* per-prompt registries */
    int nregs;
    json_t *reg_index;   /* id -> index into regs */
    char *answers_path;
    tally all;
    json_t *cats;        /* category -> index into cat_tallies (insertion order kept) */
    tally *cat_tallies;
    int ncats;
    long missing;
    FILE *details;       /* per-item verdicts as JSON Lines, or NULL */
};

/* ---------- small helpers ---------- */

static void why_set(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void why_set(char *why, size_t len, const char *fmt, ...) {
    if (!why || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
}

static char *short_json(const json_t *v) {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s && strlen(s) > 80) strcpy(s + 77, "...");
    return s;
}

char *kd_score_standardize(const char *s) {
    size_t n = strlen(s);
    /* lowercasing can grow a code point's encoding a little; 2x plus slack is enough */
    char *out = malloc(2 * n + 8);
    if (!out) return NULL;
    size_t o = 0;
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t left = (utf8proc_ssize_t)n;
    while (left > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, left, &cp);
        if (k <= 0) { /* invalid UTF-8: keep the byte, lowercased if ASCII */
            out[o++] = (char)tolower(*p);
            p++, left--;
            continue;
        }
        p += k, left -= k;
        if (cp == ' ' || cp == ',' || cp == '.' || cp == '/' || cp == '-' || cp == '_' || cp == '*' || cp == '^')
            continue;
        if (cp == '\'') cp = '"';
        cp = utf8proc_tolower(cp);
        if (o + 4 >= 2 * n + 8) break;
        o += (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)out + o);
    }
    out[o] = 0;
    return out;
}

/* Python's == on JSON values: numbers compare by value (5 == 5.0), booleans stay apart. */
static int value_eq(const json_t *a, const json_t *b) {
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_is_array(a) && json_is_array(b)) {
        if (json_array_size(a) != json_array_size(b)) return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!value_eq(json_array_get(a, i), json_array_get(b, i))) return 0;
        return 1;
    }
    if (json_is_object(a) && json_is_object(b)) {
        if (json_object_size(a) != json_object_size(b)) return 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v) {
            const json_t *w = json_object_get(b, k);
            if (!w || !value_eq(v, w)) return 0;
        }
        return 1;
    }
    return json_equal(a, b);
}

/* Equal after BFCL's string standardization when both are strings, else value_eq. */
static int std_eq(const json_t *a, const json_t *b) {
    if (json_is_string(a) && json_is_string(b)) {
        char *x = kd_score_standardize(json_string_value(a)), *y = kd_score_standardize(json_string_value(b));
        int eq = x && y && strcmp(x, y) == 0;
        free(x);
        free(y);
        return eq;
    }
    return value_eq(a, b);
}

static int is_omit_marker(const json_t *v) { return json_is_string(v) && json_string_value(v)[0] == 0; }

static int may_omit(const json_t *acceptable) {
    if (!json_is_array(acceptable)) return is_omit_marker(acceptable);
    size_t i;
    json_t *v;
    json_array_foreach(acceptable, i, v) if (is_omit_marker(v)) return 1;
    return 0;
}

/* A value's kind, with JSON Schema's names; "number" is a real (BFCL float). */
static const char *kind_of(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_ARRAY: return "array";
    case JSON_OBJECT: return "object";
    default: return "null";
    }
}

/* Kind of the first acceptable value that is not the omit marker, or NULL. */
static const char *answer_kind(const json_t *acceptable) {
    size_t i;
    json_t *v;
    json_array_foreach(acceptable, i, v) if (!is_omit_marker(v)) return kind_of(v);
    return NULL;
}

static int kind_matches(const char *expected, const json_t *v) {
    if (strcmp(expected, "number") == 0) return json_is_number(v); /* int accepted for float */
    if (strcmp(expected, "string") == 0 || strcmp(expected, "integer") == 0 || strcmp(expected, "boolean") == 0 ||
        strcmp(expected, "array") == 0 || strcmp(expected, "object") == 0 || strcmp(expected, "null") == 0)
        return strcmp(kind_of(v), expected) == 0;
    return 1; /* a type we do not know constrains nothing */
}

static const char *schema_type(const json_t *schema) {
    const json_t *t = json_object_get(schema, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

/* ---------- BFCL's value checkers ---------- */

/* acceptable[k] as a list (BFCL nests acceptable lists inside dict answers). */
static int in_list_std(const json_t *value, const json_t *acceptable) {
    if (!json_is_array(acceptable)) return std_eq(value, acceptable);
    size_t i;
    json_t *a;
    json_array_foreach(acceptable, i, a) if (std_eq(value, a)) return 1;
    return 0;
}

static int dict_matches(const json_t *value, const json_t *answer, char *why, size_t wl) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)value, k, v) {
        const json_t *acc = json_object_get(answer, k);
        if (!acc) {
            why_set(why, wl, "unexpected dict key '%s'", k);
            return 0;
        }
        if (!in_list_std(v, acc)) {
            char *s = short_json(v);
            why_set(why, wl, "dict key '%s': value %s is not acceptable", k, s ? s : "?");
            free(s);
            return 0;
        }
    }
    json_object_foreach((json_t *)answer, k, v) {
        if (!json_object_get(value, k) && !may_omit(v)) {
            why_set(why, wl, "dict key '%s' is missing", k);
            return 0;
        }
    }
    return 1;
}

static int dict_checker(const char *param, const json_t *value, const json_t *acceptable, char *why, size_t wl) {
    size_t i;
    json_t *a;
    char last[256] = "no acceptable dict";
    json_array_foreach(acceptable, i, a) {
        if (!json_is_object(a)) continue;
        if (dict_matches(value, a, last, sizeof last)) return 1;
    }
    why_set(why, wl, "parameter '%s': %s", param, last);
    return 0;
}

static int list_dict_checker(const char *param, const json_t *value, const json_t *acceptable, char *why, size_t wl) {
    size_t i;
    json_t *a;
    char last[256] = "no acceptable list of dicts";
    json_array_foreach(acceptable, i, a) {
        if (!json_is_array(a)) continue;
        if (json_array_size(a) != json_array_size(value)) {
            snprintf(last, sizeof last, "wrong number of dicts (%zu, expected %zu)", json_array_size(value),
                     json_array_size(a));
            continue;
        }
        int ok = 1;
        for (size_t j = 0; ok && j < json_array_size(value); j++) {
            const json_t *e = json_array_get(value, j), *d = json_array_get(a, j);
            ok = json_is_object(e) && json_is_object(d) && dict_matches(e, d, last, sizeof last);
        }
        if (ok) return 1;
    }
    why_set(why, wl, "parameter '%s': %s", param, last);
    return 0;
}

static int list_checker(const json_t *value, const json_t *acceptable) {
    size_t i;
    json_t *a;
    json_array_foreach(acceptable, i, a) {
        if (!json_is_array(a) || json_array_size(a) != json_array_size(value)) continue;
        int ok = 1;
        for (size_t j = 0; ok && j < json_array_size(a); j++) ok = std_eq(json_array_get(value, j), json_array_get(a, j));
        if (ok) return 1;
    }
    return 0;
}

static int plain_in(const json_t *value, const json_t *acceptable) {
    size_t i;
    json_t *a;
    json_array_foreach(acceptable, i, a) if (value_eq(value, a)) return 1;
    return 0;
}

/* Type check of one parameter (BFCL type_checker). Sets *variable when the answer's own type
 * differs from the schema's, in which case BFCL compares values plainly. */
static int type_check(const char *param, const json_t *prop, const json_t *value, const json_t *acceptable,
                      int *variable, char *why, size_t wl) {
    const char *expected = schema_type(prop);
    const char *akind = answer_kind(acceptable);
    *variable = 0;
    if (!expected) return 1;
    if (akind && strcmp(akind, expected) != 0 && !(strcmp(expected, "number") == 0 && strcmp(akind, "integer") == 0))
        *variable = 1;
    if (kind_matches(expected, value)) {
        const json_t *items = json_object_get(prop, "items");
        const char *nested = strcmp(expected, "array") == 0 ? schema_type(items) : NULL;
        if (!nested) return 1;
        /* each element must have the item type, or the type the answer's own elements have */
        size_t i;
        json_t *e;
        json_array_foreach(value, i, e) {
            if (kind_matches(nested, e)) continue;
            int ok = 0;
            size_t j;
            json_t *a;
            json_array_foreach(acceptable, j, a) {
                if (json_is_array(a) && json_array_size(a) && strcmp(kind_of(json_array_get(a, 0)), kind_of(e)) == 0)
                    ok = 1;
            }
            if (!ok) {
                why_set(why, wl, "parameter '%s': element %zu has type %s, expected %s", param, i, kind_of(e), nested);
                return 0;
            }
        }
        return 1;
    }
    if (akind && strcmp(akind, kind_of(value)) == 0) {
        *variable = 1;
        return 1;
    }
    why_set(why, wl, "parameter '%s': wrong type %s, expected %s", param, kind_of(value), expected);
    return 0;
}

int kd_score_check_call(const json_t *params, const char *name, const json_t *args, const json_t *answer, char *why,
                        size_t wl) {
    const char *fn = NULL;
    const json_t *expected = NULL;
    if (json_is_object(answer) && json_object_size(answer) == 1) {
        void *it = json_object_iter((json_t *)answer);
        fn = json_object_iter_key(it);
        expected = json_object_iter_value(it);
    }
    if (!fn || !json_is_object(expected)) {
        why_set(why, wl, "malformed answer entry");
        return 0;
    }
    if (!name || strcmp(name, fn) != 0) {
        why_set(why, wl, "wrong function name '%s', expected '%s'", name ? name : "(none)", fn);
        return 0;
    }
    if (!json_is_object(args)) {
        why_set(why, wl, "%s: arguments are not a JSON object", fn);
        return 0;
    }
    const json_t *props = json_object_get(params, "properties");
    const json_t *required = json_object_get(params, "required");
    size_t i;
    json_t *r;
    json_array_foreach(required, i, r) {
        if (json_is_string(r) && !json_object_get(args, json_string_value(r))) {
            why_set(why, wl, "%s: missing required parameter '%s'", fn, json_string_value(r));
            return 0;
        }
    }
    const char *param;
    json_t *value;
    json_object_foreach((json_t *)args, param, value) {
        const json_t *prop = props ? json_object_get(props, param) : NULL;
        const json_t *acceptable = json_object_get(expected, param);
        if ((params && !prop) || !acceptable) {
            why_set(why, wl, "%s: unexpected parameter '%s'", fn, param);
            return 0;
        }
        if (!json_is_array(acceptable)) {
            why_set(why, wl, "%s: malformed answer for '%s' (not a list)", fn, param);
            return 0;
        }
        char sub[400] = "";
        int variable = 0, ok;
        if (!type_check(param, prop, value, acceptable, &variable, sub, sizeof sub)) {
            why_set(why, wl, "%s: %s", fn, sub);
            return 0;
        }
        const json_t *items = prop ? json_object_get(prop, "items") : NULL;
        const char *nested = schema_type(items);
        if (variable) {
            ok = plain_in(value, acceptable);
        } else if (json_is_object(value)) {
            ok = dict_checker(param, value, acceptable, sub, sizeof sub);
        } else if (json_is_array(value) && json_array_size(value) > 0 &&
                   ((nested && strcmp(nested, "object") == 0) ||
                    (!nested && json_is_object(json_array_get(value, 0))))) {
            ok = list_dict_checker(param, value, acceptable, sub, sizeof sub);
        } else if (json_is_string(value)) {
            ok = in_list_std(value, acceptable);
        } else if (json_is_array(value)) {
            ok = list_checker(value, acceptable);
        } else {
            ok = plain_in(value, acceptable);
        }
        if (!ok) {
            if (!sub[0]) {
                char *s = short_json(value);
                snprintf(sub, sizeof sub, "parameter '%s': value %s is not one of the acceptable values", param,
                         s ? s : "?");
                free(s);
            }
            why_set(why, wl, "%s: %s", fn, sub);
            return 0;
        }
    }
    json_object_foreach((json_t *)expected, param, value) {
        if (!json_object_get(args, param) && !may_omit(value)) {
            why_set(why, wl, "%s: parameter '%s' is missing (not optional in the answer)", fn, param);
            return 0;
        }
    }
    return 1;
}

/* ---------- loading ---------- */

/* "simple_12" -> "simple", "live_simple_3-1-0" -> "live_simple"; an id without such a suffix -> "all". */
static void category_of(const char *id, char *out, size_t len) {
    size_t n = strlen(id), e = n;
    while (e > 0 && (isdigit((unsigned char)id[e - 1]) || id[e - 1] == '-')) e--;
    if (e == n || e == 0 || id[e - 1] != '_' || !isdigit((unsigned char)id[e])) {
        snprintf(out, len, "all");
        return;
    }
    snprintf(out, len, "%.*s", (int)(e - 1), id);
}

static int is_irrelevance(const char *cat) { return strstr(cat, "irrelevance") != NULL; }

/* Synthesizer exact values -> BFCL's acceptable-value form. Dicts become {key: [value]} and lists
 * of dicts lists of such, because that is how BFCL nests answers for dict parameters. */
static json_t *exact_to_acceptable(const json_t *v) {
    if (json_is_object(v)) {
        json_t *d = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) json_object_set_new(d, k, json_pack("[O]", x));
        return d;
    }
    if (json_is_array(v) && json_array_size(v) > 0 && json_is_object(json_array_get(v, 0))) {
        json_t *l = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) json_array_append_new(l, exact_to_acceptable(x));
        return l;
    }
    return json_incref((json_t *)v);
}

static int metadata_calls(const json_t *calls, json_t **out, const char *where, kd_error *err) {
    json_t *list = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        const json_t *fnw = json_object_get(c, "function");
        if (json_is_object(fnw)) c = (json_t *)fnw;
        const json_t *name = json_object_get(c, "name");
        json_t *args = json_object_get(c, "arguments"), *parsed = NULL;
        if (json_is_string(args)) args = parsed = json_loads(json_string_value(args), 0, NULL);
        if (!json_is_string(name) || (args && !json_is_object(args))) {
            json_decref(parsed);
            json_decref(list);
            return kd_error_set(err, KD_ERR_INVALID,
                                "%s: metadata.tool_calls[%zu] needs a \"name\" and an \"arguments\" object", where, i);
        }
        json_t *params = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(args, k, v) json_object_set_new(params, k, json_pack("[o]", exact_to_acceptable(v)));
        json_t *entry = json_object();
        json_object_set_new(entry, json_string_value(name), params);
        json_array_append_new(list, entry);
        json_decref(parsed);
    }
    *out = list;
    return KD_OK;
}

typedef int (*line_fn)(kd_scorer *s, json_t *rec, const char *where, kd_error *err);

static int each_line(kd_scorer *s, const char *path, line_fn fn, kd_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return kd_error_errno(err, errno, "cannot open %s", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = KD_OK;
    while (rc == KD_OK && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t k = 0;
        while (k < (size_t)n && isspace((unsigned char)line[k])) k++;
        if (k == (size_t)n) continue;
        char where[512];
        snprintf(where, sizeof where, "%s:%ld", path, lineno);
        json_error_t je;
        json_t *rec = json_loadb(line, (size_t)n, 0, &je);
        if (!rec) {
            rc = kd_error_set(err, KD_ERR_PARSE, "%s:%d: invalid JSON: %s (the file must be JSON Lines)", where,
                              je.column, je.text);
            break;
        }
        if (!json_is_object(rec) || !json_is_string(json_object_get(rec, "id")))
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: record has no string \"id\"", where);
        else
            rc = fn(s, rec, where, err);
        json_decref(rec);
    }
    free(line);
    fclose(f);
    return rc;
}

static int add_answer(kd_scorer *s, json_t *rec, const char *where, kd_error *err) {
    const char *id = json_string_value(json_object_get(rec, "id"));
    char cat[64];
    category_of(id, cat, sizeof cat);
    json_t *calls = NULL;
    const json_t *gt = json_object_get(rec, "ground_truth");
    const json_t *meta = json_object_get(rec, "metadata");
    if (json_is_array(gt)) {
        calls = json_incref((json_t *)gt);
    } else if (json_is_object(meta) && json_is_array(json_object_get(meta, "tool_calls"))) {
        if (metadata_calls(json_object_get(meta, "tool_calls"), &calls, where, err)) return err ? err->code : KD_ERR_INVALID;
        const json_t *mc = json_object_get(meta, "category");
        if (json_is_string(mc)) snprintf(cat, sizeof cat, "%s", json_string_value(mc));
    } else if (is_irrelevance(cat)) {
        calls = json_array();
    } else {
        return kd_error_set(err, KD_ERR_INVALID,
                            "%s: answer '%s' has neither \"ground_truth\" (BFCL possible_answer) nor "
                            "\"metadata\": {\"tool_calls\"} (synthesizer prompt set)",
                            where, id);
    }
    if (json_object_get(s->answers, id)) {
        json_decref(calls);
        return kd_error_set(err, KD_ERR_INVALID, "%s: answer id '%s' appears twice", where, id);
    }
    json_object_set_new(s->answers, id, json_pack("{s:o, s:s}", "calls", calls, "category", cat));
    return KD_OK;
}

static int add_tools_record(kd_scorer *s, json_t *rec, const char *where, kd_error *err) {
    const json_t *tools = json_object_get(rec, "function");
    if (!tools) tools = json_object_get(rec, "tools");
    if (!tools) return KD_OK; /* a prompt without tools: calls are checked against the answer alone */
    kd_registry *reg = NULL;
    char src[600];
    snprintf(src, sizeof src, "%s: tools", where);
    if (kd_registry_from_json(&reg, tools, src, err)) return err ? err->code : KD_ERR_INVALID;
    kd_registry **grown = kd_reallocarray(s->regs, (size_t)s->nregs + 1, sizeof *grown);
    if (!grown) {
        kd_registry_close(reg);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory loading %s", where);
    }
    s->regs = grown;
    s->regs[s->nregs] = reg;
    json_object_set_new(s->reg_index, json_string_value(json_object_get(rec, "id")), json_integer(s->nregs));
    s->nregs++;
    return KD_OK;
}

/* A registry file is one JSON document (array or {"tools"}); anything else is read as a prompt set. */
static int load_tools(kd_scorer *s, const char *path, kd_error *err) {
    json_error_t je;
    json_t *doc = json_load_file(path, JSON_DECODE_ANY, &je);
    int whole = doc && (json_is_array(doc) || (json_is_object(doc) && json_object_get(doc, "tools") &&
                                               !json_object_get(doc, "id")));
    json_decref(doc);
    if (whole) {
        if (kd_registry_open(&s->global, err)) return err ? err->code : KD_ERR_NOMEM;
        return kd_registry_load_file(s->global, path, err);
    }
    return each_line(s, path, add_tools_record, err);
}

int kd_scorer_open(kd_scorer **out, const char *answers_path, const char *tools_path, kd_error *err) {
    *out = NULL;
    kd_scorer *s = kd_calloc(1, sizeof *s);
    if (!s) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    s->answers = json_object();
    s->seen = json_object();
    s->reg_index = json_object();
    s->cats = json_object();
    s->answers_path = kd_strdup(answers_path);
    int rc = each_line(s, answers_path, add_answer, err);
    if (rc == KD_OK && json_object_size(s->answers) == 0)
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: no answers found (expected JSON Lines with \"id\")", answers_path);
    if (rc == KD_OK && tools_path) rc = load_tools(s, tools_path, err);
    if (rc) {
        kd_scorer_close(s);
        return rc;
    }
    *out = s;
    return KD_OK;
}

void kd_scorer_close(kd_scorer *s) {
    if (!s) return;
    json_decref(s->answers);
    json_decref(s->seen);
    json_decref(s->reg_index);
    json_decref(s->cats);
    kd_registry_close(s->global);
    for (int i = 0; i < s->nregs; i++) kd_registry_close(s->regs[i]);
    free(s->regs);
    free(s->cat_tallies);
    free(s->answers_path);
    free(s);
}

/* ---------- scoring ---------- */

typedef struct pcall {
    const char *name;  /* NULL when the call has no string name */
    json_t *args;      /* owned; NULL when the arguments are not a JSON object */
} pcall;

static const kd_registry *registry_for(const kd_scorer *s, const char *id) {
    const json_t *ix = json_object_get(s->reg_index, id);
    if (ix) return s->regs[json_integer_value(ix)];
    return s->global;
}

static tally *category_tally(kd_scorer *s, const char *cat) {
    const json_t *ix = json_object_get(s->cats, cat);
    if (ix) return &s->cat_tallies[json_integer_value(ix)];
    tally *grown = kd_reallocarray(s->cat_tallies, (size_t)s->ncats + 1, sizeof *grown);
    if (!grown) return NULL;
    s->cat_tallies = grown;
    memset(&grown[s->ncats], 0, sizeof *grown);
    json_object_set_new(s->cats, cat, json_integer(s->ncats));
    return &grown[s->ncats++];
}

static int cmp_str(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return strcmp(x ? x : "", y ? y : "");
}

static void score_item(const kd_scorer *s, const char *id, const json_t *expected, const pcall *calls, size_t n,
                       kd_score_item *it) {
    const kd_registry *reg = registry_for(s, id);
    size_t ne = json_array_size(expected);
    it->reason[0] = 0;
    for (int m = 0; m < KD_SCORE_NMETRICS; m++) it->verdict[m] = -1;

    if (n > 0) {
        int ok = 1;
        for (size_t i = 0; i < n; i++) ok &= calls[i].args != NULL;
        it->verdict[KD_SCORE_JSON] = ok;
        if (reg) {
            ok = 1;
            for (size_t i = 0; ok && i < n; i++) {
                const kd_tool *t = calls[i].name ? kd_registry_find(reg, calls[i].name) : NULL;
                ok = t && calls[i].args && kd_registry_validate(t, calls[i].args, NULL) == KD_OK;
            }
            it->verdict[KD_SCORE_SCHEMA] = ok;
        }
    }
    if (ne == 0) {
        it->verdict[KD_SCORE_NO_CALL] = n == 0;
        it->verdict[KD_SCORE_AST] = n == 0;
        if (n) why_set(it->reason, sizeof it->reason, "expected no call, got %zu", n);
        return;
    }

    /* tool names as multisets */
    const char **pn = calloc(n + 1, sizeof *pn), **en = calloc(ne + 1, sizeof *en);
    if (!pn || !en) {
        free(pn);
        free(en);
        it->verdict[KD_SCORE_TOOL_NAME] = it->verdict[KD_SCORE_AST] = 0;
        why_set(it->reason, sizeof it->reason, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) pn[i] = calls[i].name;
    for (size_t i = 0; i < ne; i++) {
        void *iter = json_object_iter(json_array_get(expected, i));
        en[i] = iter ? json_object_iter_key(iter) : NULL;
    }
    int names_ok = n == ne;
    if (names_ok) {
        qsort(pn, n, sizeof *pn, cmp_str);
        qsort(en, ne, sizeof *en, cmp_str);
        for (size_t i = 0; names_ok && i < n; i++) names_ok = pn[i] && en[i] && strcmp(pn[i], en[i]) == 0;
    }
    free(pn);
    free(en);
    it->verdict[KD_SCORE_TOOL_NAME] = names_ok;

    if (n != ne) {
        it->verdict[KD_SCORE_AST] = 0;
        why_set(it->reason, sizeof it->reason, "wrong number of calls: %zu, expected %zu", n, ne);
        return;
    }
    /* BFCL's no-order matching: each expected call takes the first unmatched prediction that passes */
    char *used = calloc(n + 1, 1);
    int ok = used != NULL;
    for (size_t i = 0; ok && i < ne; i++) {
        const json_t *ans = json_array_get(expected, i);
        void *iter = json_object_iter((json_t *)ans);
        const char *fn = iter ? json_object_iter_key(iter) : NULL;
        const kd_tool *t = (reg && fn) ? kd_registry_find(reg, fn) : NULL;
        char why[512] = "", first[512] = "";
        int found = 0;
        for (size_t j = 0; j < n && !found; j++) {
            if (used[j]) continue;
            if (kd_score_check_call(t ? t->parameters : NULL, calls[j].name, calls[j].args, ans, why, sizeof why)) {
                used[j] = 1;
                found = 1;
            } else if (!first[0] || (calls[j].name && fn && strcmp(calls[j].name, fn) == 0)) {
                memcpy(first, why, sizeof first); /* prefer the reason from a call with the right name */
            }
        }
        if (!found) {
            ok = 0;
            why_set(it->reason, sizeof it->reason, "%s", first[0] ? first : "no matching call");
        }
    }
    free(used);
    it->verdict[KD_SCORE_AST] = ok;
}

static void tally_add(tally *t, const kd_score_item *it) {
    if (!t) return;
    t->count++;
    for (int m = 0; m < KD_SCORE_NMETRICS; m++) {
        if (it->verdict[m] < 0) continue;
        t->applies[m]++;
        t->pass[m] += it->verdict[m];
    }
}

/* Raw model output: every call the extractor finds, in text order. A call whose arguments do not
 * parse (cut off, single quotes ...) is kept with args NULL: it counts against JSON validity. */
static int parse_text(const json_t *text, const kd_registry *reg, const char *where, pcall **out, size_t *nout,
                      char ***names, kd_error *err) {
    kd_tool_calls found = {0};
    const char *t = json_string_value(text);
    int rc = kd_extract_tool_calls(t, json_string_length(text), reg, &found, err);
    if (rc) {
        kd_tool_calls_free(&found);
        return kd_error_prefix(err, "%s: extracting tool calls from \"text\"", where);
    }
    pcall *calls = calloc(found.count + 1, sizeof *calls);
    char **owned = calloc(found.count + 1, sizeof *owned);
    if (!calls || !owned) {
        free(calls);
        free(owned);
        kd_tool_calls_free(&found);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < found.count; i++) {
        kd_tool_call *c = &found.v[i];
        owned[i] = c->name_text ? kd_strdup(c->name_text) : NULL;
        calls[i].name = owned[i];
        if (c->json_valid && json_is_object(c->args)) calls[i].args = json_incref(c->args);
    }
    *out = calls;
    *nout = found.count;
    *names = owned;
    kd_tool_calls_free(&found);
    return KD_OK;
}

static int parse_calls(const json_t *pred, const kd_registry *reg, const char *where, pcall **out, size_t *nout,
                       char ***names, kd_error *err) {
    const json_t *tc = json_object_get(pred, "tool_calls");
    const json_t *text = json_object_get(pred, "text");
    *out = NULL;
    *nout = 0;
    *names = NULL;
    if (!tc && text) {
        if (!json_is_string(text)) return kd_error_set(err, KD_ERR_INVALID, "%s: \"text\" must be a string", where);
        return parse_text(text, reg, where, out, nout, names, err);
    }
    if (tc && json_is_null(tc)) tc = NULL;
    if (tc && !json_is_array(tc))
        return kd_error_set(err, KD_ERR_INVALID, "%s: \"tool_calls\" must be a list of {\"name\", \"arguments\"}", where);
    if (!tc) {
        if (!json_object_get(pred, "tool_calls"))
            return kd_error_set(err, KD_ERR_INVALID,
                                "%s: prediction has neither \"tool_calls\" nor \"text\" (use \"tool_calls\": [] for no call)",
                                where);
        return KD_OK;
    }
    size_t n = json_array_size(tc);
    pcall *calls = calloc(n + 1, sizeof *calls);
    if (!calls) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(tc, i);
        const json_t *fnw = json_object_get(c, "function");
        if (json_is_object(fnw)) c = fnw;
        const json_t *name = json_object_get(c, "name");
        const json_t *args = json_object_get(c, "arguments");
        calls[i].name = json_is_string(name) ? json_string_value(name) : NULL;
        if (json_is_object(args)) {
            calls[i].args = json_incref((json_t *)args);
        } else if (json_is_string(args)) {
            json_t *p = json_loads(json_string_value(args), 0, NULL);
            if (json_is_object(p)) calls[i].args = p;
            else json_decref(p);
        }
    }
    *out = calls;
    *nout = n;
    return KD_OK;
}

void kd_scorer_set_details(kd_scorer *s, FILE *f) { s->details = f; }

static void record(kd_scorer *s, const char *id, const char *cat, const kd_score_item *it) {
    if (s->details) {
        json_t *d = json_pack("{s:s, s:s}", "id", id, "category", cat);
        for (int m = 0; m < KD_SCORE_NMETRICS; m++)
            json_object_set_new(d, kd_score_metric_names[m], it->verdict[m] < 0 ? json_null() : json_boolean(it->verdict[m]));
        json_object_set_new(d, "reason", json_string(it->reason));
        json_dumpf(d, s->details, JSON_COMPACT);
        fputc('\n', s->details);
        json_decref(d);
    }
    tally_add(&s->all, it);
    tally_add(category_tally(s, cat), it);
}

int kd_scorer_add(kd_scorer *s, const json_t *pred, const char *where, kd_score_item *item, kd_error *err) {
    const json_t *idj = json_object_get(pred, "id");
    if (!json_is_string(idj)) return kd_error_set(err, KD_ERR_INVALID, "%s: prediction has no string \"id\"", where);
    const char *id = json_string_value(idj);
    if (json_object_get(s->seen, id))
        return kd_error_set(err, KD_ERR_INVALID, "%s: prediction id '%s' appears twice", where, id);
    const json_t *ans = json_object_get(s->answers, id);
    char cat[64];
    json_t *no_calls = NULL;
    if (ans) {
        snprintf(cat, sizeof cat, "%s", json_string_value(json_object_get(ans, "category")));
    } else {
        category_of(id, cat, sizeof cat);
        if (!is_irrelevance(cat))
            return kd_error_set(err, KD_ERR_NOTFOUND,
                                "%s: prediction id '%s' has no answer in %s (only irrelevance items may lack one)",
                                where, id, s->answers_path);
        no_calls = json_array();
    }
    pcall *calls = NULL;
    size_t n = 0;
    char **names = NULL;
    int rc = parse_calls(pred, registry_for(s, id), where, &calls, &n, &names, err);
    if (rc) {
        json_decref(no_calls);
        return rc;
    }
    kd_score_item local, *it = item ? item : &local;
    snprintf(it->category, sizeof it->category, "%s", cat);
    score_item(s, id, ans ? json_object_get(ans, "calls") : no_calls, calls, n, it);
    for (size_t i = 0; i < n; i++) {
        json_decref(calls[i].args);
        if (names) free(names[i]);
    }
    free(names);
    free(calls);
    json_decref(no_calls);
    json_object_set_new(s->seen, id, json_true());
    record(s, id, cat, it);
    return KD_OK;
}

static int add_pred_line(kd_scorer *s, json_t *rec, const char *where, kd_error *err) {
    return kd_scorer_add(s, rec, where, NULL, err);
}

int kd_scorer_add_file(kd_scorer *s, const char *path, kd_error *err) { return each_line(s, path, add_pred_line, err); }

/* ---------- report ---------- */

static json_t *tally_json(const tally *t) {
    json_t *o = json_object();
    for (int m = 0; m < KD_SCORE_NMETRICS; m++)
        json_object_set_new(o, kd_score_metric_names[m],
                            t->applies[m] ? json_real((double)t->pass[m] / (double)t->applies[m]) : json_null());
    json_object_set_new(o, "count", json_integer(t->count));
    return o;
}

json_t *kd_scorer_report(kd_scorer *s) {
    /* answers nobody predicted count as "no call" (what an empty model output is) */
    const char *id;
    json_t *ans;
    json_object_foreach(s->answers, id, ans) {
        if (json_object_get(s->seen, id)) continue;
        kd_score_item it;
        const char *cat = json_string_value(json_object_get(ans, "category"));
        snprintf(it.category, sizeof it.category, "%s", cat);
        score_item(s, id, json_object_get(ans, "calls"), NULL, 0, &it);
        json_object_set_new(s->seen, id, json_true());
        record(s, id, cat, &it);
        s->missing++;
    }
    json_t *rep = tally_json(&s->all);
    json_object_set_new(rep, "missing", json_integer(s->missing));
    json_t *by = json_object();
    const char *cat;
    json_t *ix;
    json_object_foreach(s->cats, cat, ix) json_object_set_new(by, cat, tally_json(&s->cat_tallies[json_integer_value(ix)]));
    json_object_set_new(rep, "by_category", by);
    return rep;
}

static void md_row(char **buf, size_t *len, size_t *cap, const char *name, const json_t *t) {
    char row[512];
    int o = snprintf(row, sizeof row, "| %s | %lld |", name, (long long)json_integer_value(json_object_get(t, "count")));
    for (int m = 0; m < KD_SCORE_NMETRICS; m++) {
        const json_t *v = json_object_get(t, kd_score_metric_names[m]);
        if (json_is_number(v)) o += snprintf(row + o, sizeof row - (size_t)o, " %.1f%% |", 100.0 * json_number_value(v));
        else o += snprintf(row + o, sizeof row - (size_t)o, " – |");
    }
    snprintf(row + o, sizeof row - (size_t)o, "\n");
    size_t rl = strlen(row);
    if (*len + rl + 1 > *cap) {
        size_t nc = (*cap + rl + 1) * 2;
        char *g = realloc(*buf, nc);
        if (!g) return;
        *buf = g;
        *cap = nc;
    }
    memcpy(*buf + *len, row, rl + 1);
    *len += rl;
}

char *kd_score_markdown(const json_t *report) {
    static const char head[] = "| category | count | tool name | JSON valid | schema valid | AST | no call |\n"
                               "|---|---:|---:|---:|---:|---:|---:|\n";
    size_t cap = 4096, len = strlen(head);
    char *buf = malloc(cap);
    if (!buf) return NULL;
    memcpy(buf, head, len + 1);
    const char *cat;
    json_t *t;
    const json_t *cats = json_object_get(report, "by_category");
    /* one category named "all" (unlabelled items) is the total row itself: print it once */
    if (!(json_object_size(cats) == 1 && json_object_get(cats, "all")))
        json_object_foreach((json_t *)cats, cat, t) md_row(&buf, &len, &cap, cat, t);
    md_row(&buf, &len, &cap, "**all**", report);
    return buf;
}
