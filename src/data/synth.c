/* Prompt synthesizer: see include/kdstep/synth.h. */
#include "kdstep/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdstep/hash.h"
#include "kdstep/sbuf.h"
#include "synth_internal.h"

#define PICK(rng, arr) (arr)[kd_splitmix64(rng) % (sizeof(arr) / sizeof((arr)[0]))]

static const char *PATHS[] = {"src/main.c", "README.md", "docs/notes.md", "data/sales_2024.csv", "config.yaml",
                              "logs/server.log", "/etc/hosts", "notes/todo.txt", "reports/q3_summary.md",
                              "scripts/deploy.sh", "tests/test_api.py", "assets/logo.svg", "build/output.json",
                              "/var/log/syslog", "home/alice/letters/draft.txt", "Makefile", "package.json",
                              "src/utils/strings.rs", "~/Downloads/invoice_8812.pdf", "data/users.jsonl"};
static const char *DIRS[] = {"src", "docs", "data/raw", ".", "/tmp", "tests/fixtures", "~/projects/kdstep", "assets/img",
                             "/var/log", "notes"};
static const char *QUERIES[] = {"best hiking trails near Denver", "python asyncio timeout example", "how to fix a leaking faucet",
                                "latest Mars rover findings", "vegan lasagna recipe", "HDF5 virtual dataset tutorial",
                                "cheap flights Lisbon to Berlin", "symptoms of vitamin D deficiency",
                                "2026 electric car range comparison", "history of the printing press",
                                "rust borrow checker explained", "quarterly budget review", "invoice from Acme Corp",
                                "team offsite agenda", "password reset", "job interview tips for engineers"};
static const char *CITIES[] = {"Paris", "Tokyo", "New York", "Lagos", "São Paulo", "Berlin", "Mumbai", "Sydney", "Toronto",
                               "Cairo", "Reykjavik", "Buenos Aires", "Seoul", "Nairobi", "Madrid", "Zürich", "Vancouver",
                               "Hanoi", "Lima", "Oslo"};
static const char *NAMES[] = {"alice", "bob", "carol", "dmitri", "elena", "farid", "grace", "hiro", "ines", "jamal"};
static const char *DOMAINS[] = {"example.com", "acme.org", "mail.test", "uni.edu", "startup.io"};
static const char *SITES[] = {"wikipedia.org", "stackoverflow.com", "github.com", "arxiv.org", "bbc.co.uk", "nasa.gov"};
static const char *URLS[] = {"https://example.com/pricing", "https://news.ycombinator.com/item?id=4213",
                             "https://en.wikipedia.org/wiki/Distillation", "https://docs.python.org/3/library/json.html",
                             "http://intranet.local/status", "https://arxiv.org/abs/1503.02531",
                             "https://www.gutenberg.org/files/1342/1342-0.txt", "https://api.acme.org/v2/report"};
static const char *TITLES[] = {"Team standup", "Dentist appointment", "Quarterly review", "Lunch with Sam", "Project kickoff",
                               "Yoga class", "Budget planning", "Flight to Lisbon", "Parent-teacher meeting", "Code review"};
static const char *SENTENCES[] = {"The meeting moved to Thursday.", "Remember to water the plants.",
                                  "Shipping is delayed by two days.", "All tests pass on the main branch.",
                                  "Please bring the signed contract.", "Dinner is at 7 pm.",
                                  "The server restarts at midnight.", "Thanks for your help last week!"};
static const char *COMMANDS[] = {"ls -la", "git status", "df -h", "python3 --version", "make test", "du -sh data",
                                 "grep -rn TODO src", "uptime", "cat /proc/cpuinfo | head -5", "npm run build"};
