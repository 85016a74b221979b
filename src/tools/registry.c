/* Tool registry and JSON-Schema argument checks: see include/kdstep/registry.h. */
#include "kdstep/registry.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "kdstep/log.h"

int kd_registry_open(kd_registry **out, kd_error *err) {
    kd_registry *r = calloc(1, sizeof *r);
    if (!r) return kd_error_set(err, KD_ERR_NOMEM, "out of memory creating tool registry");
    kd_sha256_hex("[]", 2, r->sha256);
    *out = r;
    return KD_OK;
}

void kd_registry_close(kd_registry *reg) {
    if (!reg) return;
    for (int i = 0; i < reg->count; i++) {
        free(reg->tools[i].name);
        free(reg->tools[i].description);
        json_decref(reg->tools[i].parameters);
    }
    free(reg->tools);
    free(reg->slots);
    free(reg);
}

static int rehash(kd_registry *reg, int nslots) {
    int *s = malloc(sizeof(int) * (size_t)nslots);
    if (!s) return -1;
    for (int i = 0; i < nslots; i++) s[i] = -1;
    for (int i = 0; i < reg->count; i++) {
        uint64_t h = kd_hash64(reg->tools[i].name, strlen(reg->tools[i].name));
        int j = (int)(h % (uint64_t)nslots);
        while (s[j] >= 0) j = (j + 1) % nslots;
        s[j] = i;
    }
    free(reg->slots);
    reg->slots = s;
    reg->nslots = nslots;
    return 0;
}

const kd_tool *kd_registry_find_n(const kd_registry *reg, const char *name, size_t len) {
    if (!reg || reg->nslots == 0) return NULL;
    uint64_t h = kd_hash64(name, len);
    int j = (int)(h % (uint64_t)reg->nslots);
    while (reg->slots[j] >= 0) {
        const kd_tool *t = &reg->tools[reg->slots[j]];
        if (strlen(t->name) == len && memcmp(t->name, name, len) == 0) return t;
        j = (j + 1) % reg->nslots;
    }
    return NULL;
}

const kd_tool *kd_registry_find(const kd_registry *reg, const char *name) {
    return kd_registry_find_n(reg, name, strlen(name));
}

/* BFCL type names -> JSON Schema. Returns NULL for "any" (no constraint). */
static const char *map_type(const char *t) {
    if (strcmp(t, "dict") == 0) return "object";
    if (strcmp(t, "float") == 0 || strcmp(t, "double") == 0) return "number";
    if (strcmp(t, "tuple") == 0 || strcmp(t, "list") == 0) return "array";
    if (strcmp(t, "any") == 0) return NULL;
    if (strcmp(t, "int") == 0) return "integer";
    if (strcmp(t, "bool") == 0) return "boolean";
    if (strcmp(t, "str") == 0) return "string";
    return t;
}

json_t *kd_schema_normalize(const json_t *schema) {
    if (!json_is_object(schema)) return json_deep_copy(schema);
    json_t *out = json_object();
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)schema, key, v) {
        if (strcmp(key, "type") == 0 && json_is_string(v)) {
            const char *m = map_type(json_string_value(v));
            if (m) json_object_set_new(out, "type", json_string(m));
        } else if (strcmp(key, "type") == 0 && json_is_array(v)) {
            json_t *arr = json_array();
            size_t i;
            json_t *e;
            int any = 0;
            json_array_foreach(v, i, e) {
                const char *m = json_is_string(e) ? map_type(json_string_value(e)) : NULL;
                if (!m) any = 1;
                else json_array_append_new(arr, json_string(m));
            }
            if (!any) json_object_set_new(out, "type", arr);
            else json_decref(arr);
        } else if (strcmp(key, "properties") == 0 && json_is_object(v)) {
            json_t *props = json_object();
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv) json_object_set_new(props, pk, kd_schema_normalize(pv));
            json_object_set_new(out, "properties", props);
        } else if ((strcmp(key, "items") == 0 || strcmp(key, "additionalProperties") == 0) && json_is_object(v)) {
            json_object_set_new(out, key, kd_schema_normalize(v));
        } else {
            json_object_set(out, key, v);
        }
    }
    return out;
}

