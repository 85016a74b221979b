/* CUnit suite: the compact JSON writer (src/core/jsonw.c) against jansson's own json_dumps, byte for
 * byte: every record of the BFCL and glaive data (and the JSON held in their strings), the shipped tool
 * registry and the teacher's request body, every escape, invalid UTF-8 as values and as keys, integers
 * and reals at their edges and at random, deep and cyclic structures, and the writer's own API. */
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/hash.h"
#include "kdstep/jsonw.h"
#include "testutil.h"

/* Both writers on v: as json_dumps(v, JSON_COMPACT) (containers only) and, for any value, as
 * kd_jsonw_value against JSON_ENCODE_ANY. Returns 1 when all agree; prints where they part. */
static int same(const json_t *v, const char *what) {
    int ok = 1;
    char *want = json_dumps(v, JSON_COMPACT), *got = kd_json_dumps_compact(v);
    if ((want == NULL) != (got == NULL) || (want && strcmp(want, got))) {
        size_t i = 0;
        while (want && got && want[i] && want[i] == got[i]) i++;
        fprintf(stderr, "\n  %s: json_dumps %s, kd_json_dumps_compact %s; first difference at byte %zu:\n  want %.80s\n  got  %.80s\n",
                what, want ? "wrote" : "failed", got ? "wrote" : "failed", i, want ? want + i : "(null)", got ? got + i : "(null)");
        ok = 0;
    }
    free(want);
    free(got);
    want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    kd_jsonw w = {0};
    kd_jsonw_raw(&w, "<", 1);
    int rc = kd_jsonw_value(&w, v);
    if ((want == NULL) != (rc != 0) || (want && (strncmp(w.data + 1, want, w.len - 1) || w.len != strlen(want) + 1)) ||
        (rc && (w.len != 1 || strcmp(w.data, "<")))) {
        fprintf(stderr, "\n  %s (any value): json_dumps %s, kd_jsonw_value rc %d wrote %.80s\n", what,
                want ? want : "(failed)", rc, w.data ? w.data : "(null)");
        ok = 0;
    }
    kd_jsonw_free(&w);
    free(want);
    return ok;
}

/* same() on v and on every string inside v that is itself a JSON document (glaive keeps tools and
 * calls as JSON text). */
static void same_deep(const json_t *v, const char *what, long *checked, long *failed) {
    (*checked)++;
    if (!same(v, what)) (*failed)++;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (s[0] == '{' || s[0] == '[') {
            json_t *inner = json_loadb(s, json_string_length(v), 0, NULL);
            if (inner) same_deep(inner, what, checked, failed);
            json_decref(inner);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (json_is_string(x) || json_is_array(x) || json_is_object(x)) same_deep(x, what, checked, failed);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) if (json_is_string(x)) same_deep(x, what, checked, failed);
    }
}

/* One data file: a whole JSON document, or JSON Lines where that fails; every line must load. */
static void check_file(const char *path, long *records, long *checked, long *failed) {
    json_t *doc = json_load_file(path, 0, NULL);
    if (doc) {
        same_deep(doc, path, checked, failed);
        size_t i;
        json_t *x;
        if (json_is_array(doc)) json_array_foreach(doc, i, x) (*records)++;
        json_decref(doc);
        return;
    }
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (n == 1 && line[0] == '\n') continue;
        json_error_t je;
        json_t *rec = json_loadb(line, (size_t)n, 0, &je);
        if (!rec) fprintf(stderr, "\n  %s:%ld does not load: %s\n", path, lineno, je.text);
        CU_ASSERT_PTR_NOT_NULL(rec);
        if (!rec) continue;
        char what[4200];
        snprintf(what, sizeof what, "%s:%ld", path, lineno);
        same_deep(rec, what, checked, failed);
        (*records)++;
        json_decref(rec);
    }
    free(line);
    fclose(f);
}

