/* Streaming JSON Lines prompt reader: see include/kdstep/prompts.h. */
#include "kdstep/prompts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/registry.h"

#define SEEK_STRIDE 65536

struct kd_prompt_reader {
    char path[4096];
    FILE *f;
    int is_stdin;
    char *line;
    size_t cap;
    int64_t next_index;  /* 0-based number of the next line to read */
    int64_t *marks;      /* marks[i] = byte offset of line i * SEEK_STRIDE */
    int64_t nmarks, capmarks;
};

int kd_prompts_open(kd_prompt_reader **out, const char *path, kd_error *err) {
    *out = NULL;
    kd_prompt_reader *r = kd_calloc(1, sizeof *r);
    if (!r) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    snprintf(r->path, sizeof r->path, "%s", path);
    if (strcmp(path, "-") == 0) {
        r->f = stdin;
        r->is_stdin = 1;
    } else {
        r->f = fopen(path, "rb");
        if (!r->f) {
            int e = errno;
            free(r);
            return kd_error_errno(err, e, "%s: cannot open the prompt set", path);
        }
    }
    *out = r;
    return KD_OK;
}

void kd_prompts_close(kd_prompt_reader *r) {
    if (!r) return;
    if (r->f && !r->is_stdin) fclose(r->f);
    free(r->line);
    free(r->marks);
    free(r);
}

void kd_prompt_clear(kd_prompt *p) {
    free(p->id);
    json_decref(p->messages);
    json_decref(p->tools);
    json_decref(p->metadata);
    memset(p, 0, sizeof *p);
}

static long utf8_invalid_at(const unsigned char *s, size_t n);
static void fail(kd_prompt *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(kd_prompt *p, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->reason, sizeof p->reason, fmt, ap);
    va_end(ap);
    /* The reason quotes the line ("near '...'"), possibly cut inside a character or quoting invalid
     * bytes; it must stay valid UTF-8 or the failures.jsonl record cannot be written (found by
     * tests/fuzz/fuzz_prompts). */
    for (long bad; (bad = utf8_invalid_at((const unsigned char *)p->reason, strlen(p->reason))) >= 0;)
        p->reason[bad] = '?';
    p->status = code;
    json_decref(p->messages);
    json_decref(p->tools);
    json_decref(p->metadata);
    p->messages = p->tools = p->metadata = NULL;
}

/* Byte offset of the first invalid UTF-8 sequence, or -1. Overlongs, surrogates and > U+10FFFF count. */
static long utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
        else return (long)i;
        if (i + len > n) return (long)i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return (long)i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return (long)i;
        i += len;
    }
    return -1;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* Check a messages array; returns a new reference to a normalized copy ({role, content} + extra keys
 * kept), or NULL with p failed. */
static json_t *check_messages(kd_prompt *p, json_t *msgs, const char *field) {
    if (!json_is_array(msgs)) {
        fail(p, KD_ERR_INVALID, "\"%s\" must be an array of {\"role\", \"content\"} objects", field);
        return NULL;
    }
    if (json_array_size(msgs) == 0) {
        fail(p, KD_ERR_INVALID, "empty prompt: \"%s\" is an empty array", field);
        return NULL;
    }
    int has_text = 0;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m)) {
            fail(p, KD_ERR_INVALID, "%s[%zu] must be an object with \"role\" and \"content\"", field, i);
            return NULL;
        }
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role) {
            fail(p, KD_ERR_INVALID, "%s[%zu].role must be a string", field, i);
            return NULL;
        }
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool")) {
            fail(p, KD_ERR_INVALID, "%s[%zu].role '%s' is not one of system, user, assistant, tool", field, i, role);
            return NULL;
        }
        json_t *c = json_object_get(m, "content");
        if (!json_is_string(c) && !(json_is_null(c) && strcmp(role, "assistant") == 0)) {
            fail(p, KD_ERR_INVALID, "%s[%zu].content must be a string", field, i);
            return NULL;
        }
        if (json_is_string(c) && !blank(json_string_value(c), json_string_length(c))) has_text = 1;
    }
    if (!has_text) {
        fail(p, KD_ERR_INVALID, "empty prompt: every message in \"%s\" is empty", field);
        return NULL;
    }
    return json_deep_copy(msgs);
}

