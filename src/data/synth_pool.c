/* Prompt synthesizer over a tool pool, each prompt with its own tools: see include/kdstep/synth.h
 * (kd_synth_options). Record i depends only on (seed, i). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/hash.h"
#include "kdstep/sbuf.h"
#include "kdstep/synth.h"
#include "kdstep/toolwords.h"
#include "synth_internal.h"

/* ---- values as a request says them ---------------------------------------------------------------- */

/* A string may go unquoted when it is one plain token that cannot be read as anything else. */
static int plain_token(const char *s) {
    if (!*s || s[strlen(s) - 1] == '.') return 0;
    if (!strcmp(s, "true") || !strcmp(s, "false") || !strcmp(s, "null") || !strcmp(s, "and")) return 0;
    char *end;
    strtod(s, &end);
    if (*end == 0) return 0; /* "42" as a string must be quoted */
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("@_/:+-.", *p)) return 0;
    return 1;
}

static void say_scalar(kd_sbuf *b, const json_t *v, int may_bare, uint64_t *rng) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (may_bare && plain_token(s) && (kd_splitmix64(rng) & 1)) kd_sbuf_puts(b, s);
        else kd_sbuf_printf(b, "\"%s\"", s);
    } else if (json_is_integer(v)) {
        kd_sbuf_printf(b, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        kd_sbuf_printf(b, "%.17g", json_real_value(v));
    } else if (json_is_true(v)) {
        kd_sbuf_puts(b, "true");
    } else if (json_is_false(v)) {
        kd_sbuf_puts(b, "false");
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        kd_sbuf_puts(b, s ? s : "null");
        free(s);
    }
}

/* Arrays of scalars read "a", "b" and "c" (strings always quoted there); anything nested is JSON. */
static void say_value(kd_sbuf *b, const json_t *v, int may_bare, uint64_t *rng) {
    if (json_is_array(v)) {
        size_t n = json_array_size(v), i;
        int scalars = n > 0;
        for (i = 0; i < n; i++) scalars &= !json_is_array(json_array_get(v, i)) && !json_is_object(json_array_get(v, i)) &&
                                         !json_is_null(json_array_get(v, i));
        if (scalars) {
            for (i = 0; i < n; i++) {
                if (i) kd_sbuf_puts(b, i + 1 == n ? " and " : ", ");
                say_scalar(b, json_array_get(v, i), 0, rng);
            }
            return;
        }
    }
    say_scalar(b, v, may_bare, rng);
}

/* ---- one request --------------------------------------------------------------------------------- */

/* The request for one call: a lead, the tool's gist as a clause, then every argument by its
 * parameter words in one of four forms. No ". " inside, so a request is one sentence. */
static void say_request(kd_sbuf *b, const kd_tool *t, const json_t *args, uint64_t *rng, int first) {
    char gist[KD_GIST_MAX], clause[KD_GIST_MAX];
    int verb = 0;
    kd_tool_gist(t->description && t->description[0] ? t->description : t->name, gist);
    kd_tool_gist_clause(gist, clause, &verb);
    char nm[KD_PARAM_WORDS_MAX];
    kd_param_words(t->name, nm);
    const char *opener = first ? kd_synth_pick_opener(rng) : "";
    size_t start = b->len;
    kd_sbuf_puts(b, opener);
    int lead = (int)(kd_splitmix64(rng) % 5);
    if (verb) {
        static const char *leads[] = {"I want to ", "please ", "can you ", "I need to ", "use %s to "};
        if (lead == 4) kd_sbuf_printf(b, "use %s to ", t->name);
        else kd_sbuf_puts(b, leads[lead]);
    } else {
        static const char *leads[] = {"I need this: ", "help me with this: ", "request: ", "task: ", "with %s: "};
        if (lead == 4) kd_sbuf_printf(b, "with %s: ", t->name);
        else kd_sbuf_puts(b, leads[lead]);
    }
    kd_sbuf_puts(b, clause);
    if (first && b->data && b->len > start) b->data[start] = (char)toupper((unsigned char)b->data[start]);
    size_t n = json_object_size(args), i = 0;
    int form = (int)(kd_splitmix64(rng) % 4);
    const char *k;
    json_t *v;
    char pw[KD_PARAM_WORDS_MAX];
    json_object_foreach((json_t *)args, k, v) {
        kd_param_words(k, pw);
        int last = i + 1 == n && n > 1;
        switch (form) {
        case 0:
            kd_sbuf_puts(b, i == 0 ? " with " : last ? " and " : ", ");
            kd_sbuf_printf(b, "%s ", pw);
            say_value(b, v, 0, rng);
            break;
        case 1:
            kd_sbuf_puts(b, i == 0 ? " (" : "; ");
            kd_sbuf_printf(b, "%s: ", pw);
            say_value(b, v, 1, rng);
            if (i + 1 == n) kd_sbuf_puts(b, ")");
            break;
        case 2:
            kd_sbuf_puts(b, i == 0 ? ", setting " : last ? " and " : ", ");
            kd_sbuf_printf(b, "%s to ", pw);
            say_value(b, v, 1, rng);
            break;
        default:
            kd_sbuf_puts(b, i == 0 ? " where the " : last ? " and the " : ", the ");
            kd_sbuf_printf(b, "%s is ", pw);
            say_value(b, v, 1, rng);
            break;
        }
        i++;
    }
    kd_sbuf_puts(b, lead == 2 && verb ? "?" : ".");
}

