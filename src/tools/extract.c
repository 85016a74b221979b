/* Tool-call extraction: see include/kdstep/extract.h and docs/extraction.md.
 *
 * One pass over the text finds markers (<tool_call>, <functioncall>, <|python_tag|>, <think>) and
 * candidate objects ('{'). Each candidate is parsed by a small span-keeping JSON parser that also
 * takes single-quoted string values (glaive) and stops where the text stops being JSON, keeping
 * what it read so far: a cut-off call is still found with its name and the start of its arguments.
 * Jansson then decides whether the arguments are valid JSON. */
#include "kdstep/extract.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { JN_OBJ, JN_ARR, JN_STR, JN_SQSTR, JN_NUM, JN_LIT };

typedef struct jnode {
    int type;
    int complete;
    size_t start, end; /* value bytes; strings include their quotes */
    int first_child, next;
    size_t key_start, key_end; /* member key (inside its quotes) when the parent is an object */
    int has_key;
} jnode;

typedef struct jparser {
    const char *s;
    size_t len, pos;
    jnode *nodes;
    int n, cap;
    int depth;
    int failed;
    size_t fail_pos;
    int nomem;
} jparser;

#define KD_JSON_MAX_DEPTH 128

static int jp_new(jparser *p, int type, size_t start) {
    if (p->n == p->cap) {
        int ncap = p->cap ? p->cap * 2 : 64;
        jnode *nn = realloc(p->nodes, sizeof(jnode) * (size_t)ncap);
        if (!nn) {
            p->nomem = 1;
            return -1;
        }
        p->nodes = nn;
        p->cap = ncap;
    }
    jnode *nd = &p->nodes[p->n];
    memset(nd, 0, sizeof *nd);
    nd->type = type;
    nd->start = start;
    nd->first_child = nd->next = -1;
    return p->n++;
}

static void jp_ws(jparser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->pos++;
        else break;
    }
}

static void jp_fail(jparser *p) {
    if (!p->failed) {
        p->failed = 1;
        p->fail_pos = p->pos;
    }
}

/* At an opening quote q; leaves pos after the closing quote. 0 ok, -1 failed. */
static int jp_string(jparser *p, char q) {
    p->pos++;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == (unsigned char)q) {
            p->pos++;
            return 0;
        }
        if (c == '\\') {
            if (p->pos + 1 >= p->len) break;
            p->pos += 2;
            continue;
        }
        if (c < 0x20 && q == '"') break; /* raw control characters end a JSON string: prose, not JSON */
        p->pos++;
    }
    jp_fail(p);
    return -1;
}

static int jp_value(jparser *p, int allow_sq);

static void jp_link(jparser *p, int parent, int *last, int child) {
    if (*last < 0) p->nodes[parent].first_child = child;
    else p->nodes[*last].next = child;
    *last = child;
}

/* Parse one value at pos. Returns its node, or -1 when none could start. On failure the node (and
 * each ancestor, as the recursion unwinds) is left incomplete with end = the failure position. */
