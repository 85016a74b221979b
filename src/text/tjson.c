/* Fast JSON DOM for tokenizer.json (see tjson.h). */
#include "tjson.h"

#include "kdstep/jsonw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TJ_MAX_DEPTH 256

typedef struct tj_parser {
    tj_doc *doc;
    char *s;
    size_t n, i;
    tj_val *stack;
    size_t sn, scap;
    char *msg;
    size_t msgcap;
    int failed;
    size_t arena_left;
    tj_val *arena_cur;
} tj_parser;

static void fail(tj_parser *p, size_t pos, const char *what) {
    if (p->failed) return;
    p->failed = 1;
    size_t line, col;
    tj_linecol(p->doc, pos, &line, &col);
    snprintf(p->msg, p->msgcap, "line %zu column %zu (byte %zu): %s", line, col, pos, what);
}

void tj_linecol(const tj_doc *doc, size_t pos, size_t *line, size_t *col) {
    size_t l = 1, c = 1;
    for (size_t k = 0; k < pos && k < doc->n; k++) {
        if (doc->buf[k] == '\n') l++, c = 1;
        else if (((unsigned char)doc->buf[k] & 0xC0) != 0x80) c++;
    }
    *line = l;
    *col = c;
}

static tj_val *arena_alloc(tj_parser *p, size_t n) {
    if (n == 0) return NULL;
    if (n > p->arena_left) {
        size_t want = p->n / 16 + 64; /* small documents get small blocks */
        if (want > (1u << 18)) want = 1u << 18;
        size_t sz = n > want ? n : want;
        tj_val *blk = malloc(sz * sizeof(tj_val));
        tj_val **nb = realloc(p->doc->blocks, (p->doc->nblocks + 1) * sizeof(*nb));
        if (!blk || !nb) {
            free(blk);
            if (nb) p->doc->blocks = nb;
            return NULL;
        }
        p->doc->blocks = nb;
        p->doc->blocks[p->doc->nblocks++] = blk;
        p->arena_cur = blk;
        p->arena_left = sz;
    }
    tj_val *r = p->arena_cur;
    p->arena_cur += n;
    p->arena_left -= n;
    return r;
}

static int push(tj_parser *p, const tj_val *v) {
    if (p->sn == p->scap) {
        size_t nc = p->scap ? p->scap * 2 : 1024;
        tj_val *ns = realloc(p->stack, nc * sizeof(tj_val));
        if (!ns) return -1;
        p->stack = ns;
        p->scap = nc;
    }
    p->stack[p->sn++] = *v;
    return 0;
}

static inline void skip_ws(tj_parser *p) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') p->i++;
        else break;
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(tj_parser *p, size_t at, unsigned *out) {
    if (at + 4 > p->n) return -1;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(p->s[at + k]);
        if (h < 0) return -1;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 0;
}