/* ---- tool sets ----------------------------------------------------------------------------------- */

/* Tools whose names share a stem ("Restaurants_2_Find..." / "Restaurants_2_Reserve...") may both fit a
 * request; an "unfit" prompt offers none of those. */
static int same_family(const char *a, const char *b) {
    size_t la = strcspn(a, "_."), lb = strcspn(b, "_.");
    return la == lb && la >= 3 && la < strlen(a) && strncmp(a, b, la) == 0;
}

static json_t *tool_json(const kd_tool *t) {
    return json_pack("{s:s, s:{s:s, s:s, s:O}}", "type", "function", "function", "name", t->name, "description",
                     t->description ? t->description : "", "parameters", t->parameters);
}

/* ---- made-up names (kd_synth_options.rename_pct) ------------------------------------------------ */

enum { NAME_MAX_LEN = 96 };

/* One piece of a pool name: a random tool's name cut at '_', '.' and '-', a random part of two or
 * more letters (lower-cased); "" when the name has none. */
static void name_piece(const kd_registry *reg, uint64_t *rng, char *out, size_t cap) {
    const char *n = reg->tools[kd_splitmix64(rng) % (uint64_t)reg->count].name;
    const char *parts[16];
    size_t lens[16];
    int np = 0;
    for (const char *p = n; *p && np < 16;) {
        size_t l = strcspn(p, "_.-");
        int alpha = l >= 2;
        for (size_t i = 0; i < l && alpha; i++) alpha = isalpha((unsigned char)p[i]) != 0;
        if (alpha) {
            parts[np] = p;
            lens[np++] = l;
        }
        p += l;
        if (*p) p++;
    }
    out[0] = 0;
    if (!np) return;
    int i = (int)(kd_splitmix64(rng) % (uint64_t)np);
    size_t l = lens[i] < cap - 1 ? lens[i] : cap - 1;
    for (size_t j = 0; j < l; j++) out[j] = (char)tolower((unsigned char)parts[i][j]);
    out[l] = 0;
}

/* n made-up names, distinct from each other and from every pool name. */
static void made_up_names(const kd_registry *reg, uint64_t *rng, int n, char (*names)[NAME_MAX_LEN]) {
    for (int i = 0; i < n; i++) {
        for (int tries = 0;; tries++) {
            int pieces = 2 + (int)(kd_splitmix64(rng) % 2);
            names[i][0] = 0;
            for (int p = 0; p < pieces; p++) {
                char piece[32];
                name_piece(reg, rng, piece, sizeof piece);
                if (!piece[0]) continue;
                size_t len = strlen(names[i]);
                if (len + strlen(piece) + 2 >= NAME_MAX_LEN) break;
                if (len) strcat(names[i], "_");
                strcat(names[i], piece);
            }
            int bad = strlen(names[i]) < 4 || kd_registry_find(reg, names[i]) != NULL;
            for (int j = 0; j < i && !bad; j++) bad = strcmp(names[i], names[j]) == 0;
            if (!bad) break;
            if (tries >= 64) { /* a pool of one-letter names: number them */
                snprintf(names[i], NAME_MAX_LEN, "tool_%d_%llu", i, (unsigned long long)(kd_splitmix64(rng) % 100000));
                break;
            }
        }
    }
}

