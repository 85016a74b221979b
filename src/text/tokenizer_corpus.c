/* Synthetic tokenizer-training corpus (see include/kdstep/tokenizer_corpus.h). */
#include "kdstep/tokenizer_corpus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdstep/bpe_train.h"
#include "kdstep/chat.h"
#include "kdstep/fsutil.h"
#include "kdstep/hash.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const WORDS[] = {
    "the", "a", "of", "to", "and", "in", "is", "it", "for", "that", "on", "with", "as", "this", "be", "at", "by",
    "from", "or", "an", "are", "was", "can", "will", "file", "report", "data", "meeting", "weather", "city",
    "email", "message", "result", "value", "number", "list", "search", "page", "time", "date", "week", "project",
    "team", "budget", "price", "stock", "market", "order", "customer", "account", "server", "error", "log",
    "folder", "document", "summary", "question", "answer", "request", "response", "function", "tool", "call",
    "argument", "parameter", "query", "temperature", "forecast", "rain", "sunny", "cloudy", "tomorrow", "today",
    "yesterday", "morning", "evening", "afternoon", "please", "could", "would", "should", "need", "want", "check",
    "find", "send", "read", "write", "open", "close", "update", "create", "delete", "schedule", "convert",
    "translate", "calculate", "compare", "show", "tell", "me", "my", "our", "your", "their", "about", "after",
    "before", "between", "into", "over", "under", "again", "quickly", "carefully", "latest", "recent", "first",
    "last", "next", "previous", "total", "average", "current", "important", "quarterly", "annual", "monthly",
    "daily", "new", "old", "small", "large", "short", "long", "simple", "detailed", "manager", "colleague",
    "client", "invoice", "contract", "presentation", "slides", "notes", "draft", "version", "release", "build",
    "test", "script", "command", "directory", "path", "line", "word", "text", "language", "English", "French",
    "German", "Spanish", "Japanese", "Chinese", "meters", "miles", "kilograms", "pounds", "celsius", "fahrenheit",
    "dollars", "euros", "percent", "hours", "minutes", "seconds", "because", "however", "therefore", "also",
    "then", "here", "there", "which", "what", "when", "where", "who", "how", "why", "all", "some", "each",
    "every", "other", "more", "most", "less", "than", "not", "no", "yes", "done", "ready", "sure", "thanks"};
static const char *const CITIES[] = {"Paris", "London", "Tokyo", "New York", "Berlin", "São Paulo", "Zürich",
                                     "Mumbai", "Cairo", "Sydney", "Toronto", "Seoul", "Mexico City", "Lagos",
                                     "Reykjavík", "Kraków", "Istanbul", "Beijing", "Moscow", "Nairobi"};
static const char *const NAMES[] = {"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
                                    "ivan", "judy", "mallory", "oscar", "peggy", "trent", "victor", "wendy"};
static const char *const SCRIPTS[] = {
    "Привет, как дела? Сегодня хорошая погода.", "こんにちは、今日の天気はどうですか？", "今天的天气怎么样？我想去公园。",
    "안녕하세요, 오늘 회의는 몇 시인가요?", "مرحبا، كيف حالك اليوم؟", "नमस्ते, आज मौसम कैसा है?",
    "שלום, מה שלומך היום?", "Γεια σου, τι κάνεις σήμερα;", "สวัสดีครับ วันนี้อากาศดีไหม", "Xin chào, hôm nay trời thế nào?",
    "Merhaba, bugün hava nasıl?", "Grüß Gott! Das Wetter in München ist schön.", "¿Qué tiempo hará mañana en Málaga?",
    "Ça va très bien, merci beaucoup !", "Emoji: 👍 🎉 🚀 👩‍💻 🇯🇵 ❤️", "Math: ∑ x² ≤ ∞, α β γ δ π ≈ 3.14159"};
static const char *const OPENERS[] = {"Can you", "Could you please", "Please", "I need you to", "Hey, can you",
                                      "Would you", "Quick question: can you", "I'd like you to", "Help me"};