void kd_prompt_parse(const char *text, size_t len, int64_t line, kd_prompt *p) {
    memset(p, 0, sizeof *p);
    p->line = line;
    p->index = line - 1;
    p->id = kd_strdup("");
    /* A UTF-8 byte order mark is tolerated where editors put it: at the start of the file. */
    if (line == 1 && len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        len -= 3;
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r')) len--;
    long bad = utf8_invalid_at((const unsigned char *)text, len);
    if (bad >= 0) {
        fail(p, KD_ERR_PARSE, "invalid UTF-8 at byte %ld (column %ld)", bad + 1, bad + 1);
        return;
    }
    json_error_t je;
    json_t *rec = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!rec) {
        fail(p, KD_ERR_PARSE, "invalid JSON at column %d: %s", je.column, je.text);
        return;
    }
    if (!json_is_object(rec)) {
        fail(p, KD_ERR_INVALID, "a prompt line must be a JSON object, got %s",
             json_is_array(rec) ? "an array" : json_is_string(rec) ? "a string" : "a scalar");
        json_decref(rec);
        return;
    }
    json_t *id = json_object_get(rec, "id");
    if (json_is_string(id)) {
        free(p->id);
        p->id = kd_strdup(json_string_value(id));
    } else if (json_is_integer(id)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(id));
        free(p->id);
        p->id = kd_strdup(buf);
    } else if (id && !json_is_null(id)) {
        fail(p, KD_ERR_INVALID, "\"id\" must be a string or an integer");
        json_decref(rec);
        return;
    }
    json_t *prompt = json_object_get(rec, "prompt"), *msgs = json_object_get(rec, "messages"),
           *question = json_object_get(rec, "question");
    if (prompt) {
        if (!json_is_string(prompt)) {
            fail(p, KD_ERR_INVALID, "\"prompt\" must be a string");
        } else if (blank(json_string_value(prompt), json_string_length(prompt))) {
            fail(p, KD_ERR_INVALID, "empty prompt: \"prompt\" is blank");
        } else {
            p->messages = json_pack("[{s:s, s:O}]", "role", "user", "content", prompt);
        }
    } else if (msgs) {
        p->messages = check_messages(p, msgs, "messages");
    } else if (question) {
        /* BFCL: a list of turns, each a list of messages; turns are joined in order. */
        json_t *flat = json_array();
        size_t i;
        json_t *turn;
        int ok = json_is_array(question);
        if (ok) json_array_foreach(question, i, turn) {
                if (json_is_array(turn))
                    json_array_extend(flat, turn);
                else
                    json_array_append(flat, turn);
            }
        if (!ok)
            fail(p, KD_ERR_INVALID, "\"question\" must be BFCL's list of turns [[{\"role\", \"content\"}...]]");
        else
            p->messages = check_messages(p, flat, "question");
        json_decref(flat);
    } else {
        fail(p, KD_ERR_INVALID, "missing prompt: expected \"prompt\", \"messages\" or BFCL \"question\"");
    }
    if (p->status) {
        json_decref(rec);
        return;
    }
    json_t *tools = json_object_get(rec, "tools");
    const char *tools_field = "tools";
    if (!tools) {
        tools = json_object_get(rec, "function");
        tools_field = "function";
    }
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) {
            fail(p, KD_ERR_INVALID, "\"%s\" must be an array of tools", tools_field);
            json_decref(rec);
            return;
        }
        /* Loading them now means a bad schema is reported against its line, not mid-conversation. */
        kd_registry *reg = NULL;
        kd_error e;
        char src[64];
        snprintf(src, sizeof src, "line %lld: %s", (long long)line, tools_field);
        if (kd_registry_from_json(&reg, tools, src, &e)) {
            fail(p, KD_ERR_INVALID, "%s", e.msg);
            kd_registry_close(reg);
            json_decref(rec);
            return;
        }
        kd_registry_close(reg);
        p->tools = json_incref(tools);
    }
    json_t *meta = json_object_get(rec, "metadata");
    if (meta && !json_is_null(meta)) {
        if (!json_is_object(meta)) {
            fail(p, KD_ERR_INVALID, "\"metadata\" must be an object");
            json_decref(rec);
            return;
        }
        p->metadata = json_incref(meta);
    }
    json_decref(rec);
}

int kd_prompts_next(kd_prompt_reader *r, kd_prompt *p, kd_error *err) {
    memset(p, 0, sizeof *p);
    for (;;) {
        int64_t idx = r->next_index;
        if (!r->is_stdin && idx % SEEK_STRIDE == 0 && idx / SEEK_STRIDE == r->nmarks) {
            if (r->nmarks == r->capmarks) {
                int64_t nc = r->capmarks ? r->capmarks * 2 : 64;
                int64_t *m = kd_reallocarray(r->marks, (size_t)nc, sizeof(int64_t));
                if (!m) return -kd_error_set(err, KD_ERR_NOMEM, "out of memory");
                r->marks = m;
                r->capmarks = nc;
            }
            r->marks[r->nmarks++] = (int64_t)ftello(r->f);
        }
        errno = 0;
        ssize_t n = getline(&r->line, &r->cap, r->f);
        if (n < 0) {
            if (ferror(r->f)) return -kd_error_errno(err, errno ? errno : EIO, "%s: read failed at line %lld", r->path,
                                                     (long long)idx + 1);
            return 0;
        }
        r->next_index++;
        if (blank(r->line, (size_t)n)) continue;
        kd_prompt_parse(r->line, (size_t)n, idx + 1, p);
        return 1;
    }
}