static void test_shared_data(void) {
    const char *data = kd_test_shared_data();
    if (!data) {
        kd_test_skip("../shared/data is absent; jsonw not compared on BFCL and glaive");
        return;
    }
    const char *dirs[] = {"bfcl", "bfcl/possible_answer", "glaive"};
    long files = 0, records = 0, checked = 0, failed = 0;
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", data, dirs[d]);
        DIR *dh = opendir(dir);
        CU_ASSERT_PTR_NOT_NULL_FATAL(dh);
        struct dirent *e;
        while ((e = readdir(dh))) {
            size_t l = strlen(e->d_name);
            if (l < 5 || strcmp(e->d_name + l - 5, ".json")) continue;
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            check_file(path, &records, &checked, &failed);
            files++;
        }
        closedir(dh);
    }
    fprintf(stderr, "\n  %ld files, %ld records, %ld values compared, %ld differ\n", files, records, checked, failed);
    CU_ASSERT_EQUAL(files, 19); /* the README's ten prompt sets, eight answer sets, one glaive file */
    CU_ASSERT_TRUE(records >= 5800);
    CU_ASSERT_EQUAL(failed, 0);
}

static void test_tools_and_request_body(void) {
    json_t *tools = json_load_file(kd_test_src("configs/tools.json"), 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tools);
    CU_ASSERT_TRUE(same(tools, "configs/tools.json"));
    /* the body as src/teacher/client.c builds it */
    json_t *msgs = json_pack("[{ss,ss},{ss,ss}]", "role", "system", "content", "You are a helpful assistant with tools.\nUse them.",
                             "role", "user", "content", "Read \"config.json\" and tell me its size in KiB / MiB \xe2\x80\x94 please.");
    json_t *b = json_object();
    json_object_set_new(b, "model", json_string("Qwen/Qwen3-32B"));
    json_object_set(b, "messages", msgs);
    json_object_set(b, "tools", tools);
    json_object_set_new(b, "tool_choice", json_string("auto"));
    json_object_set_new(b, "temperature", json_real(0.7));
    json_object_set_new(b, "max_tokens", json_integer(1024));
    json_object_set_new(b, "seed", json_integer(1234));
    json_object_set_new(b, "logprobs", json_true());
    json_object_set_new(b, "top_logprobs", json_integer(8));
    CU_ASSERT_TRUE(same(b, "request body"));
    /* the same body as an envelope written by hand around the two values, as the client may do */
    kd_jsonw w = {0};
    kd_jsonw_raw(&w, "{\"model\":", 9);
    kd_jsonw_string(&w, "Qwen/Qwen3-32B", 14);
    kd_jsonw_raw(&w, ",\"messages\":", 12);
    CU_ASSERT_EQUAL(kd_jsonw_value(&w, msgs), 0);
    kd_jsonw_raw(&w, ",\"tools\":", 9);
    CU_ASSERT_EQUAL(kd_jsonw_value(&w, tools), 0);
    kd_jsonw_raw(&w, ",\"tool_choice\":\"auto\",\"temperature\":", 36);
    kd_jsonw_real(&w, 0.7);
    kd_jsonw_raw(&w, ",\"max_tokens\":", 14);
    kd_jsonw_int(&w, 1024);
    kd_jsonw_raw(&w, ",\"seed\":", 8);
    kd_jsonw_int(&w, 1234);
    kd_jsonw_raw(&w, ",\"logprobs\":true,\"top_logprobs\":", 32);
    kd_jsonw_int(&w, 8);
    kd_jsonw_raw(&w, "}", 1);
    CU_ASSERT_EQUAL(w.len, strlen(w.data));
    char *got = kd_jsonw_take(&w), *want = json_dumps(b, JSON_COMPACT);
    CU_ASSERT_STRING_EQUAL(got, want);
    CU_ASSERT_PTR_NULL(w.data);
    CU_ASSERT_EQUAL(w.len, 0);
    free(got);
    free(want);
    json_decref(b);
    json_decref(msgs);
    json_decref(tools);
}

/* Every byte below 0x80 alone, and every escape at every offset of strings up to 40 bytes long (the
 * eight-byte scan has a body and a tail), as values and as keys. */