static const char *const CODE[] = {
    "def main(argv):\n    for i, line in enumerate(open(argv[1])):\n        if line.strip():\n            print(i, line)\n",
    "int sum(const int *a, size_t n) {\n    int s = 0;\n    for (size_t i = 0; i < n; i++) s += a[i];\n    return s;\n}\n",
    "for f in *.txt; do\n  wc -l \"$f\" >> counts.log\ndone\n",
    "const result = await fetch(url, { method: 'POST', body: JSON.stringify(data) });\nconsole.log(result.status);\n",
    "SELECT name, COUNT(*) AS n FROM orders WHERE total > 100 GROUP BY name ORDER BY n DESC;\n",
    "class Cache:\n    def __init__(self, size=128):\n        self.items = {}\n        self.size = size\n"};

typedef struct rng {
    uint64_t s;
} rng;
static uint64_t rnd(rng *r, uint64_t n) { return n ? kd_splitmix64(&r->s) % n : 0; }
static const char *pick(rng *r, const char *const *a, size_t n) { return a[rnd(r, n)]; }

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;
static int bput(buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap * 2 : 4096;
        while (c < b->len + n + 1) c *= 2;
        char *p = realloc(b->p, c);
        if (!p) return -1;
        b->p = p;
        b->cap = c;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}
static int bputs(buf *b, const char *s) { return bput(b, s, strlen(s)); }

/* English-looking made-up words, Zipf-like in use, so the corpus has tens of thousands of distinct
 * words and a vocabulary of several thousand merges has real subwords to learn. */
#define LEXICON 30000
static const char *const ONSET[] = {"", "", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s",
                                    "t", "v", "w", "st", "tr", "pr", "ch", "sh", "th", "bl", "gr", "cl", "fr", "sp"};
static const char *const VOWEL[] = {"a", "e", "i", "o", "u", "ea", "ou", "ai", "io", "y", "ee", "oa"};
static const char *const CODA[] = {"", "", "", "n", "r", "s", "t", "l", "nd", "st", "ng", "ck", "m", "ter", "tion",
                                   "ment", "ing", "ed", "er", "ly", "ness", "able", "ous", "ive"};

static const char *lexicon_word(rng *r, char *tmp, size_t cap) {
    double u = (double)rnd(r, 1u << 30) / (double)(1u << 30);
    uint64_t idx = (uint64_t)(LEXICON * u * u * u); /* skewed: low indices are common */
    rng w = {idx * 0x9E3779B97F4A7C15ULL + 7};
    tmp[0] = 0;
    for (int k = 0, n = 1 + (int)rnd(&w, 3); k < n; k++) {
        strncat(tmp, pick(&w, ONSET, N(ONSET)), cap - strlen(tmp) - 1);
        strncat(tmp, pick(&w, VOWEL, N(VOWEL)), cap - strlen(tmp) - 1);
        if (k == n - 1 || rnd(&w, 3) == 0) strncat(tmp, pick(&w, CODA, N(CODA)), cap - strlen(tmp) - 1);
    }
    return tmp;
}

static void sentence(rng *r, buf *b, int capital) {
    int n = 4 + (int)rnd(r, 12);
    char tmp[64];
    for (int i = 0; i < n; i++) {
        const char *w = rnd(r, 10) < 3 ? lexicon_word(r, tmp, sizeof tmp) : pick(r, WORDS, N(WORDS));
        if (i) bputs(b, " ");
        if (i == 0 && capital && w[0] >= 'a' && w[0] <= 'z') {
            char c = (char)(w[0] - 32);
            bput(b, &c, 1);
            bputs(b, w + 1);
        } else {
            bputs(b, w);
        }
        if (i + 1 < n && rnd(r, 10) == 0) bputs(b, ",");
    }
    bputs(b, rnd(r, 5) ? "." : (rnd(r, 2) ? "?" : "!"));
}

static int has(const char *name, const char *part) { return strstr(name, part) != NULL; }

