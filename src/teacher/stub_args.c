/* The stub teacher: finding values in a prompt (quoted strings, URLs, paths, e-mail addresses, dates,
 * numbers, cities, languages) and filling a tool's arguments from them by schema; see stub_internal.h. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stub_internal.h"

/* ---- argument extraction from the prompt ---- */

/* i-th "quoted" or 'quoted' or `quoted` string. */
int stub_nth_quoted(const char *text, int i, span *out) {
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
int stub_find_token(const char *text, int (*pred)(const char *, size_t), span *out, int nth) {
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

int stub_pred_url(const char *b, size_t n) { return (n > 8 && strncmp(b, "http://", 7) == 0) || (n > 9 && strncmp(b, "https://", 8) == 0); }

int stub_pred_path(const char *b, size_t n) {
    if (stub_pred_url(b, n)) return 0;
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

int stub_pred_email(const char *b, size_t n) {
    const char *at = memchr(b, '@', n);
    return at && at > b && memchr(at, '.', (size_t)(b + n - at)) != NULL;
}

int stub_pred_date(const char *b, size_t n) {
    return n == 10 && isdigit((unsigned char)b[0]) && isdigit((unsigned char)b[3]) && b[4] == '-' && b[7] == '-' &&
           isdigit((unsigned char)b[9]);
}

int stub_pred_time(const char *b, size_t n) {
    return (n == 5 && isdigit((unsigned char)b[0]) && isdigit((unsigned char)b[1]) && b[2] == ':' && isdigit((unsigned char)b[3])) ||
           (n == 4 && isdigit((unsigned char)b[0]) && b[1] == ':' && isdigit((unsigned char)b[2]));
}

int stub_pred_ticker(const char *b, size_t n) {
    if (n < 2 || n > 5) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isupper((unsigned char)b[i])) return 0;
    /* common words in capitals that are not tickers */
    static const char *no[] = {"I", "OK", "USD", "EUR", "GBP", "JPY", "PDF", "CSV", "JSON", "URL", "API", "UTC", "AM", "PM", NULL};
    for (int i = 0; no[i]; i++)
        if (strlen(no[i]) == n && strncmp(no[i], b, n) == 0) return 0;
    return 1;
}

int stub_pred_number(const char *b, size_t n) {
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
int stub_find_expression(const char *text, span *out) {
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

const char *STUB_CITIES[] = {"Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "New York", "San Francisco",
                               "Sydney", "Toronto", "Chicago", "Boston", "Seattle", "Amsterdam", "Vienna", "Zurich",
                               "Oslo", "Lisbon", "Dublin", "Prague", "Cairo", "Mumbai", "Delhi", "Beijing", "Seoul",
                               "Singapore", "Moscow", "Istanbul", "Nairobi", "Lima", "Austin", "Denver", "Miami",
                               "Montreal", "Stockholm", "Helsinki", "Copenhagen", "Warsaw", "Athens", "Bangkok", NULL};
const char *STUB_LANGS[] = {"English", "Spanish", "French", "German", "Italian", "Portuguese", "Japanese", "Chinese",
                              "Korean", "Russian", "Arabic", "Dutch", "Swedish", "Polish", "Turkish", "Hindi", NULL};
static const char *UNITS[] = {"kilometers", "kilometres", "km", "miles", "meters", "metres", "feet", "inches", "cm",
                              "centimeters", "kilograms", "kg", "pounds", "lb", "grams", "ounces", "liters",
                              "litres", "gallons", "celsius", "fahrenheit", "kelvin", "hours", "minutes", "seconds",
                              "days", "mph", "kph", "yards", "mm", NULL};

const char *stub_ci_find(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0 && (p == hay || !isalnum((unsigned char)p[-1])) && !isalnum((unsigned char)p[n]))
            return p;
    return NULL;
}

/* First word of `list` found in text (the earliest occurrence after `after` when given). */
const char *stub_find_listed(const char *text, const char **list, const char *after, const char **at) {
    const char *best = NULL, *bp = NULL;
    for (int i = 0; list[i]; i++) {
        const char *p = stub_ci_find(after ? after : text, list[i]);
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
        const char *p = stub_ci_find(text, triggers[i]);
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
    stub_split_words(pname, &pw, 0);
    stub_split_words(pdesc ? pdesc : "", &pw, 1);
    span s;
    for (int i = 0; i < 16 && stub_find_token(a->text, stub_pred_number, &s, i); i++) {
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
        stub_stem(after);
        stub_stem(before);
        if ((after[0] && stub_has_word(&pw, after)) || (before[0] && stub_has_word(&pw, before))) {
            a->numbers_used[a->n_numbers_used++] = i;
            *out = s;
            return 1;
        }
    }
    return 0;
}

static int first_free_number(argctx *a, span *out) {
    span s;
    for (int i = 0; i < 16 && stub_find_token(a->text, stub_pred_number, &s, i); i++) {
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
            if (json_is_string(v) && stub_ci_find(text, json_string_value(v))) return json_incref((json_t *)v);
        }
        return required && json_array_size(en) ? json_incref(json_array_get(en, 0)) : NULL;
    }
    if (name_has(pname, "url")) return stub_find_token(text, stub_pred_url, &s, 0) ? span_str(s) : NULL;
    if (name_has(pname, "path") || name_has(pname, "file") || strcmp(pname, "cwd") == 0) {
        if (stub_find_token(text, stub_pred_path, &s, 0)) return span_str(s);
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
        if (stub_find_token(text, stub_pred_date, &s, which)) return span_str(s);
        if (which && stub_find_token(text, stub_pred_date, &s, 0)) return span_str(s);
        if (stub_ci_find(text, "tomorrow")) return json_string("tomorrow");
        return required ? json_string("today") : NULL;
    }
    if (name_has(pname, "time") && !name_has(pname, "timeout")) return stub_find_token(text, stub_pred_time, &s, 0) ? span_str(s) : NULL;
    if (strcmp(pname, "city") == 0 || strcmp(pname, "location") == 0) {
        const char *c = stub_find_listed(text, STUB_CITIES, NULL, NULL);
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
    if (name_has(pname, "symbol")) return stub_find_token(text, stub_pred_ticker, &s, 0) ? span_str(s) : (required ? json_string("AAPL") : NULL);
    if (name_has(pname, "language")) {
        if (name_has(pname, "source")) {
            static const char *trig[] = {"from ", NULL};
            if (text_after(text, trig, &s)) {
                const char *l = stub_find_listed(s.p, STUB_LANGS, NULL, NULL);
                if (l && stub_ci_find(s.p, l) == s.p) return json_string(l);
            }
            return NULL;
        }
        const char *at = NULL;
        const char *into = stub_ci_find(text, "into");
        if (!into) into = stub_ci_find(text, "to");
        const char *l = stub_find_listed(text, STUB_LANGS, into, &at);
        if (!l) l = stub_find_listed(text, STUB_LANGS, NULL, &at);
        return l ? json_string(l) : (required ? json_string("English") : NULL);
    }
    if (strcmp(pname, "from_unit") == 0 || strcmp(pname, "to_unit") == 0) {
        const char *at = NULL;
        const char *u1 = stub_find_listed(text, UNITS, NULL, &at);
        if (strcmp(pname, "from_unit") == 0) return u1 ? json_string(u1) : json_string("meters");
        const char *u2 = u1 ? stub_find_listed(text, UNITS, at + strlen(u1), NULL) : NULL;
        return u2 ? json_string(u2) : json_string("feet");
    }
    if (strcmp(pname, "from") == 0 || strcmp(pname, "sender") == 0)
        return stub_find_token(text, stub_pred_email, &s, 0) ? span_str(s) : NULL;
    if (strcmp(pname, "expression") == 0) {
        if (stub_nth_quoted(text, a->quoted_used, &s)) {
            a->quoted_used++;
            return span_str(s);
        }
        return stub_find_expression(text, &s) ? span_str(s) : (required ? json_string("0") : NULL);
    }
    if (strcmp(pname, "pattern") == 0) {
        span t;
        for (int i = 0; stub_find_token(text, stub_pred_path, &t, i); i++)
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
    if (stub_nth_quoted(text, a->quoted_used, &s)) {
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
            stub_stem(w);
            words tw;
            stub_split_words(text, &tw, 0);
            if (stub_has_word(&tw, w)) v = json_true();
            else if (required) v = json_false();
        } else if (strcmp(type, "array") == 0) {
            const json_t *items = json_object_get(schema, "items");
            const char *it = json_string_value(json_object_get(items, "type"));
            if (!it || strcmp(it, "string") == 0) {
                json_t *arr = json_array();
                int cc = strcmp(pname, "cc") == 0;
                /* emails: "to"/"attendees" take those before "cc", "cc" those after it */
                const char *ccp = stub_ci_find(text, "cc");
                for (int i = 0; i < 8 && stub_find_token(text, stub_pred_email, &s, i); i++) {
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
