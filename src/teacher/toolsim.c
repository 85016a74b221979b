/* Tool simulator: see include/kdstep/toolsim.h. */
#include "kdstep/toolsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/fsutil.h"
#include "kdstep/hash.h"

struct kd_toolsim {
    const kd_registry *reg;
    json_t *fixtures; /* array or NULL */
};

int kd_toolsim_open(kd_toolsim **out, const kd_registry *reg, const char *fixtures_path, kd_error *err) {
    *out = NULL;
    kd_toolsim *s = calloc(1, sizeof *s);
    if (!s) return kd_error_set(err, KD_ERR_NOMEM, "out of memory opening the tool simulator");
    s->reg = reg;
    if (fixtures_path && fixtures_path[0]) {
        json_error_t je;
        s->fixtures = json_load_file(fixtures_path, 0, &je);
        if (!s->fixtures) {
            free(s);
            return kd_error_set(err, KD_ERR_PARSE, "%s:%d:%d: tool fixtures: %s", fixtures_path, je.line, je.column, je.text);
        }
        if (!json_is_array(s->fixtures)) {
            json_decref(s->fixtures);
            free(s);
            return kd_error_set(err, KD_ERR_INVALID,
                                "%s: tool fixtures must be a JSON array of {\"name\", \"arguments\", \"result\"}", fixtures_path);
        }
        size_t i;
        json_t *f;
        json_array_foreach(s->fixtures, i, f) {
            if (!json_is_string(json_object_get(f, "name")) || !json_object_get(f, "result")) {
                json_decref(s->fixtures);
                free(s);
                return kd_error_set(err, KD_ERR_INVALID, "%s: fixture [%zu] needs a string \"name\" and a \"result\"",
                                    fixtures_path, i);
            }
        }
    }
    *out = s;
    return KD_OK;
}

void kd_toolsim_close(kd_toolsim *sim) {
    if (!sim) return;
    json_decref(sim->fixtures);
    free(sim);
}

static const char *str_arg(const json_t *args, const char *key, const char *dflt) {
    const char *v = json_string_value(json_object_get(args, key));
    return v ? v : dflt;
}

static json_t *sim_read_file(const json_t *args, uint64_t *rng) {
    const char *path = str_arg(args, "path", "file.txt");
    const char *ext = strrchr(path, '.');
    char content[1024];
    if (ext && strcmp(ext, ".json") == 0)
        snprintf(content, sizeof content, "{\n  \"name\": \"%s\",\n  \"version\": \"%u.%u.%u\",\n  \"debug\": false\n}\n", path,
                 (unsigned)(kd_splitmix64(rng) % 4), (unsigned)(kd_splitmix64(rng) % 20), (unsigned)(kd_splitmix64(rng) % 10));
    else if (ext && (strcmp(ext, ".py") == 0 || strcmp(ext, ".c") == 0))
        snprintf(content, sizeof content, "# %s\ndef main():\n    return %u\n", path, (unsigned)(kd_splitmix64(rng) % 100));
    else if (ext && strcmp(ext, ".csv") == 0)
        snprintf(content, sizeof content, "id,value\n1,%u\n2,%u\n3,%u\n", (unsigned)(kd_splitmix64(rng) % 1000),
                 (unsigned)(kd_splitmix64(rng) % 1000), (unsigned)(kd_splitmix64(rng) % 1000));
    else
        snprintf(content, sizeof content, "Notes from %s\nLine 2: status ok\nLine 3: %u items pending\n", path,
                 (unsigned)(kd_splitmix64(rng) % 50));
    json_t *r = json_object();
    json_object_set_new(r, "path", json_string(path));
    json_object_set_new(r, "content", json_string(content));
    json_object_set_new(r, "bytes", json_integer((json_int_t)strlen(content)));
    return r;
}

static json_t *sim_search(const json_t *args, uint64_t *rng) {
    const char *q = str_arg(args, "query", "query");
    json_int_t n = json_integer_value(json_object_get(args, "num_results"));
    if (n <= 0 || n > 10) n = 3;
    json_t *list = json_array();
    for (json_int_t i = 0; i < n; i++) {
        char title[512], url[512], snip[768];
        unsigned id = (unsigned)(kd_splitmix64(rng) % 100000);
        snprintf(title, sizeof title, "%.200s - result %lld", q, (long long)i + 1);
        snprintf(url, sizeof url, "https://example.com/%u/%lld", id, (long long)i + 1);
        snprintf(snip, sizeof snip, "An overview of %.200s, with %u references.", q, id % 97);
        json_t *e = json_object();
        json_object_set_new(e, "title", json_string(title));
        json_object_set_new(e, "url", json_string(url));
        json_object_set_new(e, "snippet", json_string(snip));
        json_array_append_new(list, e);
    }
    json_t *r = json_object();
    json_object_set_new(r, "query", json_string(q));
    json_object_set_new(r, "results", list);
    return r;
}