/* A plausible value for a parameter from its schema and name. */
static json_t *gen_value(rng *r, const char *name, const json_t *schema) {
    const json_t *en = json_object_get(schema, "enum");
    if (json_is_array(en) && json_array_size(en)) return json_deep_copy(json_array_get(en, rnd(r, json_array_size(en))));
    const char *type = json_string_value(json_object_get(schema, "type"));
    char tmp[256];
    if (!type) type = "string";
    if (!strcmp(type, "integer")) return json_integer((json_int_t)(1 + rnd(r, has(name, "year") ? 3000 : 120)));
    if (!strcmp(type, "number")) return json_real((double)rnd(r, 100000) / 100.0);
    if (!strcmp(type, "boolean")) return json_boolean(rnd(r, 2));
    if (!strcmp(type, "array")) {
        json_t *a = json_array();
        const json_t *items = json_object_get(schema, "items");
        for (int i = 0, n = 1 + (int)rnd(r, 3); i < n; i++) json_array_append_new(a, gen_value(r, name, items));
        return a;
    }
    if (!strcmp(type, "object")) return json_object();
    if (has(name, "path") || has(name, "cwd") || has(name, "pattern"))
        snprintf(tmp, sizeof tmp, "%s/%s_%d.%s", pick(r, (const char *const[]){"docs", "src", "notes", "data", "."}, 5),
                 pick(r, WORDS, N(WORDS)), (int)rnd(r, 100), pick(r, (const char *const[]){"txt", "md", "csv", "py", "json"}, 5));
    else if (has(name, "url"))
        snprintf(tmp, sizeof tmp, "https://www.%s.com/%s/%s?id=%d", pick(r, WORDS, N(WORDS)), pick(r, WORDS, N(WORDS)),
                 pick(r, WORDS, N(WORDS)), (int)rnd(r, 10000));
    else if (has(name, "date"))
        snprintf(tmp, sizeof tmp, "20%02d-%02d-%02d", 20 + (int)rnd(r, 8), 1 + (int)rnd(r, 12), 1 + (int)rnd(r, 28));
    else if (has(name, "time"))
        snprintf(tmp, sizeof tmp, "%02d:%02d", 7 + (int)rnd(r, 12), 15 * (int)rnd(r, 4));
    else if (has(name, "to") || has(name, "cc") || has(name, "from") || has(name, "attendee"))
        snprintf(tmp, sizeof tmp, "%s@%s.com", pick(r, NAMES, N(NAMES)), pick(r, (const char *const[]){"example", "corp", "mail"}, 3));
    else if (has(name, "city") || has(name, "location"))
        snprintf(tmp, sizeof tmp, "%s", pick(r, CITIES, N(CITIES)));
    else if (has(name, "symbol"))
        snprintf(tmp, sizeof tmp, "%s", pick(r, (const char *const[]){"AAPL", "MSFT", "GOOG", "NVDA", "TSLA", "AMZN"}, 6));
    else if (has(name, "command"))
        snprintf(tmp, sizeof tmp, "%s", pick(r, (const char *const[]){"ls -la", "git status", "make test", "df -h", "python3 run.py --fast", "grep -rn TODO src"}, 6));
    else if (has(name, "expression"))
        snprintf(tmp, sizeof tmp, "(%d + %d) * %d / %d", (int)rnd(r, 1000), (int)rnd(r, 100), (int)rnd(r, 50), 1 + (int)rnd(r, 9));
    else if (has(name, "unit"))
        snprintf(tmp, sizeof tmp, "%s", pick(r, (const char *const[]){"meters", "feet", "kilograms", "pounds", "celsius", "miles"}, 6));
    else if (has(name, "language"))
        snprintf(tmp, sizeof tmp, "%s", pick(r, (const char *const[]){"fr", "de", "es", "ja", "zh", "en", "ru"}, 7));
    else {
        buf b = {0};
        sentence(r, &b, 1);
        json_t *s = json_string(b.p ? b.p : "");
        free(b.p);
        return s;
    }
    return json_string(tmp);
}