static int add_tool(kd_registry *reg, const char *name, const char *desc, const json_t *params, const char *where, kd_error *err) {
    if (!name || !*name) return kd_error_set(err, KD_ERR_INVALID, "%s: tool has no name", where);
    if (kd_registry_find(reg, name))
        return kd_error_set(err, KD_ERR_INVALID, "%s: duplicate tool name '%s' (each tool must be registered once)", where, name);
    if (params && !json_is_object(params))
        return kd_error_set(err, KD_ERR_INVALID, "%s: tool '%s': \"parameters\" must be a JSON Schema object", where, name);
    json_t *norm = params ? kd_schema_normalize(params) : json_pack("{s:s, s:{}}", "type", "object", "properties");
    const json_t *t = json_object_get(norm, "type");
    if (t && !(json_is_string(t) && strcmp(json_string_value(t), "object") == 0)) {
        json_decref(norm);
        return kd_error_set(err, KD_ERR_INVALID, "%s: tool '%s': parameters must have type \"object\"", where, name);
    }
    const json_t *props = json_object_get(norm, "properties");
    if (props && !json_is_object(props)) {
        json_decref(norm);
        return kd_error_set(err, KD_ERR_INVALID, "%s: tool '%s': \"properties\" must be an object", where, name);
    }
    const json_t *req = json_object_get(norm, "required");
    if (req) {
        size_t i;
        json_t *e;
        if (!json_is_array(req)) {
            json_decref(norm);
            return kd_error_set(err, KD_ERR_INVALID, "%s: tool '%s': \"required\" must be an array of names", where, name);
        }
        json_array_foreach(req, i, e) if (!json_is_string(e)) {
            json_decref(norm);
            return kd_error_set(err, KD_ERR_INVALID, "%s: tool '%s': \"required\"[%zu] must be a string", where, name, i);
        }
    }
    if (reg->count == reg->cap) {
        int ncap = reg->cap ? reg->cap * 2 : 16;
        kd_tool *nt = realloc(reg->tools, sizeof(kd_tool) * (size_t)ncap);
        if (!nt) {
            json_decref(norm);
            return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        }
        reg->tools = nt;
        reg->cap = ncap;
    }
    kd_tool *tool = &reg->tools[reg->count++];
    tool->name = strdup(name);
    tool->description = strdup(desc ? desc : "");
    tool->parameters = norm;
    if (reg->count * 2 > reg->nslots) {
        if (rehash(reg, reg->count * 4 + 16) != 0) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    } else {
        int j = (int)(kd_hash64(name, strlen(name)) % (uint64_t)reg->nslots);
        while (reg->slots[j] >= 0) j = (j + 1) % reg->nslots;
        reg->slots[j] = reg->count - 1;
    }
    return KD_OK;
}

static void update_hash(kd_registry *reg) {
    json_t *all = kd_registry_to_openai(reg);
    char *s = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
    kd_sha256_hex(s ? s : "", s ? strlen(s) : 0, reg->sha256);
    free(s);
    json_decref(all);
}

/* JSON Schema keywords the tool simulator, the stub teacher and the argument checks read; any other is
 * accepted but not checked, which a user should hear about (once). */
static const char *const KNOWN_KEYWORDS[] = {"type", "properties", "required", "items", "enum", "description", "default",
                                             "minimum", "maximum", "minItems", "maxItems", "additionalProperties", "title",
                                             "format", "examples", "optional", NULL};
static const char *const KNOWN_TYPES[] = {"object", "string", "integer", "number", "boolean", "array", "null", "any", "dict",
                                          "float", "double", "tuple", "list", "int", "bool", "str", NULL};

static int in_list(const char *const *l, const char *s) {
    for (int i = 0; l[i]; i++)
        if (strcmp(l[i], s) == 0) return 1;
    return 0;
}

/* Keywords and type names of a schema that kdstep does not check, into `kw` and `ty` (bounded). */
static void unsupported_schema(const json_t *schema, json_t *kw, json_t *ty, int depth) {
    if (!json_is_object(schema) || depth > 32) return;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)schema, key, v) {
        if (!in_list(KNOWN_KEYWORDS, key)) {
            int seen = 0;
            for (size_t i = 0; i < json_array_size(kw) && !seen; i++) seen = strcmp(json_string_value(json_array_get(kw, i)), key) == 0;
            if (!seen && json_array_size(kw) < 16) json_array_append_new(kw, json_string(key));
        }
        if (strcmp(key, "type") == 0) {
            const json_t *one = v;
            for (size_t i = 0; json_is_array(v) ? i < json_array_size(v) : i < 1; i++) {
                if (json_is_array(v)) one = json_array_get(v, i);
                const char *t = json_string_value(one);
                if (!t || in_list(KNOWN_TYPES, t)) continue;
                int seen = 0;
                for (size_t j = 0; j < json_array_size(ty) && !seen; j++) seen = strcmp(json_string_value(json_array_get(ty, j)), t) == 0;
                if (!seen && json_array_size(ty) < 16) json_array_append_new(ty, json_string(t));
            }
        } else if (strcmp(key, "properties") == 0 && json_is_object(v)) {
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv) unsupported_schema(pv, kw, ty, depth + 1);
        } else if ((strcmp(key, "items") == 0 || strcmp(key, "additionalProperties") == 0) && json_is_object(v)) {
            unsupported_schema(v, kw, ty, depth + 1);
        }
    }
}