static int jp_value(jparser *p, int allow_sq) {
    jp_ws(p);
    if (p->pos >= p->len) {
        jp_fail(p);
        return -1;
    }
    char c = p->s[p->pos];
    int id;
    if (c == '{' || c == '[') {
        int is_obj = c == '{';
        id = jp_new(p, is_obj ? JN_OBJ : JN_ARR, p->pos);
        if (id < 0) return -1;
        if (++p->depth > KD_JSON_MAX_DEPTH) {
            jp_fail(p);
            p->depth--;
            p->nodes[id].end = p->pos;
            return id;
        }
        p->pos++;
        int last = -1;
        jp_ws(p);
        if (p->pos < p->len && p->s[p->pos] == (is_obj ? '}' : ']')) {
            p->pos++;
            p->nodes[id].complete = 1;
        } else {
            for (;;) {
                size_t ks = 0, ke = 0;
                if (is_obj) {
                    jp_ws(p);
                    if (p->pos >= p->len || p->s[p->pos] != '"') {
                        jp_fail(p);
                        break;
                    }
                    ks = p->pos + 1;
                    if (jp_string(p, '"')) break;
                    ke = p->pos - 1;
                    jp_ws(p);
                    if (p->pos >= p->len || p->s[p->pos] != ':') {
                        jp_fail(p);
                        break;
                    }
                    p->pos++;
                }
                int child = jp_value(p, allow_sq);
                if (p->nomem) return -1;
                if (child >= 0) {
                    p->nodes[child].has_key = is_obj;
                    p->nodes[child].key_start = ks;
                    p->nodes[child].key_end = ke;
                    jp_link(p, id, &last, child);
                }
                if (p->failed) break;
                jp_ws(p);
                if (p->pos < p->len && p->s[p->pos] == ',') {
                    p->pos++;
                    continue;
                }
                if (p->pos < p->len && p->s[p->pos] == (is_obj ? '}' : ']')) {
                    p->pos++;
                    p->nodes[id].complete = 1;
                    break;
                }
                jp_fail(p);
                break;
            }
        }
        p->depth--;
        p->nodes[id].end = p->nodes[id].complete ? p->pos : p->fail_pos;
        return id;
    }
    if (c == '"' || (c == '\'' && allow_sq)) {
        id = jp_new(p, c == '"' ? JN_STR : JN_SQSTR, p->pos);
        if (id < 0) return -1;
        p->nodes[id].complete = jp_string(p, c) == 0;
        p->nodes[id].end = p->nodes[id].complete ? p->pos : p->fail_pos;
        return id;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        id = jp_new(p, JN_NUM, p->pos);
        if (id < 0) return -1;
        while (p->pos < p->len && strchr("+-0123456789.eE", p->s[p->pos]) && p->s[p->pos]) p->pos++;
        p->nodes[id].complete = 1;
        p->nodes[id].end = p->pos;
        return id;
    }
    static const char *const lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if (p->len - p->pos >= n && memcmp(p->s + p->pos, lits[i], n) == 0) {
            id = jp_new(p, JN_LIT, p->pos);
            if (id < 0) return -1;
            p->pos += n;
            p->nodes[id].complete = 1;
            p->nodes[id].end = p->pos;
            return id;
        }
    }
    jp_fail(p);
    return -1;
}

/* ---- calls ---- */

const char *kd_call_format_name(kd_call_format f) {
    switch (f) {
    case KD_CALL_INLINE_JSON: return "inline_json";
    case KD_CALL_HERMES: return "hermes";
    case KD_CALL_OPENAI: return "openai";
    case KD_CALL_LLAMA: return "llama";
    case KD_CALL_GLAIVE: return "glaive";
    }
    return "?";
}

void kd_tool_calls_free(kd_tool_calls *c) {
    if (!c) return;
    for (size_t i = 0; i < c->count; i++) {
        free(c->v[i].name_text);
        free(c->v[i].schema_error);
        json_decref(c->v[i].args);
    }
    free(c->v);
    memset(c, 0, sizeof *c);
}

static int key_is(const jparser *p, const jnode *n, const char *k) {
    size_t kl = strlen(k);
    return n->has_key && n->key_end - n->key_start == kl && memcmp(p->s + n->key_start, k, kl) == 0;
}

typedef struct ctx {
    const char *text;
    size_t len;
    const kd_registry *reg;
    kd_tool_calls *out;
    kd_call_format marker_fmt; /* format implied by the marker in force, or -1 */
    int has_marker;
    size_t last_call_end;
    int found;
} ctx;

static char *dup_error(const char *fmt, const char *a, const char *b) {
    char buf[KD_ERROR_MSG_MAX];
    snprintf(buf, sizeof buf, fmt, a, b);
    return strdup(buf);
}

/* Parse the arguments as written; sets c->args / json_valid or c->schema_error. */
static void check_arguments(const char *text, const jnode *a, kd_tool_call *c) {
    json_error_t je;
    json_t *v = NULL;
    char *owned = NULL;
    je.text[0] = 0;
    if (!a->complete) {
        c->schema_error = strdup("arguments are cut off: the JSON does not end");
        return;
    }
    if (a->type == JN_OBJ || a->type == JN_ARR) {
        v = json_loadb(text + a->start, a->end - a->start, 0, &je);
    } else if (a->type == JN_STR) {
        json_t *s = json_loadb(text + a->start, a->end - a->start, JSON_DECODE_ANY, &je);
        if (s && json_is_string(s)) v = json_loadb(json_string_value(s), json_string_length(s), 0, &je);
        json_decref(s);
    } else if (a->type == JN_SQSTR) {
        /* glaive writes arguments as a Python-style '...' literal holding JSON: only \' is an escape
         * of the literal; every other backslash belongs to the JSON inside */
        size_t n = a->end - a->start - 2, k = 0;
        owned = malloc(n + 1);
        if (owned) {
            for (size_t i = 0; i < n; i++) {
                const char *q = text + a->start + 1;
                if (q[i] == '\\' && i + 1 < n && q[i + 1] == '\'') continue;
                owned[k++] = q[i];
            }
            v = json_loadb(owned, k, 0, &je);
        }
    } else {
        snprintf(je.text, sizeof je.text, "arguments must be an object or a string holding one");
    }
    free(owned);
    if (v && json_is_object(v)) {
        c->args = v;
        c->json_valid = 1;
        return;
    }
    if (v) {
        json_decref(v);
        c->schema_error = strdup("arguments are valid JSON but not an object");
        return;
    }
    c->schema_error = dup_error("arguments are not valid JSON: %s%s", je.text, "");
}