static json_t *gen_args(rng *r, const json_t *params) {
    json_t *args = json_object();
    const json_t *props = json_object_get(params, "properties"), *req = json_object_get(params, "required");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)props, k, v) {
        int required = 0;
        for (size_t i = 0; i < json_array_size(req); i++) required |= !strcmp(json_string_value(json_array_get(req, i)), k);
        if (required || rnd(r, 2)) json_object_set_new(args, k, gen_value(r, k, v));
    }
    return args;
}

static int conversation(rng *r, const json_t *tools, buf *out, kd_error *err) {
    size_t nt = json_array_size(tools);
    kd_chat_message m[12];
    buf text[12] = {{0}};
    json_t *calls = json_array();
    int n = 0;
    if (rnd(r, 2)) {
        sentence(r, &text[n], 1);
        m[n] = (kd_chat_message){.role = "system", .content = rnd(r, 2) ? "You are a helpful assistant." : text[n].p};
        n++;
    }
    int ncalls = 1 + (int)(rnd(r, 4) == 0);
    for (int c = 0; c < ncalls; c++) {
        const json_t *fn = json_object_get(json_array_get(tools, rnd(r, nt)), "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        json_t *args = gen_args(r, json_object_get(fn, "parameters"));
        json_array_append_new(calls, json_pack("{s{ss so}}", "function", "name", name ? name : "tool", "arguments", args));
    }
    buf *u = &text[n];
    bputs(u, pick(r, OPENERS, N(OPENERS)));
    bputs(u, " ");
    const char *desc = json_string_value(json_object_get(
        json_object_get(json_array_get(calls, 0), "function"), "name"));
    bputs(u, rnd(r, 2) ? "use " : "help with ");
    bputs(u, desc ? desc : "this");
    bputs(u, "? ");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(json_object_get(json_array_get(calls, 0), "function"), "arguments"), k, v) {
        char *s = json_is_string(v) ? strdup(json_string_value(v)) : kd_chat_tojson(v);
        bputs(u, "The ");
        bputs(u, k);
        bputs(u, " is ");
        bputs(u, s ? s : "");
        bputs(u, ". ");
        free(s);
    }
    if (rnd(r, 4) == 0) bputs(u, pick(r, SCRIPTS, N(SCRIPTS)));
    m[n] = (kd_chat_message){.role = "user", .content = u->p};
    n++;
    sentence(r, &text[n], 1);
    m[n] = (kd_chat_message){.role = "assistant", .content = rnd(r, 3) ? "" : text[n].p, .tool_calls = calls};
    n++;
    for (int c = 0; c < ncalls; c++) {
        json_t *res = json_pack("{ss si}", "status", rnd(r, 5) ? "ok" : "error", "count", (int)rnd(r, 50));
        json_object_set_new(res, pick(r, WORDS, N(WORDS)), gen_value(r, "result", NULL));
        char *s = kd_chat_tojson(res);
        json_decref(res);
        bputs(&text[n], s ? s : "{}");
        free(s);
        m[n] = (kd_chat_message){.role = "tool", .content = text[n].p};
        n++;
    }
    sentence(r, &text[n], 1);
    bputs(&text[n], " ");
    sentence(r, &text[n], 1);
    m[n] = (kd_chat_message){.role = "assistant", .content = text[n].p};
    n++;
    kd_chat_result res;
    int rc = kd_chat_render(m, n, rnd(r, 3) == 0 ? tools : NULL, 0, &res, err);
    if (rc == KD_OK) {
        bput(out, res.text, res.len);
        kd_chat_render_free(&res);
    }
    for (int i = 0; i < 12; i++) free(text[i].p);
    json_decref(calls);
    return rc;
}