/* Where pool tool `tool` is among the offered ones (choose_tools always offers the needed ones). */
static int offered_at(const int *offer, int n_offer, int tool) {
    int i = 0;
    while (i < n_offer - 1 && offer[i] != tool) i++;
    return i;
}

/* Choose `k` offered tools: `need` (n_need of them) plus distractors, none of them equal to `avoid`
 * or of its family; shuffled. Returns the count written to `out`. */
static int choose_tools(const kd_registry *reg, const int *need, int n_need, int avoid, int k, uint64_t *rng, int *out) {
    int n = 0;
    for (int i = 0; i < n_need; i++) out[n++] = need[i];
    for (int tries = 0; n < k && tries < 64 * k; tries++) {
        int c = (int)(kd_splitmix64(rng) % (uint64_t)reg->count), dup = c == avoid;
        for (int j = 0; j < n && !dup; j++) dup = out[j] == c;
        if (!dup && avoid >= 0) dup = same_family(reg->tools[c].name, reg->tools[avoid].name);
        if (!dup) out[n++] = c;
    }
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)(kd_splitmix64(rng) % (uint64_t)(i + 1)), t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
    return n;
}

static int valid_call(const kd_tool *t, uint64_t *rng, json_t **args, kd_error *err) {
    *args = kd_synth_gen_args(t, rng);
    kd_error e;
    if (kd_registry_validate(t, *args, &e)) {
        json_decref(*args);
        *args = NULL;
        return kd_error_set(err, KD_ERR_UNSUPPORTED,
                            "prompts synth: cannot make valid arguments for tool '%s' (%s); its schema uses "
                            "constraints the synthesizer does not know (drop the tool from the pool)",
                            t->name, e.msg);
    }
    return KD_OK;
}