static const char *GLOBS[] = {"*.py", "*.md", "*.c", "*.json", "report_*.csv", "*.log"};
static const char *SYMBOLS[] = {"AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "GOOGL", "SAP", "TM", "ASML", "IBM"};
static const char *LANGS[] = {"fr", "de", "es", "ja", "it", "pt", "nl", "ko", "sw", "pl"};
static const char *UNITS[][2] = {{"km", "mi"}, {"mi", "km"}, {"kg", "lb"}, {"lb", "kg"}, {"celsius", "fahrenheit"},
                                 {"fahrenheit", "celsius"}, {"m", "ft"}, {"l", "gal"}, {"cm", "in"}};
static const char *PHRASES[] = {"Good morning, how are you?", "The invoice is attached.", "Where is the train station?",
                                "I will be late today.", "Thank you for the wonderful dinner.", "Happy birthday!",
                                "Please close the window.", "The results look promising."};
static const char *WORDS[] = {"alpha", "orbit", "maple", "quartz", "harbor", "lantern", "meadow", "cobalt", "falcon",
                              "velvet"};

/* Prompts that need no tool: answerable from knowledge, or small talk. */
static const char *NO_TOOL[] = {"Tell me a joke about %s.", "Explain what %s means in one sentence.",
                                "Write a haiku about %s.", "What is a good name for a cat that loves %s?",
                                "Give me three tips for learning about %s.", "Summarize why people enjoy %s.",
                                "Thanks, that was helpful! Can you say it more simply: what is %s?",
                                "Hi! Just wanted to say hello. What do you know about %s?"};
static const char *TOPICS[] = {"recursion", "penguins", "the French Revolution", "photosynthesis", "jazz", "compound interest",
                               "black holes", "sourdough bread", "the Pythagorean theorem", "chess openings",
                               "autumn leaves", "machine learning", "the Roman Empire", "coffee", "volcanoes",
                               "the water cycle", "origami", "supply and demand", "honeybees", "the Silk Road",
                               "quantum entanglement", "marathon training", "impressionist painting", "tides",
                               "public-key cryptography", "the immune system", "bonsai trees", "plate tectonics",
                               "the blues", "prime numbers", "octopuses", "Stoic philosophy", "solar panels"};
/* Closings that change nothing a tool needs, for variety. */
static const char *CLOSINGS[] = {"", "", "", "", " Thanks!", " Thank you.", " Keep it short.", " Thanks in advance.",
                                 " It's urgent.", " No rush."};
/* Openers before an imperative clause ("show me ..."), and those that also fit a question or a full
 * sentence ("what is ...", "I want to ..."). */
static const char *OPENERS_IMPERATIVE[] = {"", "", "Please ", "Hey, ", "I need you to ", "Quick one: ", "Now "};
static const char *OPENERS_ANY[] = {"", "", "Hey, ", "Quick one: "};
static const char *JOINERS[] = {" Then ", " After that, ", " Also, ", " Once that's done, ", " And "};

/* ---- values ------------------------------------------------------------------------------------- */

static int name_has(const char *name, const char *part) { return strstr(name, part) != NULL; }

static void random_date(uint64_t *rng, int offset_days_max, char out[11], int base_days, int *days_out) {
    int days = base_days >= 0 ? base_days + (int)(kd_splitmix64(rng) % (uint64_t)(offset_days_max + 1))
                              : (int)(kd_splitmix64(rng) % 700);
    struct tm tm = {0};
    tm.tm_year = 2025 - 1900;
    tm.tm_mon = 0;
    tm.tm_mday = 1 + days;
    time_t t = timegm(&tm);
    gmtime_r(&t, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
    if (days_out) *days_out = days;
}

static int64_t clamp_int(const json_t *schema, int64_t lo, int64_t hi, uint64_t *rng) {
    json_t *mn = json_object_get(schema, "minimum"), *mx = json_object_get(schema, "maximum");
    if (json_is_number(mn) && lo < (int64_t)ceil(json_number_value(mn))) lo = (int64_t)ceil(json_number_value(mn));
    if (json_is_number(mx) && hi > (int64_t)floor(json_number_value(mx))) hi = (int64_t)floor(json_number_value(mx));
    if (hi < lo) hi = lo;
    return lo + (int64_t)(kd_splitmix64(rng) % (uint64_t)(hi - lo + 1));
}

static json_t *gen_value(const char *name, const json_t *schema, uint64_t *rng, int depth, void *ctx);

typedef struct gen_ctx {
    const char *tool;
    int date_base; /* days of the last start date, so an end date follows it */
    const char *from_unit;
} gen_ctx;

static json_t *gen_string(const char *name, uint64_t *rng, gen_ctx *c) {
    char buf[256];
    if (name_has(name, "url") || name_has(name, "link")) return json_string(PICK(rng, URLS));
    if (strcmp(name, "path") == 0 && c->tool && (name_has(c->tool, "dir") || name_has(c->tool, "list")))
        return json_string(PICK(rng, DIRS));
    if (name_has(name, "path") || name_has(name, "file")) return json_string(PICK(rng, PATHS));
    if (name_has(name, "cwd") || name_has(name, "dir") || name_has(name, "folder")) return json_string(PICK(rng, DIRS));
    if (name_has(name, "pattern") || name_has(name, "glob")) return json_string(PICK(rng, GLOBS));
    if (name_has(name, "query") || name_has(name, "keyword") || name_has(name, "search"))
        return json_string(PICK(rng, QUERIES));
    if (name_has(name, "city") || name_has(name, "location") || name_has(name, "place"))
        return json_string(PICK(rng, CITIES));
    if (name_has(name, "date") || name_has(name, "day")) {
        char d[11];
        if (name_has(name, "end") && c->date_base >= 0) {
            random_date(rng, 30, d, c->date_base, NULL);
        } else {
            random_date(rng, 0, d, -1, &c->date_base);
        }
        return json_string(d);
    }
    if (name_has(name, "time")) {
        snprintf(buf, sizeof buf, "%02d:%02d", 7 + (int)(kd_splitmix64(rng) % 12), (int)(kd_splitmix64(rng) % 4) * 15);
        return json_string(buf);
    }
    if (name_has(name, "email") || strcmp(name, "to") == 0 || strcmp(name, "from") == 0 || strcmp(name, "cc") == 0 ||
        name_has(name, "attendee") || name_has(name, "recipient") || name_has(name, "sender")) {
        snprintf(buf, sizeof buf, "%s@%s", PICK(rng, NAMES), PICK(rng, DOMAINS));
        return json_string(buf);
    }
    if (name_has(name, "site") || name_has(name, "domain")) return json_string(PICK(rng, SITES));
    if (name_has(name, "symbol") || name_has(name, "ticker")) return json_string(PICK(rng, SYMBOLS));
    if (name_has(name, "language") || name_has(name, "lang")) return json_string(PICK(rng, LANGS));
    if (name_has(name, "unit")) {
        if (name_has(name, "to") && c->from_unit) {
            for (size_t i = 0; i < sizeof UNITS / sizeof UNITS[0]; i++)
                if (strcmp(UNITS[i][0], c->from_unit) == 0) return json_string(UNITS[i][1]);
        }
        size_t i = kd_splitmix64(rng) % (sizeof UNITS / sizeof UNITS[0]);
        c->from_unit = UNITS[i][0];
        return json_string(UNITS[i][0]);
    }
    if (name_has(name, "command") || name_has(name, "cmd")) return json_string(PICK(rng, COMMANDS));
    if (name_has(name, "expression") || name_has(name, "formula")) {
        static const char *ops[] = {"+", "-", "*", "/"};
        snprintf(buf, sizeof buf, "(%d %s %d) %s %d", 2 + (int)(kd_splitmix64(rng) % 98), PICK(rng, ops),
                 1 + (int)(kd_splitmix64(rng) % 50), PICK(rng, ops), 2 + (int)(kd_splitmix64(rng) % 9));
        return json_string(buf);
    }
    if (name_has(name, "title") || name_has(name, "subject") || name_has(name, "name"))
        return json_string(PICK(rng, TITLES));
    if (strcmp(name, "text") == 0 || name_has(name, "message")) return json_string(PICK(rng, PHRASES));
    if (name_has(name, "body") || name_has(name, "content") || name_has(name, "description") || name_has(name, "note"))
        return json_string(PICK(rng, SENTENCES));
    snprintf(buf, sizeof buf, "%s-%d", PICK(rng, WORDS), (int)(kd_splitmix64(rng) % 100));
    return json_string(buf);
}

static json_t *gen_value(const char *name, const json_t *schema, uint64_t *rng, int depth, void *vctx) {
    gen_ctx *c = vctx;
    json_t *en = json_object_get(schema, "enum");
    if (json_is_array(en) && json_array_size(en) > 0)
        return json_deep_copy(json_array_get(en, kd_splitmix64(rng) % json_array_size(en)));
    json_t *type = json_object_get(schema, "type");
    const char *t = json_string_value(type);
    if (json_is_array(type)) t = json_string_value(json_array_get(type, 0));
    if (!t) t = json_object_get(schema, "properties") ? "object" : "string";
    if (strcmp(t, "string") == 0) return gen_string(name, rng, c);
    if (strcmp(t, "integer") == 0) {
        int64_t lo = 1, hi = 100;
        if (name_has(name, "day")) hi = 14;
        else if (name_has(name, "minute")) return json_integer(clamp_int(schema, 1, 8, rng) * 15);
        else if (name_has(name, "byte") || name_has(name, "char") || name_has(name, "size")) lo = 512, hi = 65536;
        else if (name_has(name, "year")) lo = 1990, hi = 2026;
        else if (name_has(name, "limit") || name_has(name, "num") || name_has(name, "count")) hi = 25;
        else if (name_has(name, "precision") || name_has(name, "decimal")) hi = 6, lo = 0;
        return json_integer(clamp_int(schema, lo, hi, rng));
    }
    if (strcmp(t, "number") == 0) {
        /* quarters are exact in binary, so the JSON and the prompt print the same digits */
        double lo = 0.25, hi = 500;
        json_t *mn = json_object_get(schema, "minimum"), *mx = json_object_get(schema, "maximum");
        if (name_has(name, "timeout")) hi = 120;
        if (json_is_number(mn) && lo < json_number_value(mn)) lo = json_number_value(mn);
        if (json_is_number(mx) && hi > json_number_value(mx)) hi = json_number_value(mx);
        double q = ceil(lo * 4), span = floor(hi * 4) - q;
        double v = (q + (span > 0 ? (double)(kd_splitmix64(rng) % (uint64_t)(span + 1)) : 0)) / 4.0;
        return json_real(v);
    }
    if (strcmp(t, "boolean") == 0) return json_boolean(kd_splitmix64(rng) & 1);
    if (strcmp(t, "array") == 0) {
        json_t *items = json_object_get(schema, "items");
        json_t *mi = json_object_get(schema, "minItems"), *mx = json_object_get(schema, "maxItems");
        int64_t lo = json_is_integer(mi) ? json_integer_value(mi) : 1, hi = json_is_integer(mx) ? json_integer_value(mx) : 3;
        if (lo < 1 && hi >= 1) lo = 1;
        if (hi > 3 && lo <= 3) hi = 3;
        if (hi < lo) hi = lo;
        int64_t n = lo + (int64_t)(kd_splitmix64(rng) % (uint64_t)(hi - lo + 1));
        json_t *arr = json_array();
        for (int64_t i = 0; i < n; i++) {
            json_t *v = gen_value(name, items ? items : json_object_get(schema, "nothing"), rng, depth + 1, c);
            json_array_append_new(arr, v ? v : json_string("x"));
        }
        return arr;
    }
    if (strcmp(t, "object") == 0) {
        json_t *obj = json_object(), *props = json_object_get(schema, "properties");
        json_t *req = json_object_get(schema, "required");
        const char *k;
        json_t *ps;
        json_object_foreach(props, k, ps) {
            int required = 0;
            size_t i;
            json_t *r;
            json_array_foreach(req, i, r) required |= json_is_string(r) && strcmp(json_string_value(r), k) == 0;
            /* optional arguments appear in about a third of the calls (none at depth > 2) */
            if (!required && (depth > 1 || kd_splitmix64(rng) % 3 != 0)) continue;
            json_object_set_new(obj, k, gen_value(k, ps, rng, depth + 1, c));
        }
        return obj;
    }
    if (strcmp(t, "null") == 0) return json_null();
    return gen_string(name, rng, c);
}

/* How a value reads in a sentence. Arrays read "a, b and c". */
static void render_value(kd_sbuf *b, const json_t *v, int quote) {
    if (json_is_string(v))
        kd_sbuf_printf(b, quote ? "\"%s\"" : "%s", json_string_value(v));
    else if (json_is_integer(v))
        kd_sbuf_printf(b, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        kd_sbuf_printf(b, "%g", json_real_value(v));
    else if (json_is_true(v))
        kd_sbuf_printf(b, "true");
    else if (json_is_false(v))
        kd_sbuf_printf(b, "false");
    else if (json_is_array(v)) {
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            if (i) kd_sbuf_printf(b, i + 1 == n ? " and " : ", ");
            render_value(b, json_array_get(v, i), quote);
        }
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        kd_sbuf_printf(b, "%s", s ? s : "");
        free(s);
    }
}

static void words_of(kd_sbuf *b, const char *name) {
    for (const char *p = name; *p; p++) kd_sbuf_printf(b, "%c", (*p == '_' || *p == '.') ? ' ' : *p);
}

/* ---- phrasing ------------------------------------------------------------------------------------ */

/* Hand-written phrasings of the shipped tools; {arg} is replaced by the value (quoted where the
 * template quotes it). Templates name required arguments only; optional ones are appended. */
typedef struct phrasing {
    const char *tool;
    const char *templates[3];
} phrasing;
static const phrasing PHRASINGS[] = {
    {"read_file", {"show me what's in {path}.", "read the file \"{path}\" for me.", "open {path} and tell me what it says."}},
    {"file.write", {"write \"{content}\" to {path}.", "save the text \"{content}\" into the file \"{path}\".", "create {path} containing \"{content}\"."}},
    {"list_directory", {"list the files in {path}.", "show me what's inside the folder \"{path}\".", "what is in the directory {path}?"}},
    {"web.search", {"search the web for \"{query}\".", "look up \"{query}\" online.", "find pages about \"{query}\"."}},
    {"web.fetch", {"fetch {url} and give me its text.", "download the page at {url}.", "get the contents of {url}."}},
    {"calculator", {"what is {expression}?", "compute {expression}.", "work out {expression} for me."}},
    {"convert_units", {"convert {value} {from_unit} to {to_unit}.", "how many {to_unit} is {value} {from_unit}?", "express {value} {from_unit} in {to_unit}."}},
    {"calendar.create_event", {"schedule \"{title}\" on {date} at {start_time}.", "create a calendar event called \"{title}\" for {date} starting at {start_time}.", "put \"{title}\" in my calendar: {date}, {start_time}."}},
    {"calendar.list_events", {"what's on my calendar between {start_date} and {end_date}?", "list my events from {start_date} to {end_date}.", "show my schedule for {start_date} through {end_date}."}},
    {"get_weather", {"what's the weather in {city}?", "is it raining in {city} right now?", "tell me the current weather for {city}."}},
    {"get_forecast", {"give me the {days}-day forecast for {city}.", "what will the weather be in {city} over the next {days} days?", "forecast for {city}, {days} days please."}},
    {"shell.run", {"run `{command}`.", "execute the command \"{command}\" in the shell.", "run {command} and show me the output."}},
    {"email.send", {"email {to} with the subject \"{subject}\" saying \"{body}\".", "send a message to {to}: subject \"{subject}\", body \"{body}\".", "write to {to} about \"{subject}\": \"{body}\""}},
    {"email.search", {"find emails about \"{query}\".", "search my inbox for \"{query}\".", "do I have any mail mentioning \"{query}\"?"}},
    {"translate_text", {"translate \"{text}\" into the language with code {target_language}.", "how do you say \"{text}\" in {target_language} (ISO code)?", "translate to {target_language}: \"{text}\""}},
    {"stock.get_price", {"what's the stock price of {symbol}?", "get me the current quote for {symbol}.", "how is {symbol} trading today?"}},
};

static const phrasing *find_phrasing(const char *tool) {
    for (size_t i = 0; i < sizeof PHRASINGS / sizeof PHRASINGS[0]; i++)
        if (strcmp(PHRASINGS[i].tool, tool) == 0) return &PHRASINGS[i];
    return NULL;
}

/* Fill a template; marks the arguments it used in `used`. Returns 0 when a {name} is not an argument
 * (then the generic phrasing is used). */
static int fill_template(kd_sbuf *b, const char *tpl, const json_t *args, json_t *used) {
    for (const char *p = tpl; *p;) {
        if (*p == '{') {
            const char *e = strchr(p, '}');
            if (!e) return 0;
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(e - p - 1), p + 1);
            json_t *v = json_object_get(args, key);
            if (!v) return 0;
            render_value(b, v, 0);
            json_object_set_new(used, key, json_true());
            p = e + 1;
        } else {
            kd_sbuf_printf(b, "%c", *p++);
        }
    }
    return 1;
}

static void capitalize(char *s) {
    if (s && *s >= 'a' && *s <= 'z') *s = (char)(*s - 'a' + 'A');
}

/* One tool call phrased as a clause (lowercase start, ends with punctuation). */
static void phrase_call(kd_sbuf *b, const kd_tool *tool, const json_t *args, uint64_t *rng, int first) {
    json_t *used = json_object();
    const phrasing *ph = find_phrasing(tool->name);
    size_t mark = b->len;
    int ok = 0;
    if (ph) {
        const char *tpl = ph->templates[kd_splitmix64(rng) % 3];
        if (first) {
            const char *op = strchr(tpl, '?') ? PICK(rng, OPENERS_ANY) : PICK(rng, OPENERS_IMPERATIVE);
            kd_sbuf_printf(b, "%s", op);
        }
        size_t clause = b->len;
        ok = fill_template(b, tpl, args, used);
        if (ok && first && b->len > 0 && clause == mark) capitalize(b->data + clause);
        if (!ok) {
            b->len = mark;
            if (b->data) b->data[mark] = 0;
            json_object_clear(used);
        }
    }
    if (!ok) {
        /* Generic: the description's first sentence as the request, then every argument. */
        const char *d = tool->description && tool->description[0] ? tool->description : tool->name;
        size_t n = strcspn(d, ".\n");
        static const char *lead[] = {"use %s to ", "I want to ", "help me ", "with the %s tool, "};
        const char *l = PICK(rng, lead);
        if (first) kd_sbuf_printf(b, "%s", PICK(rng, OPENERS_ANY));
        size_t clause = b->len;
        kd_sbuf_printf(b, l, tool->name);
        if (first && clause == mark && b->data) capitalize(b->data + clause);
        char first = (char)(d[0] >= 'A' && d[0] <= 'Z' ? d[0] - 'A' + 'a' : d[0]);
        if (n > 0) kd_sbuf_printf(b, "%c%.*s", first, (int)n - 1, d + 1);
        const char *k;
        json_t *v;
        int i = 0;
        json_object_foreach((json_t *)args, k, v) {
            kd_sbuf_printf(b, i++ ? ", " : " with ");
            words_of(b, k);
            kd_sbuf_printf(b, " ");
            render_value(b, v, json_is_string(v));
            json_object_set_new(used, k, json_true());
        }
        kd_sbuf_printf(b, ".");
    }
    /* Optional arguments the template did not name. */
    const char *k;
    json_t *v;
    int extra = 0;
    json_object_foreach((json_t *)args, k, v) {
        if (json_object_get(used, k)) continue;
        static const char *how[] = {" Set %s to ", " Use %s ", " (%s: "};
        int h = (int)(kd_splitmix64(rng) % 3);
        kd_sbuf w = {0};
        words_of(&w, k);
        kd_sbuf_printf(b, how[h], w.data ? w.data : k);
        free(w.data);
        render_value(b, v, json_is_string(v));
        kd_sbuf_printf(b, h == 2 ? ")" : ".");
        extra++;
    }
    (void)extra;
    json_decref(used);
}

/* ---- records ------------------------------------------------------------------------------------ */

json_t *kd_synth_gen_args(const kd_tool *tool, uint64_t *rng) {
    gen_ctx ctx = {.tool = tool->name, .date_base = -1, .from_unit = NULL};
    json_t *args = gen_value(tool->name, tool->parameters, rng, 0, &ctx);
    if (!json_is_object(args)) {
        json_decref(args);
        args = json_object();
    }
    return args;
}

void kd_synth_chat_text(uint64_t *rng, char *out, size_t cap) { snprintf(out, cap, PICK(rng, NO_TOOL), PICK(rng, TOPICS)); }

const char *kd_synth_pick_opener(uint64_t *rng) { return PICK(rng, OPENERS_ANY); }
const char *kd_synth_pick_joiner(uint64_t *rng) { return PICK(rng, JOINERS); }
const char *kd_synth_pick_closing(uint64_t *rng) { return PICK(rng, CLOSINGS); }

static int make_call(const kd_registry *reg, int ti, uint64_t *rng, json_t **call, kd_error *err) {
    const kd_tool *tool = &reg->tools[ti];
    gen_ctx ctx = {.tool = tool->name, .date_base = -1, .from_unit = NULL};
    json_t *args = gen_value(tool->name, tool->parameters, rng, 0, &ctx);
    if (!json_is_object(args)) {
        json_decref(args);
        args = json_object();
    }
    kd_error e;
    if (kd_registry_validate(tool, args, &e)) {
        json_decref(args);
        return kd_error_set(err, KD_ERR_UNSUPPORTED,
                            "prompts synth: cannot make valid arguments for tool '%s' (%s); its schema uses "
                            "constraints the synthesizer does not know",
                            tool->name, e.msg);
    }
    *call = json_pack("{s:s, s:o}", "name", tool->name, "arguments", args);
    return KD_OK;
}

int kd_synth_record(const kd_registry *reg, uint64_t seed, int64_t index, json_t **record, kd_error *err) {
    *record = NULL;
    if (!reg || reg->count == 0) return kd_error_set(err, KD_ERR_INVALID, "prompts synth: the registry has no tools");
    uint64_t key[2] = {seed, (uint64_t)index};
    uint64_t rng = kd_hash64(key, sizeof key);
    uint64_t roll = kd_splitmix64(&rng) % 100;
    int ncalls = roll < 10 ? 0 : roll < 20 ? 2 : 1;
    if (ncalls == 2 && reg->count < 2) ncalls = 1;
    json_t *calls = json_array();
    kd_sbuf b = {0};
    if (ncalls == 0) {
        char text[256];
        snprintf(text, sizeof text, PICK(&rng, NO_TOOL), PICK(&rng, TOPICS));
        kd_sbuf_printf(&b, "%s", text);
    } else {
        int first = (int)(kd_splitmix64(&rng) % (uint64_t)reg->count), second = first;
        while (ncalls == 2 && second == first) second = (int)(kd_splitmix64(&rng) % (uint64_t)reg->count);
        int tools[2] = {first, second};
        for (int c = 0; c < ncalls; c++) {
            json_t *call = NULL;
            if (make_call(reg, tools[c], &rng, &call, err)) {
                json_decref(calls);
                free(b.data);
                return err->code;
            }
            if (c > 0) kd_sbuf_printf(&b, "%s", PICK(&rng, JOINERS));
            phrase_call(&b, &reg->tools[tools[c]], json_object_get(call, "arguments"), &rng, c == 0);
            json_array_append_new(calls, call);
        }
    }
    kd_sbuf_printf(&b, "%s", PICK(&rng, CLOSINGS));
    if (b.oom || !b.data) {
        json_decref(calls);
        free(b.data);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    }
    char id[64];
    snprintf(id, sizeof id, "synth-%llu-%lld", (unsigned long long)seed, (long long)index);
    *record = json_pack("{s:s, s:s, s:{s:o}}", "id", id, "prompt", b.data, "metadata", "tool_calls", calls);
    free(b.data);
    if (!*record) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    return KD_OK;
}

int kd_synth_write(const kd_registry *reg, uint64_t seed, int64_t n, FILE *out, kd_error *err) {
    for (int64_t i = 0; i < n; i++) {
        json_t *rec;
        if (kd_synth_record(reg, seed, i, &rec, err)) return err->code;
        char *s = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(17));
        json_decref(rec);
        if (!s) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        int bad = fputs(s, out) < 0 || fputc('\n', out) == EOF;
        free(s);
        if (bad) return kd_error_set(err, KD_ERR_IO, "prompts synth: write failed (disk full?)");
    }
    return KD_OK;
}