static void prose(rng *r, buf *b) {
    int k = (int)rnd(r, 6);
    if (k == 0) {
        bputs(b, pick(r, CODE, N(CODE)));
    } else if (k == 1) {
        json_t *schema = json_pack("{s{s{ss}s{ss}s{ss}s{ss}}}", "properties", "date", "type", "string", "city", "type",
                                   "string", "amount", "type", "number", "count", "type", "integer");
        json_t *o = gen_args(r, schema);
        json_decref(schema);
        char *s = kd_chat_tojson(o);
        bputs(b, s ? s : "{}");
        bputs(b, "\n");
        free(s);
        json_decref(o);
    } else if (k == 2) {
        bputs(b, pick(r, SCRIPTS, N(SCRIPTS)));
        bputs(b, "\n");
    } else {
        for (int i = 0, n = 1 + (int)rnd(r, 5); i < n; i++) {
            if (i) bputs(b, rnd(r, 4) ? " " : "\n\n");
            sentence(r, b, 1);
            if (rnd(r, 6) == 0) {
                char tmp[64];
                snprintf(tmp, sizeof tmp, " It costs $%d.%02d, about %d%% more.", (int)rnd(r, 5000), (int)rnd(r, 100),
                         (int)rnd(r, 90));
                bputs(b, tmp);
            }
        }
        bputs(b, "\n");
    }
}

int kd_tokenizer_corpus_write(FILE *out, const json_t *tools, size_t bytes, uint64_t seed, kd_error *err) {
    rng r = {seed ^ 0x6b647374657021ULL};
    int with_tools = json_is_array(tools) && json_array_size(tools) > 0;
    size_t written = 0;
    buf b = {0};
    while (written < bytes) {
        b.len = 0;
        if (with_tools && rnd(&r, 3)) {
            int rc = conversation(&r, tools, &b, err);
            if (rc) {
                free(b.p);
                return rc;
            }
        } else {
            prose(&r, &b);
        }
        if (!b.p) return kd_error_set(err, KD_ERR_NOMEM, "out of memory writing the tokenizer corpus");
        if (fwrite(b.p, 1, b.len, out) != b.len) {
            free(b.p);
            return kd_error_errno(err, errno, "writing the tokenizer corpus");
        }
        written += b.len;
    }
    free(b.p);
    return KD_OK;
}

/* ---- the default student tokenizer ---- */

int kd_tokenizer_make_student(const char *dir, const char *tools_path, int vocab_size, kd_error *err) {
    char path[4096], tmp[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (kd_path_exists(path)) return KD_OK;
    json_error_t je;
    json_t *tools = json_load_file(tools_path, 0, &je);
    if (!tools)
        return kd_error_set(err, KD_ERR_PARSE, "%s:%d:%d: %s (the tools file the student tokenizer's corpus is made over)",
                            tools_path, je.line, je.column, je.text);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int rc = f ? KD_OK : kd_error_set(err, KD_ERR_NOMEM, "out of memory for the tokenizer corpus");
    if (!rc) rc = kd_tokenizer_corpus_write(f, tools, (size_t)(KD_STUDENT_CORPUS_MB * 1e6), KD_STUDENT_CORPUS_SEED, err);
    if (f && fclose(f) != 0 && !rc) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory for the tokenizer corpus");
    json_decref(tools);
    kd_bpe_trainer *t = NULL;
    kd_bpe_train_options o = {.vocab_size = vocab_size};
    if (!rc) rc = kd_bpe_trainer_new(&t, &o, err);
    if (!rc) rc = kd_bpe_trainer_add_text(t, text, len, err);
    free(text);
    if (!rc) rc = kd_bpe_trainer_train(t, err);
    /* a private folder renamed into place: concurrent makers (array elements) cannot mix their files */
    char host[128] = "host";
    gethostname(host, sizeof host - 1);
    snprintf(tmp, sizeof tmp, "%s.tmp-%s-%ld", dir, host, (long)getpid());
    if (!rc) rc = kd_bpe_trainer_save(t, tmp, err);
    kd_bpe_trainer_free(t);
    if (!rc && rename(tmp, dir) != 0) {
        if (kd_path_exists(path)) kd_rm_rf(tmp, NULL); /* another process made it first: same bytes */
        else rc = kd_error_errno(err, errno, "%s: cannot move the new tokenizer into place (a folder without tokenizer.json "
                                             "is in the way: remove it)", dir);
    }
    if (rc) kd_rm_rf(tmp, NULL);
    return rc;
}
