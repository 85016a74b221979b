/* YAML guards: see include/kdstep/yamlsafe.h. */
#include "kdstep/yamlsafe.h"

#include <string.h>

int kd_yaml_precheck(const char *yaml, size_t len, const char *name, kd_error *err) {
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return kd_error_set(err, KD_ERR_NOMEM, "%s: cannot initialize YAML parser", name);
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);
    int rc = KD_OK, depth = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = kd_error_set(err, KD_ERR_PARSE, "%s:%zu:%zu: YAML syntax error: %s%s%s", name, p.problem_mark.line + 1,
                              p.problem_mark.column + 1, p.problem ? p.problem : "unknown", p.context ? " " : "",
                              p.context ? p.context : "");
            break;
        }
        size_t line = ev.start_mark.line + 1, col = ev.start_mark.column + 1;
        const yaml_char_t *anchor = NULL;
        if (ev.type == YAML_SCALAR_EVENT) anchor = ev.data.scalar.anchor;
        else if (ev.type == YAML_SEQUENCE_START_EVENT) anchor = ev.data.sequence_start.anchor;
        else if (ev.type == YAML_MAPPING_START_EVENT) anchor = ev.data.mapping_start.anchor;
        if (ev.type == YAML_ALIAS_EVENT || anchor) {
            rc = kd_error_set(err, KD_ERR_UNSUPPORTED,
                              "%s:%zu:%zu: YAML %s %s%s is not supported in kdstep files (an alias bomb expands a small "
                              "file to gigabytes): write the value out where it is used",
                              name, line, col, ev.type == YAML_ALIAS_EVENT ? "alias" : "anchor",
                              ev.type == YAML_ALIAS_EVENT ? "*" : "&",
                              (const char *)(ev.type == YAML_ALIAS_EVENT ? ev.data.alias.anchor : anchor));
        } else if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT) {
            if (++depth > KD_YAML_MAX_DEPTH)
                rc = kd_error_set(err, KD_ERR_UNSUPPORTED,
                                  "%s:%zu:%zu: YAML nested more than %d levels deep (kdstep files use 3); flatten it", name,
                                  line, col, KD_YAML_MAX_DEPTH);
        } else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        int end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (rc || end) break;
    }
    yaml_parser_delete(&p);
    return rc;
}

int kd_yaml_load(const char *yaml, const char *name, yaml_document_t *doc, kd_error *err) {
    int rc = kd_yaml_precheck(yaml, strlen(yaml), name, err);
    if (rc) return rc;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return kd_error_set(err, KD_ERR_NOMEM, "%s: cannot initialize YAML parser", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, strlen(yaml));
    if (!yaml_parser_load(&parser, doc))
        rc = kd_error_set(err, KD_ERR_PARSE, "%s:%zu:%zu: YAML syntax error: %s%s%s", name, parser.problem_mark.line + 1,
                          parser.problem_mark.column + 1, parser.problem ? parser.problem : "unknown",
                          parser.context ? " " : "", parser.context ? parser.context : "");
    yaml_parser_delete(&parser);
    return rc;
}

int kd_yaml_check_key(yaml_document_t *doc, yaml_node_t *map, yaml_node_pair_t *a, const char *name, kd_error *err) {
    yaml_node_t *ka = yaml_document_get_node(doc, a->key);
    if (!ka || ka->type != YAML_SCALAR_NODE) return KD_OK;
    for (yaml_node_pair_t *b = map->data.mapping.pairs.start; b < a; b++) {
        yaml_node_t *kb = yaml_document_get_node(doc, b->key);
        if (!kb || kb->type != YAML_SCALAR_NODE || kb->data.scalar.length != ka->data.scalar.length ||
            memcmp(kb->data.scalar.value, ka->data.scalar.value, ka->data.scalar.length) != 0)
            continue;
        return kd_error_set(err, KD_ERR_INVALID, "%s:%zu:%zu: duplicate key '%s' (first given at line %zu); remove one of the two",
                            name, ka->start_mark.line + 1, ka->start_mark.column + 1, (const char *)ka->data.scalar.value,
                            kb->start_mark.line + 1);
    }
    return KD_OK;
}