/* name_quoted: [name_s, name_e) is a JSON string with its quotes; else the raw name bytes. */
static int emit_call(ctx *x, const jparser *p, kd_text_span call, size_t name_s, size_t name_e, int name_quoted, const jnode *args,
                     int via_function) {
    kd_tool_calls *o = x->out;
    if (o->count == o->cap) {
        size_t ncap = o->cap ? o->cap * 2 : 8;
        kd_tool_call *nv = realloc(o->v, sizeof(kd_tool_call) * ncap);
        if (!nv) return -1;
        o->v = nv;
        o->cap = ncap;
    }
    kd_tool_call *c = &o->v[o->count++];
    memset(c, 0, sizeof *c);
    const char *t = x->text;
    if (x->has_marker) c->format = x->marker_fmt;
    else if (via_function) c->format = KD_CALL_OPENAI;
    else if (key_is(p, args, "parameters")) c->format = KD_CALL_LLAMA;
    else c->format = KD_CALL_INLINE_JSON;
    c->call = call;
    c->name.start = name_s + (size_t)name_quoted;
    c->name.end = name_e - (size_t)name_quoted;
    if (args->complete && (args->type == JN_STR || args->type == JN_SQSTR)) {
        c->args_is_string = 1;
        c->arguments.start = args->start + 1;
        c->arguments.end = args->end - 1;
    } else {
        c->args_is_string = args->type == JN_STR || args->type == JN_SQSTR;
        c->arguments.start = args->start + (size_t)c->args_is_string;
        size_t e = args->end;
        while (e > c->arguments.start && (t[e - 1] == ' ' || t[e - 1] == '\t' || t[e - 1] == '\r' || t[e - 1] == '\n')) e--;
        c->arguments.end = e;
    }
    json_error_t je;
    json_t *ns = name_quoted ? json_loadb(t + name_s, name_e - name_s, JSON_DECODE_ANY, &je) : NULL;
    if (ns && json_is_string(ns)) c->name_text = strdup(json_string_value(ns));
    else c->name_text = kd_strndup(t + c->name.start, c->name.end - c->name.start);
    json_decref(ns);
    if (!c->name_text) return -1;
    const kd_tool *tool = x->reg ? kd_registry_find(x->reg, c->name_text) : NULL;
    c->registered = tool != NULL;
    check_arguments(t, args, c);
    if (!c->json_valid) {
        if (!c->schema_error) return -1;
    } else if (!tool) {
        c->schema_error = dup_error("tool '%s' is not registered%s", c->name_text, "");
    } else {
        kd_error e;
        if (kd_registry_validate(tool, c->args, &e) == KD_OK) c->schema_valid = 1;
        else c->schema_error = strdup(e.msg);
    }
    x->last_call_end = call.end;
    x->found++;
    return 0;
}

/* Walk a parsed value for call objects: {"name": "<string>", "arguments"|"parameters": ...}. A
 * call's own arguments are not searched (a call inside arguments is data, not a call). */
static int walk(ctx *x, const jparser *p, int id, int via_function) {
    const jnode *n = &p->nodes[id];
    if (n->type != JN_OBJ && n->type != JN_ARR) return 0;
    if (n->type == JN_OBJ) {
        const jnode *name = NULL, *args = NULL;
        for (int k = n->first_child; k >= 0; k = p->nodes[k].next) {
            const jnode *ch = &p->nodes[k];
            if (key_is(p, ch, "name") && ch->type == JN_STR && ch->complete) name = ch;
            else if (key_is(p, ch, "arguments") || key_is(p, ch, "parameters")) args = ch;
        }
        if (name && args) return emit_call(x, p, (kd_text_span){n->start, n->end}, name->start, name->end, 1, args, via_function);
    }
    for (int k = n->first_child; k >= 0; k = p->nodes[k].next)
        if (walk(x, p, k, n->type == JN_OBJ && key_is(p, &p->nodes[k], "function"))) return -1;
    return 0;
}