/* p->i is at the opening quote. Unescapes in place. */
static int parse_string(tj_parser *p, tj_val *v) {
    size_t start = p->i++;
    char *s = p->s;
    size_t r = p->i, w = p->i;
    /* fast path: scan to the quote or a backslash */
    while (r < p->n) {
        unsigned char c = (unsigned char)s[r];
        if (c == '"' || c == '\\' || c < 0x20) break;
        r++;
    }
    w = r;
    for (;;) {
        if (r >= p->n) {
            fail(p, start, "unterminated string (the file is truncated?)");
            return -1;
        }
        unsigned char c = (unsigned char)s[r];
        if (c == '"') break;
        if (c < 0x20) {
            fail(p, r, "control character in string");
            return -1;
        }
        if (c != '\\') {
            s[w++] = (char)c;
            r++;
            continue;
        }
        if (r + 1 >= p->n) {
            fail(p, start, "unterminated string (the file is truncated?)");
            return -1;
        }
        char e = s[r + 1];
        r += 2;
        switch (e) {
        case '"': s[w++] = '"'; break;
        case '\\': s[w++] = '\\'; break;
        case '/': s[w++] = '/'; break;
        case 'b': s[w++] = '\b'; break;
        case 'f': s[w++] = '\f'; break;
        case 'n': s[w++] = '\n'; break;
        case 'r': s[w++] = '\r'; break;
        case 't': s[w++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (read_hex4(p, r, &cp)) {
                fail(p, r - 2, "bad \\u escape");
                return -1;
            }
            r += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (r + 6 <= p->n && s[r] == '\\' && s[r + 1] == 'u' && !read_hex4(p, r + 2, &lo) && lo >= 0xDC00 &&
                    lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    r += 6;
                } else {
                    fail(p, r - 6, "lone surrogate in \\u escape");
                    return -1;
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                fail(p, r - 6, "lone surrogate in \\u escape");
                return -1;
            }
            if (cp < 0x80) s[w++] = (char)cp;
            else if (cp < 0x800) {
                s[w++] = (char)(0xC0 | (cp >> 6));
                s[w++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                s[w++] = (char)(0xE0 | (cp >> 12));
                s[w++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                s[w++] = (char)(0x80 | (cp & 0x3F));
            } else {
                s[w++] = (char)(0xF0 | (cp >> 18));
                s[w++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                s[w++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                s[w++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: fail(p, r - 2, "bad escape in string"); return -1;
        }
    }
    /* JSON text is UTF-8 (RFC 8259 section 8.1; HF's serde_json refuses anything else): a string with
     * a stray byte would otherwise load as some other token, e.g. lose a special token silently */
    size_t ok = kd_utf8_valid_prefix(s + start + 1, w - (start + 1));
    if (ok < w - (start + 1)) {
        fail(p, start + 1 + ok, "invalid UTF-8 in string");
        return -1;
    }
    s[w] = '\0'; /* w <= r, and r is the closing quote */
    v->type = TJ_STR;
    v->len = (uint32_t)(w - (start + 1));
    v->u.str = s + start + 1;
    v->pos = (uint32_t)start;
    p->i = r + 1;
    return 0;
}

static int parse_value(tj_parser *p, tj_val *v, int depth);

static int parse_container(tj_parser *p, tj_val *v, int depth, int is_obj) {
    size_t start = p->i++;
    size_t base = p->sn;
    uint32_t count = 0;
    char close = is_obj ? '}' : ']';
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == close) {
        p->i++;
    } else {
        for (;;) {
            tj_val item;
            skip_ws(p);
            if (is_obj) {
                if (p->i >= p->n) {
                    fail(p, p->i, "unexpected end of input (the file is truncated?)");
                    return -1;
                }
                if (p->s[p->i] != '"') {
                    fail(p, p->i, "expected a string key");
                    return -1;
                }
                if (parse_string(p, &item) || push(p, &item)) return -1;
                skip_ws(p);
                if (p->i >= p->n) {
                    fail(p, p->i, "unexpected end of input (the file is truncated?)");
                    return -1;
                }
                if (p->s[p->i] != ':') {
                    fail(p, p->i, "expected ':'");
                    return -1;
                }
                p->i++;
            }
            if (parse_value(p, &item, depth + 1) || push(p, &item)) return -1;
            count++;
            skip_ws(p);
            if (p->i >= p->n) {
                fail(p, p->i, "unexpected end of input (the file is truncated?)");
                return -1;
            }
            char c = p->s[p->i];
            if (c == ',') {
                p->i++;
                continue;
            }
            if (c == close) {
                p->i++;
                break;
            }
            fail(p, p->i, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
            return -1;
        }
    }
    size_t nitems = p->sn - base;
    tj_val *items = arena_alloc(p, nitems);
    if (nitems && !items) {
        fail(p, start, "out of memory");
        return -1;
    }
    if (nitems) memcpy(items, p->stack + base, nitems * sizeof(tj_val));
    p->sn = base;
    v->type = is_obj ? TJ_OBJ : TJ_ARR;
    v->len = count;
    v->u.items = items;
    v->pos = (uint32_t)start;
    return 0;
}

static int parse_value(tj_parser *p, tj_val *v, int depth) {
    skip_ws(p);
    if (p->i >= p->n) {
        fail(p, p->i, "unexpected end of input (the file is truncated?)");
        return -1;
    }
    if (depth > TJ_MAX_DEPTH) {
        fail(p, p->i, "nesting too deep");
        return -1;
    }
    char c = p->s[p->i];
    v->pos = (uint32_t)p->i;
    v->len = 0;
    switch (c) {
    case '{': return parse_container(p, v, depth, 1);
    case '[': return parse_container(p, v, depth, 0);
    case '"': return parse_string(p, v);
    case 't':
    case 'f':
    case 'n': {
        const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
        size_t wl = strlen(word);
        if (p->i + wl > p->n || memcmp(p->s + p->i, word, wl) != 0) {
            fail(p, p->i, p->i + wl > p->n ? "unexpected end of input (the file is truncated?)" : "invalid literal");
            return -1;
        }
        p->i += wl;
        v->type = c == 't' ? TJ_TRUE : c == 'f' ? TJ_FALSE : TJ_NULL;
        return 0;
    }
    default: {
        size_t j = p->i;
        if (j < p->n && p->s[j] == '-') j++;
        size_t digits = j;
        while (j < p->n && ((p->s[j] >= '0' && p->s[j] <= '9') || p->s[j] == '.' || p->s[j] == 'e' || p->s[j] == 'E' ||
                            p->s[j] == '+' || p->s[j] == '-'))
            j++;
        if (j == digits || !(p->s[digits] >= '0' && p->s[digits] <= '9')) {
            fail(p, p->i, "unexpected character");
            return -1;
        }
        char tmp[64];
        size_t L = j - p->i;
        if (L >= sizeof tmp) {
            fail(p, p->i, "number too long");
            return -1;
        }
        memcpy(tmp, p->s + p->i, L);
        tmp[L] = 0;
        char *end;
        v->u.num = strtod(tmp, &end);
        if (end != tmp + L) {
            fail(p, p->i, "invalid number");
            return -1;
        }
        v->type = TJ_NUM;
        p->i = j;
        return 0;
    }
    }
}

int tj_parse(tj_doc *doc, char *buf, size_t n, char *msg, size_t msgcap) {
    memset(doc, 0, sizeof *doc);
    doc->buf = buf;
    doc->n = n;
    tj_parser p = {.doc = doc, .s = buf, .n = n, .msg = msg, .msgcap = msgcap};
    if (msgcap) msg[0] = 0;
    if (n > 0xFFFFFFF0u) {
        snprintf(msg, msgcap, "file too large for a tokenizer.json");
        return -1;
    }
    /* a big vocabulary object is one container with ~n/36 items: size the stack once */
    p.scap = n / 32 + 1024;
    p.stack = malloc(p.scap * sizeof(tj_val));
    if (!p.stack) {
        snprintf(msg, msgcap, "out of memory");
        return -1;
    }
    tj_val *root = NULL;
    tj_val rv;
    int rc = parse_value(&p, &rv, 0);
    if (!rc) {
        skip_ws(&p);
        if (p.i != p.n) {
            fail(&p, p.i, "trailing characters after the JSON value");
            rc = -1;
        }
    }
    if (!rc) {
        root = arena_alloc(&p, 1);
        if (!root) {
            fail(&p, 0, "out of memory");
            rc = -1;
        } else {
            *root = rv;
        }
    }
    free(p.stack);
    doc->root = root;
    return rc ? -1 : 0;
}

void tj_free(tj_doc *doc) {
    for (size_t k = 0; k < doc->nblocks; k++) free(doc->blocks[k]);
    free(doc->blocks);
    free(doc->buf);
    memset(doc, 0, sizeof *doc);
}

const tj_val *tj_get(const tj_val *obj, const char *key) {
    if (!obj || obj->type != TJ_OBJ) return NULL;
    size_t kl = strlen(key);
    for (uint32_t k = 0; k < obj->len; k++) {
        const tj_val *kv = &obj->u.items[2 * k];
        if (kv->len == kl && memcmp(kv->u.str, key, kl) == 0) return &obj->u.items[2 * k + 1];
    }
    return NULL;
}