static void test_string_escapes(void) {
    long bad = 0;
    for (int c = 0; c < 0x80; c++) {
        char s[3] = {(char)c, 'x', 0};
        json_t *a = json_pack("[s#,s#]", s, (int)1, s, (int)2);
        json_t *o = json_object();
        json_object_setn_new(o, s, 1, json_stringn(s + 1, 1));
        json_object_setn_new(o, s, 2, json_true());
        char what[64];
        snprintf(what, sizeof what, "byte 0x%02x", c);
        bad += !same(a, what) + !same(o, what);
        json_decref(a);
        json_decref(o);
    }
    const char *special[] = {"\"", "\\", "/", "\x01", "\x1f", "\x7f", "\n", "\t", "\b", "\f", "\r", "\xc3\xa9", "\xe2\x82\xac",
                             "\xf0\x9f\x98\x80", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80"};
    for (size_t k = 0; k < sizeof special / sizeof special[0]; k++) {
        for (size_t len = 0; len <= 40; len++) {
            for (size_t at = 0; at <= len; at++) {
                char s[64];
                size_t sl = strlen(special[k]);
                memset(s, 'a' + (int)(len % 26), len);
                memmove(s + at + sl, s + at, len - at);
                memcpy(s + at, special[k], sl);
                json_t *a = json_array();
                json_array_append_new(a, json_stringn(s, len + sl));
                json_t *o = json_object();
                json_object_setn_new(o, s, len + sl, json_null());
                bad += !same(a, special[k]) + !same(o, special[k]);
                json_decref(a);
                json_decref(o);
            }
        }
    }
    /* empty strings, a NUL inside values and keys, strings long enough to grow the buffer many times */
    json_t *o = json_object();
    json_object_set_new(o, "", json_string(""));
    json_object_setn_new(o, "a\0b", 3, json_stringn("x\0y\0", 4));
    size_t big = 300000;
    char *s = malloc(big);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    for (size_t i = 0; i < big; i++) s[i] = "abc\"\\\n\x01 \xc3\xa9"[i % 11];
    if ((s[big - 1] & 0xC0) == 0xC0) s[big - 1] = 'z'; /* no truncated sequence at the end */
    json_object_setn_new(o, s, 1000, json_stringn(s, big));
    free(s);
    bad += !same(o, "NULs, empty and long strings");
    json_decref(o);
    CU_ASSERT_EQUAL(bad, 0);
    /* the escapes themselves, spelled out */
    json_t *a = json_pack("[s]", "\x01\x1f\x7f/\"\\\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
    char *got = kd_json_dumps_compact(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_STRING_EQUAL(got, "[\"\\u0001\\u001F\x7f/\\\"\\\\\\b\\f\\n\\r\\t\xc3\xa9\xf0\x9f\x98\x80\"]");
    free(got);
    json_decref(a);
}

/* Byte strings jansson's loader would refuse (json_stringn_nocheck takes them): a lead byte 0x80-0xFF
 * followed by three bytes from a set that crosses every boundary of the UTF-8 rules, as string values
 * (json_dumps fails) and as keys (json_dumps cuts the key and goes on). */
static void test_invalid_utf8(void) {
    const unsigned char next[] = {0x22, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0};
    const size_t nn = sizeof next;
    long bad = 0, refused = 0, cut = 0;
    for (int lead = 0x80; lead < 0x100; lead++) {
        for (size_t i = 0; i < nn * nn * nn; i++) {
            char s[6] = {'\n', (char)lead, (char)next[i % nn], (char)next[i / nn % nn], (char)next[i / nn / nn], 'z'};
            for (size_t len = i ? 3 : 2; len <= 6; len += 3) {
                json_t *a = json_array();
                json_array_append_new(a, json_stringn_nocheck(s, len));
                json_t *o = json_object();
                json_object_setn_new_nocheck(o, s, len, json_integer(1));
                char *d = json_dumps(a, JSON_COMPACT);
                int invalid = d == NULL;
                refused += invalid;
                free(d);
                d = json_dumps(o, JSON_COMPACT);
                cut += invalid && d;
                free(d);
                bad += !same(a, "invalid UTF-8 value") + !same(o, "invalid UTF-8 key");
                json_decref(a);
                json_decref(o);
                if (bad > 5) goto out;
            }
        }
    }
out:
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_TRUE(refused > 10000); /* the comparison saw both outcomes */
    CU_ASSERT_TRUE(cut > 10000);
    /* what json_dumps writes for such a key, spelled out */
    json_t *o = json_object();
    json_object_setn_new_nocheck(o, "a\nb\xff", 4, json_integer(1));
    char *got = kd_json_dumps_compact(o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_STRING_EQUAL(got, "{\"a\\n:1}");
    free(got);
    json_decref(o);
}

static double bits_to_double(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void test_numbers(void) {
    long bad = 0;
    const long long ints[] = {0, 1, -1, 9, 10, -10, 99, 100, 999, 1000, 123456789, -987654321, 4294967296LL, 999999999999999999LL,
                              1000000000000000000LL, INT64_MAX, INT64_MIN, INT64_MIN + 1, INT64_MAX - 1};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        json_t *a = json_pack("[I]", (json_int_t)ints[i]);
        bad += !same(a, "integer");
        json_decref(a);
    }
    const double reals[] = {0.0, -0.0, 1e300, 1e-300, 0.1, 0.7, 1.0 / 3, 123456789012345678.0, 1e22, 5e-324, DBL_MAX, -DBL_MAX,
                            DBL_MIN, 1.0, -1.0, 1.5, 100.0, 1e15, 1e16, 1e17 - 16, 1e17, 1e-4, 1e-5, 9007199254740992.0,
                            9007199254740993.0, 99999999999999984.0, 12345678901234567.0, 0.5e-320, 2.5, -7e-7, 1e21, 1e100};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) {
        json_t *a = json_pack("[f]", reals[i]);
        bad += !same(a, "real");
        json_decref(a);
    }
    /* random integers of every length and random finite doubles of every exponent */
    uint64_t rng = 42;
    for (int i = 0; i < 20000; i++) {
        uint64_t u = kd_splitmix64(&rng);
        json_t *a = json_array();
        json_array_append_new(a, json_integer((json_int_t)(u >> (u % 64))));
        json_array_append_new(a, json_integer(-(json_int_t)(u >> (1 + u % 63))));
        double d = bits_to_double(kd_splitmix64(&rng));
        if (isfinite(d)) json_array_append_new(a, json_real(d));
        json_array_append_new(a, json_real((double)(int64_t)(u >> (u % 64)) / (double)(1 + u % 1000))); /* short decimals */
        json_array_append_new(a, json_real(floor(ldexp((double)(u >> 11), -(int)(u % 60))))); /* integral reals */
        bad += !same(a, "random numbers");
        json_decref(a);
        if (bad > 5) break;
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* the typed writers alone, and reals spelled out */
    kd_jsonw w = {0};
    kd_jsonw_int(&w, INT64_MIN);
    kd_jsonw_raw(&w, " ", 1);
    kd_jsonw_real(&w, -0.0);
    kd_jsonw_raw(&w, " ", 1);
    kd_jsonw_real(&w, 1e17);
    kd_jsonw_raw(&w, " ", 1);
    kd_jsonw_real(&w, 5e-324);
    kd_jsonw_raw(&w, " ", 1);
    kd_jsonw_real(&w, 0.1);
    kd_jsonw_raw(&w, " ", 1);
    kd_jsonw_real(&w, NAN); /* JSON has no NaN and jansson holds none */
    kd_jsonw_raw(&w, " ", 1);
    kd_jsonw_real(&w, -INFINITY);
    CU_ASSERT_STRING_EQUAL(w.data, "-9223372036854775808 -0.0 1e17 4.9406564584124654e-324 0.10000000000000001 null null");
    kd_jsonw_free(&w);
}

static json_t *random_value(uint64_t *rng, int depth) {
    uint64_t u = kd_splitmix64(rng);
    int kind = depth > 6 ? (int)(u % 6) : (int)(u % 8);
    switch (kind) {
    case 0: return json_null();
    case 1: return json_boolean(u & 8);
    case 2: return json_integer((json_int_t)(u >> (u % 64)) - (json_int_t)(u >> 40));
    case 3: return json_real((double)(int32_t)(u >> 16) / 64.0);
    case 4:
    case 5: {
        static const char *pieces[] = {"a", "name", " ", "\"", "\\", "/", "\n", "\x01", "\x1f", "\x7f", "\xc3\xa9", "\xe4\xb8\xad",
                                       "\xf0\x9f\x98\x80", "0123456789abcdef", "description of the parameter"};
        char s[256];
        size_t n = 0, parts = u % 12;
        for (size_t i = 0; i < parts; i++) {
            const char *p = pieces[kd_splitmix64(rng) % (sizeof pieces / sizeof pieces[0])];
            size_t l = strlen(p);
            memcpy(s + n, p, l);
            n += l;
        }
        return json_stringn(s, n);
    }
    case 6: {
        json_t *a = json_array();
        for (size_t i = 0, n = u % 6; i < n; i++) json_array_append_new(a, random_value(rng, depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (size_t i = 0, n = u % 6; i < n; i++) {
            char k[32];
            snprintf(k, sizeof k, "k%u\xc3\xa9\t", (unsigned)(kd_splitmix64(rng) % 8));
            json_object_set_new(o, k, random_value(rng, depth + 1));
        }
        if (u & 16) json_object_del(o, "k0\xc3\xa9\t");
        return o;
    }
    }
}

static void test_structures(void) {
    long bad = 0;
    json_t *e = json_pack("[[],{},[[]],{\"a\":{}},[{}],\"\",0,null,true,false]");
    bad += !same(e, "empty containers and scalars");
    json_decref(e);
    /* insertion order, also after a delete and a re-insert */
    json_t *o = json_pack("{si,si,si}", "z", 1, "a", 2, "m", 3);
    json_object_del(o, "z");
    json_object_set_new(o, "z", json_integer(4));
    json_object_set_new(o, "a", json_integer(5));
    bad += !same(o, "key order");
    json_decref(o);
    /* random trees, a subtree shared by two parents (a DAG, not a cycle) */
    uint64_t rng = 7;
    for (int i = 0; i < 3000 && bad <= 5; i++) {
        json_t *r = json_array();
        json_t *v = random_value(&rng, 0);
        json_array_append(r, v);
        json_array_append_new(r, json_pack("{sO}", "again", v));
        json_decref(v);
        bad += !same(r, "random tree");
        json_decref(r);
    }
    /* nesting deeper than the writer's first stack (64) and than jansson's parser allows (2048) */
    for (int depth = 1; depth <= 10000; depth = depth < 100 ? depth + 1 : depth * 10) {
        json_t *root = json_array(), *cur = root;
        for (int i = 1; i < depth; i++) {
            json_t *n = i % 2 ? json_object() : json_array();
            if (json_is_object(cur)) json_object_set_new(cur, "k", n);
            else json_array_append_new(cur, n);
            cur = n;
        }
        bad += !same(root, "deep nesting");
        json_decref(root);
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* A container that contains itself: json_dumps fails, and so must the writer (not loop forever), with
 * the buffer as it was. Cycles at every start depth and period 2 to 70 (past the 64 frames kept on the
 * C stack; period 1, a container holding itself directly, is refused by jansson's setters). */
static void test_cycles(void) {
    long bad = 0;
    for (int start = 0; start < 12; start++) {
        for (int period = 2; period <= 70; period += period < 10 ? 1 : 20) {
            json_t *nodes[100];
            int n = start + period;
            for (int i = 0; i < n; i++) nodes[i] = i % 3 == 1 ? json_object() : json_array();
            for (int i = 0; i < n; i++) {
                json_t *child = nodes[i + 1 < n ? i + 1 : start];
                if (json_is_object(nodes[i])) {
                    json_object_set_new(nodes[i], "leaf", json_integer(i));
                    json_object_set(nodes[i], "next", child);
                } else {
                    json_array_append_new(nodes[i], json_string("leaf"));
                    json_array_append(nodes[i], child);
                }
            }
            char *d = json_dumps(nodes[0], JSON_COMPACT);
            CU_ASSERT_PTR_NULL(d);
            free(d);
            bad += !same(nodes[0], "cycle");
            kd_jsonw w = {0};
            kd_jsonw_raw(&w, "[1,", 3);
            CU_ASSERT_EQUAL(kd_jsonw_value(&w, nodes[0]), -1);
            CU_ASSERT_STRING_EQUAL(w.data, "[1,");
            CU_ASSERT_EQUAL(w.len, 3);
            kd_jsonw_free(&w);
            /* break the cycle so the nodes can be freed */
            json_t *last = nodes[n - 1];
            if (json_is_object(last)) json_object_del(last, "next");
            else json_array_remove(last, 1);
            for (int i = n - 1; i >= 0; i--) json_decref(nodes[i]);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_writer_api(void) {
    /* kd_json_dumps_compact writes what json_dumps writes: containers only */
    json_t *i = json_integer(3);
    CU_ASSERT_PTR_NULL(kd_json_dumps_compact(i));
    CU_ASSERT_PTR_NULL(kd_json_dumps_compact(NULL));
    kd_jsonw w = {0};
    CU_ASSERT_EQUAL(kd_jsonw_value(&w, NULL), -1);
    CU_ASSERT_EQUAL(kd_jsonw_value(&w, i), 0);
    CU_ASSERT_STRING_EQUAL(w.data, "3");
    json_decref(i);
    /* a failed value leaves what was there */
    json_t *a = json_array();
    json_array_append_new(a, json_string("ok"));
    json_array_append_new(a, json_stringn_nocheck("\xff", 1));
    CU_ASSERT_EQUAL(kd_jsonw_value(&w, a), -1);
    CU_ASSERT_STRING_EQUAL(w.data, "3");
    CU_ASSERT_EQUAL(w.len, 1);
    json_decref(a);
    /* kd_jsonw_string writes bytes that are not UTF-8 as they are */
    kd_jsonw_string(&w, "\xff/\x1f", 3);
    CU_ASSERT_STRING_EQUAL(w.data, "3\"\xff/\\u001F\"");
    char *s = kd_jsonw_take(&w);
    CU_ASSERT_STRING_EQUAL(s, "3\"\xff/\\u001F\"");
    free(s);
    /* take on an empty writer gives "", and the writer is reusable after take */
    s = kd_jsonw_take(&w);
    CU_ASSERT_STRING_EQUAL(s, "");
    free(s);
    kd_jsonw_raw(&w, "x", 1);
    CU_ASSERT_STRING_EQUAL(w.data, "x");
    /* out of memory: a request no allocator can meet sets oom, drops the buffer, makes every later write a
     * no-op and take NULL; take then resets the writer for reuse */
    kd_jsonw_raw(&w, "never read", SIZE_MAX / 2);
    CU_ASSERT_EQUAL(w.oom, 1);
    CU_ASSERT_PTR_NULL(w.data);
    kd_jsonw_int(&w, 5);
    kd_jsonw_string(&w, "a", 1);
    json_t *e = json_array();
    CU_ASSERT_EQUAL(kd_jsonw_value(&w, e), -1);
    json_decref(e);
    CU_ASSERT_PTR_NULL(w.data);
    CU_ASSERT_PTR_NULL(kd_jsonw_take(&w));
    CU_ASSERT_EQUAL(w.oom, 0);
    kd_jsonw_int(&w, 5);
    CU_ASSERT_STRING_EQUAL(w.data, "5");
    kd_jsonw_free(&w);
    kd_jsonw_free(&w);
    CU_ASSERT_PTR_NULL(w.data);
}

static void test_utf8_escape(void) {
    CU_ASSERT_EQUAL(kd_utf8_valid_prefix("abc", 3), 3);
    CU_ASSERT_EQUAL(kd_utf8_valid_prefix("ab\xff" "c", 4), 2);
    CU_ASSERT_EQUAL(kd_utf8_valid_prefix("\xc3\xa9\xed\xa0\x80", 5), 2); /* a surrogate */
    CU_ASSERT_EQUAL(kd_utf8_valid_prefix("\xc0\x80", 2), 0);                /* an overlong NUL */
    char *e = kd_utf8_escape("ok \xc3\xa9 \xff\xfe\xc3 end", 13);
    CU_ASSERT_STRING_EQUAL(e, "ok \xc3\xa9 \\xFF\\xFE\\xC3 end");
    /* the escaped text goes into JSON, where the raw bytes could not */
    json_t *s = json_string(e);
    CU_ASSERT_PTR_NOT_NULL(s);
    json_decref(s);
    free(e);
    e = kd_utf8_escape("a\0b", 3);
    CU_ASSERT_STRING_EQUAL(e, "a\\x00b");
    free(e);
    e = kd_utf8_escape("", 0);
    CU_ASSERT_STRING_EQUAL(e, "");
    free(e);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("jsonw", NULL, NULL);
    CU_add_test(s, "BFCL and glaive records equal json_dumps", test_shared_data);
    CU_add_test(s, "tool registry and teacher request body", test_tools_and_request_body);
    CU_add_test(s, "string escapes at every offset", test_string_escapes);
    CU_add_test(s, "invalid UTF-8 values and keys", test_invalid_utf8);
    CU_add_test(s, "integers and reals", test_numbers);
    CU_add_test(s, "structures: empty, order, random, deep", test_structures);
    CU_add_test(s, "cycles refused", test_cycles);
    CU_add_test(s, "writer API and out of memory", test_writer_api);
    CU_add_test(s, "UTF-8 escape for failure records", test_utf8_escape);
    return kd_test_main();
}