static int starts(const char *t, size_t len, size_t pos, const char *m) {
    size_t n = strlen(m);
    return len - pos >= n && memcmp(t + pos, m, n) == 0;
}

static const char *find_str(const char *t, size_t len, size_t from, const char *m) {
    if (from >= len) return NULL;
    return memmem(t + from, len - from, m, strlen(m));
}

int kd_extract_tool_calls(const char *text, size_t len, const kd_registry *reg, kd_tool_calls *out, kd_error *err) {
    ctx x = {.text = text, .len = len, .reg = reg, .out = out};
    jparser p = {.s = text, .len = len};
    int in_hermes = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *hit = NULL;
        for (size_t i = pos; i < len; i++)
            if (text[i] == '{' || text[i] == '<') {
                hit = text + i;
                break;
            }
        if (!hit) break;
        pos = (size_t)(hit - text);
        if (*hit == '<') {
            if (starts(text, len, pos, "<think>")) {
                const char *close = find_str(text, len, pos + 7, "</think>");
                pos = close ? (size_t)(close - text) + 8 : len;
            } else if (starts(text, len, pos, "<tool_call>")) {
                in_hermes = 1, x.has_marker = 1, x.marker_fmt = KD_CALL_HERMES;
                pos += 11;
            } else if (starts(text, len, pos, "</tool_call>")) {
                in_hermes = 0, x.has_marker = 0;
                pos += 12;
            } else if (starts(text, len, pos, "<functioncall>")) {
                x.has_marker = 1, x.marker_fmt = KD_CALL_GLAIVE;
                pos += 14;
            } else if (starts(text, len, pos, "<function=")) {
                /* Llama 3.1's custom-tool form: <function=NAME>{...}</function> */
                size_t ns = pos + 10, ne = ns;
                while (ne < len && (isalnum((unsigned char)text[ne]) || text[ne] == '_' || text[ne] == '.' || text[ne] == '-')) ne++;
                if (ne > ns && ne < len && text[ne] == '>') {
                    p.pos = ne + 1;
                    p.n = 0;
                    p.depth = 0;
                    p.failed = 0;
                    jp_ws(&p);
                    int root = p.pos < len && text[p.pos] == '{' ? jp_value(&p, 0) : -1;
                    if (p.nomem) {
                        free(p.nodes);
                        return kd_error_set(err, KD_ERR_NOMEM, "out of memory extracting tool calls");
                    }
                    if (root >= 0) {
                        int saved = x.has_marker;
                        kd_call_format sf = x.marker_fmt;
                        x.has_marker = 1, x.marker_fmt = KD_CALL_LLAMA;
                        if (emit_call(&x, &p, (kd_text_span){pos, p.nodes[root].end}, ns, ne, 0, &p.nodes[root], 0)) {
                            free(p.nodes);
                            return kd_error_set(err, KD_ERR_NOMEM, "out of memory extracting tool calls");
                        }
                        x.has_marker = saved, x.marker_fmt = sf;
                        pos = p.nodes[root].end > pos ? p.nodes[root].end : pos + 1;
                        continue;
                    }
                }
                pos++;
            } else if (starts(text, len, pos, "<|python_tag|>")) {
                x.has_marker = 1, x.marker_fmt = KD_CALL_LLAMA;
                pos += 14;
            } else {
                pos++;
            }
            continue;
        }
        p.pos = pos;
        p.n = 0;
        p.depth = 0;
        p.failed = 0;
        int found_before = x.found;
        int root = jp_value(&p, 1);
        if (p.nomem || (root >= 0 && walk(&x, &p, root, 0))) {
            free(p.nodes);
            return kd_error_set(err, KD_ERR_NOMEM, "out of memory extracting tool calls");
        }
        if (root >= 0 && p.nodes[root].complete) {
            pos = p.nodes[root].end;
        } else if (x.found > found_before) {
            pos = x.last_call_end > pos ? x.last_call_end : pos + 1;
        } else {
            pos++; /* not JSON from here: an inner '{' may still start a call */
        }
        /* a glaive marker introduces one call; <tool_call> and <|python_tag|> stay in force */
        if (x.found > found_before && x.has_marker && x.marker_fmt == KD_CALL_GLAIVE && !in_hermes) x.has_marker = 0;
    }
    free(p.nodes);
    return KD_OK;
}