static void warn_unsupported(const kd_registry *reg, const char *source) {
    json_t *kw = json_array(), *ty = json_array();
    for (int i = 0; i < reg->count; i++) unsupported_schema(reg->tools[i].parameters, kw, ty, 0);
    if (json_array_size(kw) || json_array_size(ty)) {
        char list[600] = "";
        size_t n = 0;
        for (size_t i = 0; i < json_array_size(kw) && n < sizeof list - 64; i++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "keywords ", json_string_value(json_array_get(kw, i)));
        for (size_t i = 0; i < json_array_size(ty) && n < sizeof list - 64; i++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : (n ? "; types " : "types "), json_string_value(json_array_get(ty, i)));
        /* once per distinct list, not once per prompt line that carries the same tools */
        static _Thread_local char last[600];
        if (strcmp(last, list) != 0) {
            snprintf(last, sizeof last, "%s", list);
            KD_WARN("%s: tool schemas use JSON Schema %s, which kdstep does not check (accepted, not enforced)", source, list);
        }
    }
    json_decref(kw);
    json_decref(ty);
}

int kd_registry_load_json(kd_registry *reg, const json_t *tools, const char *source, kd_error *err) {
    if (json_is_object(tools) && json_is_array(json_object_get(tools, "tools"))) tools = json_object_get(tools, "tools");
    if (!json_is_array(tools))
        return kd_error_set(err, KD_ERR_INVALID, "%s: expected a JSON array of tools (OpenAI `tools` or a BFCL `function` list)", source);
    size_t i;
    json_t *e;
    json_array_foreach(tools, i, e) {
        char where[1200];
        snprintf(where, sizeof where, "%s: tool [%zu]", source, i);
        if (!json_is_object(e)) return kd_error_set(err, KD_ERR_INVALID, "%s: must be an object", where);
        const json_t *fn = json_object_get(e, "function");
        if (json_is_object(fn)) { /* OpenAI form */
            const json_t *type = json_object_get(e, "type");
            if (type && !(json_is_string(type) && strcmp(json_string_value(type), "function") == 0))
                return kd_error_set(err, KD_ERR_UNSUPPORTED, "%s: only tools of type \"function\" are supported", where);
        } else {
            fn = e; /* BFCL form */
        }
        const json_t *name = json_object_get(fn, "name");
        if (!json_is_string(name)) return kd_error_set(err, KD_ERR_INVALID, "%s: missing string \"name\"", where);
        const json_t *desc = json_object_get(fn, "description");
        int rc = add_tool(reg, json_string_value(name), json_is_string(desc) ? json_string_value(desc) : "",
                          json_object_get(fn, "parameters"), where, err);
        if (rc) return rc;
    }
    warn_unsupported(reg, source);
    update_hash(reg);
    return KD_OK;
}

int kd_registry_from_json(kd_registry **out, const json_t *tools, const char *source, kd_error *err) {
    int rc = kd_registry_open(out, err);
    if (rc) return rc;
    rc = kd_registry_load_json(*out, tools, source, err);
    if (rc) {
        kd_registry_close(*out);
        *out = NULL;
    }
    return rc;
}

int kd_registry_load_file(kd_registry *reg, const char *path, kd_error *err) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return kd_error_set(err, KD_ERR_PARSE, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text);
    int rc = kd_registry_load_json(reg, root, path, err);
    json_decref(root);
    return rc;
}

json_t *kd_registry_to_openai(const kd_registry *reg) {
    json_t *arr = json_array();
    for (int i = 0; i < reg->count; i++) {
        const kd_tool *t = &reg->tools[i];
        json_array_append_new(arr, json_pack("{s:s, s:{s:s, s:s, s:O}}", "type", "function", "function", "name", t->name,
                                             "description", t->description, "parameters", t->parameters));
    }
    return arr;
}

/* ---- validation ---- */

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static int type_matches(const char *t, const json_t *v) {
    if (strcmp(t, "object") == 0) return json_is_object(v);
    if (strcmp(t, "array") == 0) return json_is_array(v);
    if (strcmp(t, "string") == 0) return json_is_string(v);
    if (strcmp(t, "number") == 0) return json_is_number(v);
    if (strcmp(t, "integer") == 0)
        return json_is_integer(v) || (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v) && isfinite(json_real_value(v)));
    if (strcmp(t, "boolean") == 0) return json_is_boolean(v);
    if (strcmp(t, "null") == 0) return json_is_null(v);
    return 1; /* unknown type names do not constrain */
}

static void short_json(const json_t *v, char *buf, size_t cap) {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) {
        snprintf(buf, cap, "?");
        return;
    }
    if (strlen(s) > 60) snprintf(buf, cap, "%.57s...", s);
    else snprintf(buf, cap, "%s", s);
    free(s);
}