int kd_synth_record_opts(const kd_registry *reg, const kd_synth_options *o, uint64_t seed, int64_t index, json_t **record,
                         kd_error *err) {
    if (!o || o->tools_max <= 0) return kd_synth_record(reg, seed, index, record, err);
    *record = NULL;
    if (!reg || reg->count < 2) return kd_error_set(err, KD_ERR_INVALID, "prompts synth: a tool pool needs at least 2 tools");
    uint64_t key[3] = {seed, (uint64_t)index, 0x706f6f6cULL};
    uint64_t rng = kd_hash64(key, sizeof key);
    uint64_t roll = kd_splitmix64(&rng) % 100;
    int k = o->tools_min + (int)(kd_splitmix64(&rng) % (uint64_t)(o->tools_max - o->tools_min + 1));
    if (k > reg->count) k = reg->count;
    const char *category = roll < 10 ? "no_call_chat" : roll < 20 ? "no_call_unfit" : roll < 30 && k >= 2 ? "two_calls" : "call";
    int need[2] = {-1, -1}, n_need = 0, avoid = -1;
    if (!strcmp(category, "call") || !strcmp(category, "two_calls")) {
        need[n_need++] = (int)(kd_splitmix64(&rng) % (uint64_t)reg->count);
        if (!strcmp(category, "two_calls"))
            while (n_need < 2) {
                int c = (int)(kd_splitmix64(&rng) % (uint64_t)reg->count);
                if (c != need[0]) need[n_need++] = c;
            }
    } else if (!strcmp(category, "no_call_unfit")) {
        avoid = (int)(kd_splitmix64(&rng) % (uint64_t)reg->count);
    }
    int *offer = calloc((size_t)k + 2, sizeof *offer);
    /* made-up names: their own stream, so the records the roll passes over keep their bytes */
    uint64_t rkey[3] = {seed, (uint64_t)index, 0x72656e616d65ULL};
    uint64_t rrng = kd_hash64(rkey, sizeof rkey);
    int rename = o->rename_pct > 0 && (int)(kd_splitmix64(&rrng) % 100) < o->rename_pct;
    /* the record's own copies of its tools: view[i] is offer[i], view[k] the asked-for tool that is not
     * offered; with made-up names their name points into names[] */
    kd_tool *view = calloc((size_t)k + 1, sizeof *view);
    char (*names)[NAME_MAX_LEN] = rename ? calloc((size_t)k + 1, sizeof *names) : NULL;
    json_t *calls = json_array(), *tools = json_array();
    kd_sbuf b = {0};
    int rc = KD_OK;
    if (!offer || !calls || !tools || !view || (rename && !names)) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    int n_offer = rc ? 0 : choose_tools(reg, need, n_need, avoid, k, &rng, offer);
    for (int i = 0; !rc && i < n_offer; i++) view[i] = reg->tools[offer[i]];
    if (!rc && avoid >= 0) view[k] = reg->tools[avoid];
    if (!rc && rename) {
        made_up_names(reg, &rrng, n_offer + 1, names);
        for (int i = 0; i < n_offer; i++) view[i].name = names[i];
        view[k].name = names[n_offer];
    }
    if (!rc && !strcmp(category, "no_call_chat")) {
        char text[256];
        kd_synth_chat_text(&rng, text, sizeof text);
        kd_sbuf_puts(&b, text);
    } else if (!rc && avoid >= 0) {
        json_t *args = NULL;
        rc = valid_call(&reg->tools[avoid], &rng, &args, err);
        if (!rc) say_request(&b, &view[k], args, &rng, 1);
        json_decref(args);
    }
    for (int c = 0; !rc && c < n_need; c++) {
        json_t *args = NULL;
        rc = valid_call(&reg->tools[need[c]], &rng, &args, err);
        if (rc) break;
        if (c > 0) {
            const char *j = kd_synth_pick_joiner(&rng);
            kd_sbuf_puts(&b, j[0] == ' ' ? j + 1 : j);
        }
        const kd_tool *t = &view[offered_at(offer, n_offer, need[c])];
        say_request(&b, t, args, &rng, c == 0);
        json_array_append_new(calls, json_pack("{s:s, s:o}", "name", t->name, "arguments", args));
        if (c == 0 && n_need > 1) kd_sbuf_puts(&b, " ");
    }
    if (!rc) kd_sbuf_puts(&b, kd_synth_pick_closing(&rng));
    for (int i = 0; !rc && i < n_offer; i++) json_array_append_new(tools, tool_json(&view[i]));
    if (!rc && (b.oom || !b.data)) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    if (!rc) {
        char id[64];
        snprintf(id, sizeof id, "synth-%llu-%lld", (unsigned long long)seed, (long long)index);
        *record = json_pack("{s:s, s:s, s:O, s:{s:O, s:s}}", "id", id, "prompt", b.data, "tools", tools, "metadata", "tool_calls",
                            calls, "category", category);
        if (!*record) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    }
    json_decref(calls);
    json_decref(tools);
    free(offer);
    free(view);
    free(names);
    free(b.data);
    return rc;
}

int kd_synth_write_opts(const kd_registry *reg, const kd_synth_options *o, uint64_t seed, int64_t n, FILE *out, kd_error *err) {
    if (!o || o->tools_max <= 0) return kd_synth_write(reg, seed, n, out, err);
    if (o->rename_pct < 0 || o->rename_pct > 100)
        return kd_error_set(err, KD_ERR_INVALID, "prompts synth: --rename-tools %d: want a share 0..100", o->rename_pct);
    if (o->tools_min < 1 || o->tools_min > o->tools_max)
        return kd_error_set(err, KD_ERR_INVALID, "prompts synth: --tools-per-prompt %d-%d: want 1 <= MIN <= MAX", o->tools_min,
                            o->tools_max);
    for (int64_t i = 0; i < n; i++) {
        json_t *rec;
        if (kd_synth_record_opts(reg, o, seed, i, &rec, err)) return err->code;
        char *s = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(17));
        json_decref(rec);
        if (!s) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        int bad = fputs(s, out) < 0 || fputc('\n', out) == EOF;
        free(s);
        if (bad) return kd_error_set(err, KD_ERR_IO, "prompts synth: write failed (disk full?)");
    }
    return KD_OK;
}