int kd_prompts_seek(kd_prompt_reader *r, int64_t index, kd_error *err) {
    if (index < 0) return kd_error_set(err, KD_ERR_INVALID, "%s: cannot seek to line index %lld", r->path, (long long)index);
    if (index == r->next_index) return KD_OK;
    if (r->is_stdin) {
        if (index < r->next_index)
            return kd_error_set(err, KD_ERR_UNSUPPORTED, "%s: cannot seek backwards in standard input", r->path);
    } else {
        int64_t m = index / SEEK_STRIDE;
        if (m > r->nmarks - 1) m = r->nmarks - 1;
        if (m >= 0 && (index < r->next_index || m * SEEK_STRIDE > r->next_index)) {
            if (fseeko(r->f, (off_t)r->marks[m], SEEK_SET) != 0)
                return kd_error_errno(err, errno, "%s: seek failed", r->path);
            r->next_index = m * SEEK_STRIDE;
            r->nmarks = m + 1;
        } else if (index < r->next_index) {
            rewind(r->f);
            r->next_index = 0;
            r->nmarks = 0;
        }
    }
    /* Skip lines without parsing: memchr over a block buffer, no JSON. */
    while (r->next_index < index) {
        if (!r->is_stdin && r->next_index % SEEK_STRIDE == 0 && r->next_index / SEEK_STRIDE == r->nmarks) {
            if (r->nmarks == r->capmarks) {
                int64_t nc = r->capmarks ? r->capmarks * 2 : 64;
                int64_t *mk = kd_reallocarray(r->marks, (size_t)nc, sizeof(int64_t));
                if (!mk) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
                r->marks = mk;
                r->capmarks = nc;
            }
            r->marks[r->nmarks++] = (int64_t)ftello(r->f);
        }
        int c;
        while ((c = getc_unlocked(r->f)) != EOF && c != '\n') {
        }
        if (c == EOF) {
            if (ferror(r->f)) return kd_error_errno(err, errno ? errno : EIO, "%s: read failed", r->path);
            return KD_OK; /* past the end: the next read reports end of file */
        }
        r->next_index++;
    }
    return KD_OK;
}

int kd_prompts_count_lines(const char *path, int64_t *lines, kd_error *err) {
    *lines = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return kd_error_errno(err, errno, "%s: cannot open the prompt set", path);
    static char block[1 << 16];
    size_t n;
    int last = '\n';
    while ((n = fread(block, 1, sizeof block, f)) > 0) {
        for (char *p = block, *end = block + n; (p = memchr(p, '\n', (size_t)(end - p))); p++) (*lines)++;
        last = block[n - 1];
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) return kd_error_set(err, KD_ERR_IO, "%s: read failed", path);
    if (last != '\n') (*lines)++;
    return KD_OK;
}

char *kd_prompt_to_json(const kd_prompt *p) {
    json_t *o = json_pack("{s:I, s:I, s:s, s:O}", "index", (json_int_t)p->index, "line", (json_int_t)p->line, "id",
                          p->id ? p->id : "", "messages", p->messages ? p->messages : json_null());
    if (!o) return NULL;
    if (p->tools) json_object_set(o, "tools", p->tools);
    if (p->metadata) json_object_set(o, "metadata", p->metadata);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

int kd_prompt_from_json(kd_prompt *p, const char *text, size_t len, kd_error *err) {
    memset(p, 0, sizeof *p);
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    if (!o) return kd_error_set(err, KD_ERR_PARSE, "prompt record: invalid JSON at column %d: %s", je.column, je.text);
    json_t *idx = json_object_get(o, "index"), *line = json_object_get(o, "line"), *msgs = json_object_get(o, "messages");
    const char *id = json_string_value(json_object_get(o, "id"));
    if (!json_is_integer(idx) || !json_is_integer(line) || !id || !json_is_array(msgs)) {
        json_decref(o);
        return kd_error_set(err, KD_ERR_INVALID, "prompt record: needs integer \"index\", \"line\", string \"id\" and "
                                                 "array \"messages\"");
    }
    p->index = json_integer_value(idx);
    p->line = json_integer_value(line);
    p->id = kd_strdup(id);
    p->messages = json_incref(msgs);
    json_t *t = json_object_get(o, "tools"), *m = json_object_get(o, "metadata");
    if (t) p->tools = json_incref(t);
    if (m) p->metadata = json_incref(m);
    json_decref(o);
    return KD_OK;
}

char *kd_prompt_failure_json(const kd_prompt *p, const char *path) {
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:s}", "source", "prompts", "file", path ? path : "", "line",
                          (json_int_t)p->line, "index", (json_int_t)p->index, "reason", p->reason);
    if (!o) return NULL;
    if (p->id && p->id[0]) json_object_set_new(o, "id", json_string(p->id));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}