static json_t *sim_weather(const char *name, const json_t *args, uint64_t *rng) {
    const char *city = str_arg(args, "city", str_arg(args, "location", "London"));
    int f = strcmp(str_arg(args, "units", "celsius"), "fahrenheit") == 0;
    double c = -5.0 + (double)(kd_splitmix64(rng) % 400) / 10.0;
    json_t *r = json_object();
    json_object_set_new(r, "city", json_string(city));
    if (strstr(name, "forecast")) {
        json_int_t days = json_integer_value(json_object_get(args, "days"));
        if (days <= 0 || days > 14) days = 3;
        json_t *d = json_array();
        for (json_int_t i = 0; i < days; i++) {
            double hi = c + (double)(kd_splitmix64(rng) % 60) / 10.0, lo = hi - 4 - (double)(kd_splitmix64(rng) % 40) / 10.0;
            json_t *e = json_object();
            json_object_set_new(e, "day", json_integer(i + 1));
            json_object_set_new(e, "high", json_real(f ? hi * 9 / 5 + 32 : hi));
            json_object_set_new(e, "low", json_real(f ? lo * 9 / 5 + 32 : lo));
            json_array_append_new(d, e);
        }
        json_object_set_new(r, "days", d);
    } else {
        json_object_set_new(r, "temperature", json_real(f ? c * 9 / 5 + 32 : c));
        json_object_set_new(r, "humidity_pct", json_integer((json_int_t)(kd_splitmix64(rng) % 80) + 20));
        json_object_set_new(r, "wind_kph", json_real((double)(kd_splitmix64(rng) % 400) / 10.0));
        static const char *cond[] = {"sunny", "cloudy", "rain", "snow", "fog"};
        json_object_set_new(r, "conditions", json_string(cond[kd_splitmix64(rng) % 5]));
    }
    json_object_set_new(r, "units", json_string(f ? "fahrenheit" : "celsius"));
    return r;
}

/* Any other tool: a status, the arguments echoed, and a value per result-like field of the schema. */
static json_t *sim_generic(const char *name, const json_t *args, const kd_tool *tool, uint64_t *rng) {
    json_t *r = json_object();
    json_object_set_new(r, "tool", json_string(name));
    json_object_set_new(r, "status", json_string("ok"));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)args, k, v) {
        if (json_is_string(v) || json_is_number(v) || json_is_boolean(v)) json_object_set(r, k, v);
    }
    json_object_set_new(r, "id", json_integer((json_int_t)(kd_splitmix64(rng) % 1000000)));
    if (tool && !json_object_get(r, "result")) {
        const char *desc = tool->description ? tool->description : "";
        if (strstr(desc, "numeric") || strstr(desc, "price") || strstr(desc, "Convert"))
            json_object_set_new(r, "result", json_real((double)(kd_splitmix64(rng) % 100000) / 100.0));
        else if (strstr(desc, "List") || strstr(desc, "list"))
            json_object_set_new(r, "items", json_pack("[sss]", "alpha", "beta", "gamma"));
    }
    return r;
}

int kd_toolsim_run(const kd_toolsim *sim, const char *name, const char *arguments_json, json_t **result, kd_error *err) {
    *result = NULL;
    json_error_t je;
    json_t *args = json_loads(arguments_json ? arguments_json : "{}", JSON_DECODE_ANY, &je);
    if (!args) return kd_error_set(err, KD_ERR_PARSE, "tool %s: arguments are not valid JSON (column %d: %s)", name, je.column, je.text);
    if (!json_is_object(args)) {
        json_decref(args);
        return kd_error_set(err, KD_ERR_INVALID, "tool %s: arguments must be a JSON object", name);
    }
    if (sim->fixtures) {
        const json_t *any = NULL;
        size_t i;
        json_t *f;
        json_array_foreach(sim->fixtures, i, f) {
            if (strcmp(json_string_value(json_object_get(f, "name")), name) != 0) continue;
            const json_t *fa = json_object_get(f, "arguments");
            if (!fa) {
                if (!any) any = json_object_get(f, "result");
            } else if (json_equal((json_t *)fa, args)) {
                *result = json_incref(json_object_get(f, "result"));
                json_decref(args);
                return KD_OK;
            }
        }
        if (any) {
            *result = json_incref((json_t *)any);
            json_decref(args);
            return KD_OK;
        }
    }
    const kd_tool *tool = sim->reg ? kd_registry_find(sim->reg, name) : NULL;
    if (sim->reg && !tool) {
        json_decref(args);
        return kd_error_set(err, KD_ERR_NOTFOUND, "tool simulator: no tool named '%s' in the registry", name);
    }
    char *canon = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS);
    uint64_t rng = kd_hash64(name, strlen(name)) ^ (canon ? kd_hash64(canon, strlen(canon)) : 0);
    free(canon);
    json_t *r;
    if (strcmp(name, "read_file") == 0 || strstr(name, "read_file")) r = sim_read_file(args, &rng);
    else if (strstr(name, "search") && json_object_get(args, "query") && strncmp(name, "email", 5) != 0) r = sim_search(args, &rng);
    else if (strstr(name, "weather") || strstr(name, "forecast")) r = sim_weather(name, args, &rng);
    else r = sim_generic(name, args, tool, &rng);
    json_decref(args);
    *result = r;
    return KD_OK;
}

int kd_toolsim_run_text(const kd_toolsim *sim, const char *name, const char *arguments_json, char **text, kd_error *err) {
    json_t *r;
    int rc = kd_toolsim_run(sim, name, arguments_json, &r, err);
    if (rc) return rc;
    *text = json_dumps(r, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(r);
    return *text ? KD_OK : kd_error_set(err, KD_ERR_NOMEM, "out of memory");
}