static int values_equal(const json_t *a, const json_t *b) {
    if (json_is_number(a) && json_is_number(b)) return json_number_value(a) == json_number_value(b);
    return json_equal((json_t *)a, (json_t *)b);
}

int kd_schema_validate(const json_t *schema, const json_t *value, const char *path, kd_error *err) {
    if (!json_is_object(schema)) return KD_OK;
    const json_t *type = json_object_get(schema, "type");
    if (json_is_string(type)) {
        if (!type_matches(json_string_value(type), value))
            return kd_error_set(err, KD_ERR_INVALID, "%s: expected %s, got %s", path, json_string_value(type), json_type_name(value));
    } else if (json_is_array(type)) {
        size_t i;
        json_t *t;
        int ok = 0;
        json_array_foreach(type, i, t) if (json_is_string(t) && type_matches(json_string_value(t), value)) ok = 1;
        if (!ok) {
            char ts[200];
            short_json(type, ts, sizeof ts);
            return kd_error_set(err, KD_ERR_INVALID, "%s: expected one of the types %s, got %s", path, ts, json_type_name(value));
        }
    }
    const json_t *en = json_object_get(schema, "enum");
    if (json_is_array(en)) {
        size_t i;
        json_t *e;
        int ok = 0;
        json_array_foreach(en, i, e) if (values_equal(e, value)) ok = 1;
        if (!ok) {
            char vs[100], es[200];
            short_json(value, vs, sizeof vs);
            short_json(en, es, sizeof es);
            return kd_error_set(err, KD_ERR_INVALID, "%s: value %s is not one of %s", path, vs, es);
        }
    }
    if (json_is_number(value)) {
        const json_t *mn = json_object_get(schema, "minimum"), *mx = json_object_get(schema, "maximum");
        if (json_is_number(mn) && json_number_value(value) < json_number_value(mn))
            return kd_error_set(err, KD_ERR_INVALID, "%s: %g is below the minimum %g", path, json_number_value(value), json_number_value(mn));
        if (json_is_number(mx) && json_number_value(value) > json_number_value(mx))
            return kd_error_set(err, KD_ERR_INVALID, "%s: %g is above the maximum %g", path, json_number_value(value), json_number_value(mx));
    }
    char sub[1024];
    if (json_is_object(value)) {
        const json_t *props = json_object_get(schema, "properties");
        const json_t *req = json_object_get(schema, "required");
        size_t i;
        json_t *r;
        json_array_foreach(req, i, r) {
            if (json_is_string(r) && !json_object_get(value, json_string_value(r)))
                return kd_error_set(err, KD_ERR_INVALID, "%s: missing required property '%s'", path, json_string_value(r));
        }
        const json_t *addl = json_object_get(schema, "additionalProperties");
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)value, k, v) {
            snprintf(sub, sizeof sub, "%s.%s", path, k);
            const json_t *ps = json_is_object(props) ? json_object_get(props, k) : NULL;
            if (ps) {
                int rc = kd_schema_validate(ps, v, sub, err);
                if (rc) return rc;
            } else if (json_is_false(addl)) {
                return kd_error_set(err, KD_ERR_INVALID, "%s: property '%s' is not allowed (additionalProperties is false)", sub, k);
            } else if (json_is_object(addl)) {
                int rc = kd_schema_validate(addl, v, sub, err);
                if (rc) return rc;
            }
        }
    }
    if (json_is_array(value)) {
        const json_t *mi = json_object_get(schema, "minItems"), *ma = json_object_get(schema, "maxItems");
        if (json_is_integer(mi) && (json_int_t)json_array_size(value) < json_integer_value(mi))
            return kd_error_set(err, KD_ERR_INVALID, "%s: has %zu items, fewer than minItems %lld", path, json_array_size(value), (long long)json_integer_value(mi));
        if (json_is_integer(ma) && (json_int_t)json_array_size(value) > json_integer_value(ma))
            return kd_error_set(err, KD_ERR_INVALID, "%s: has %zu items, more than maxItems %lld", path, json_array_size(value), (long long)json_integer_value(ma));
        const json_t *items = json_object_get(schema, "items");
        if (json_is_object(items)) {
            size_t i;
            json_t *v;
            json_array_foreach(value, i, v) {
                snprintf(sub, sizeof sub, "%s[%zu]", path, i);
                int rc = kd_schema_validate(items, v, sub, err);
                if (rc) return rc;
            }
        }
    }
    return KD_OK;
}

int kd_registry_validate(const kd_tool *tool, const json_t *args, kd_error *err) {
    int rc = kd_schema_validate(tool->parameters, args, "$", err);
    if (rc) kd_error_prefix(err, "tool '%s' arguments: ", tool->name);
    return rc;
}
