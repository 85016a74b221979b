/* Guards for the YAML that kdstep reads (configs, job files), before and after libyaml loads it.
 *
 * libyaml's loader keeps an alias as a reference, but whoever walks the document expands it, and a
 * small file of nested aliases ("billion laughs") expands to gigabytes; deep flow nesting ([[[[...)
 * costs quadratic time in the loader. kdstep's files need neither, so kd_yaml_precheck reads the
 * event stream first (bounded: it stops at the first problem) and refuses anchors and aliases and
 * nesting deeper than KD_YAML_MAX_DEPTH (kd_yaml_load does it, then loads). kd_yaml_check_key refuses a mapping that repeats a key
 * (libyaml accepts it and the last one would silently win), naming both lines.
 */
#ifndef KDSTEP_YAMLSAFE_H
#define KDSTEP_YAMLSAFE_H

#include <yaml.h>

#include "kdstep/error.h"

#define KD_YAML_MAX_DEPTH 16

/* 0, or an error "name:line:col: ..." (KD_ERR_PARSE for syntax errors, KD_ERR_UNSUPPORTED for an
 * anchor/alias or too deep nesting). */
int kd_yaml_precheck(const char *yaml, size_t len, const char *name, kd_error *err);
/* kd_yaml_precheck, then load the first document of yaml (its NUL-terminated text) into *doc: 0, with
 * *doc to be deleted by the caller (yaml_document_delete), or an error "name:line:col: ..." and no
 * document. The loaders of configs and job files start with it. */
int kd_yaml_load(const char *yaml, const char *name, yaml_document_t *doc, kd_error *err);
/* Pair `a` of mapping `map` does not repeat the key of an earlier pair: 0, or KD_ERR_INVALID naming the
 * key and both of its lines. Called for each pair in order, before the pair is otherwise checked: the
 * earlier pairs are then all known, distinct keys (unknown ones are refused), so the comparisons are
 * bounded by the number of known keys, whatever the file. */
int kd_yaml_check_key(yaml_document_t *doc, yaml_node_t *map, yaml_node_pair_t *a, const char *name, kd_error *err);

#endif
