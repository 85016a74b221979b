/* Job files: see include/kdstep/job.h. */
#include "kdstep/job.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "kdstep/yamlsafe.h"

#include "kdstep/fsutil.h"

enum jtype { J_STR, J_INT, J_LIST };

typedef struct jkey {
    const char *section; /* NULL: top-level key */
    const char *key;
    enum jtype type;
    size_t offset;
    int64_t min, max;
} jkey;

#define O(f) offsetof(kd_job, f)
static const jkey JKEYS[] = {
    {"job", "name", J_STR, O(name), 0, 0},
    {"job", "workdir", J_STR, O(workdir), 0, 0},
    {"job", "ranks", J_INT, O(ranks), 1, 1 << 20},
    {"job", "nodes", J_INT, O(nodes), 0, 1 << 20},
    {"job", "tasks_per_node", J_INT, O(tasks_per_node), 0, 1 << 20},
    {"job", "cpus_per_task", J_INT, O(cpus_per_task), 0, 1 << 20},
    {"prompts", "file", J_STR, O(prompts_file), 0, 0},
    {"prompts", "synth_count", J_INT, O(synth_count), 0, 1000000000},
    {"prompts", "synth_seed", J_INT, O(synth_seed), 0, INT64_MAX},
    {"prompts", "heldout_file", J_STR, O(heldout_file), 0, 0},
    {"prompts", "heldout_count", J_INT, O(heldout_count), 0, 1000000000},
    {"prompts", "heldout_seed", J_INT, O(heldout_seed), 0, INT64_MAX},
    {"prompts", "total", J_INT, O(total), 0, INT64_MAX},
    {"prompts", "tools_per_prompt", J_STR, O(tools_per_prompt), 0, 0},
    {"prompts", "rename_tools", J_INT, O(rename_tools), 0, 100},
    {"prompts", "heldout_tools", J_STR, O(heldout_tools), 0, 0},
    {"prompts", "heldout_tools_count", J_INT, O(heldout_tools_count), 0, 1000000000},
    {"prompts", "bfcl_dir", J_STR, O(bfcl_dir), 0, 0},
    {"prompts", "bfcl_max", J_INT, O(bfcl_max), 0, 1000000000},
    {"tokenizer_train", "vocab_size", J_INT, O(tokenizer_vocab_size), 260, 1 << 20},
    {"onpolicy", "rounds", J_INT, O(onpolicy_rounds), 0, 1000},
    {"onpolicy", "steps", J_INT, O(onpolicy_steps), 0, INT64_MAX},
    {NULL, "tools", J_STR, O(tools), 0, 0},
    {NULL, "tokenizer", J_STR, O(tokenizer), 0, 0},
    {NULL, "config", J_STR, O(config), 0, 0},
    {NULL, "overrides", J_LIST, O(overrides), 0, 0},
};
#define NJKEYS ((int)(sizeof JKEYS / sizeof JKEYS[0]))

void kd_job_defaults(kd_job *job) {
    memset(job, 0, sizeof *job);
    snprintf(job->name, sizeof job->name, "job");
    snprintf(job->workdir, sizeof job->workdir, "runs/job");
    job->ranks = 2;
    job->synth_count = 2000;
    job->synth_seed = 1;
    job->heldout_count = 200;
    job->heldout_seed = 2;
    job->heldout_tools_count = 200;
    snprintf(job->tools, sizeof job->tools, "configs/tools.json");
    snprintf(job->tokenizer, sizeof job->tokenizer, "models/student/tokenizer");
    snprintf(job->config, sizeof job->config, "configs/process_supervision.yaml");
    job->tokenizer_vocab_size = 8192; /* jobs/quickstart.sh's default too */
}

static void list_clear(kd_string_list *l) {
    for (int i = 0; i < l->count; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

void kd_job_free(kd_job *job) { list_clear(&job->overrides); }

static const jkey *find(const char *section, const char *key) {
    for (int i = 0; i < NJKEYS; i++)
        if (((section == NULL) == (JKEYS[i].section == NULL)) && (!section || strcmp(section, JKEYS[i].section) == 0) &&
            strcmp(key, JKEYS[i].key) == 0)
            return &JKEYS[i];
    return NULL;
}

static const char *nearest(const char *section, const char *name) {
    const char *best = NULL;
    int bestd = 1 << 30;
    for (int i = 0; i < NJKEYS; i++) {
        const char *cand;
        if (section) {
            if (!JKEYS[i].section || strcmp(JKEYS[i].section, section) != 0) continue;
            cand = JKEYS[i].key;
        } else {
            cand = JKEYS[i].section ? JKEYS[i].section : JKEYS[i].key;
        }
        int d = kd_edit_distance(name, cand);
        if (d < bestd) {
            bestd = d;
            best = cand;
        }
    }
    return (best && bestd <= (int)strlen(name) / 2 + 2) ? best : NULL;
}

static int set_value(kd_job *job, const jkey *k, yaml_document_t *doc, yaml_node_t *v, const char *name, kd_error *err) {
    char where[1200];
    snprintf(where, sizeof where, "%s:%zu:%zu", name, v->start_mark.line + 1, v->start_mark.column + 1);
    char full[300];
    snprintf(full, sizeof full, "%s%s%s", k->section ? k->section : "", k->section ? "." : "", k->key);
    if (k->type == J_LIST) {
        kd_string_list *l = (kd_string_list *)((char *)job + k->offset);
        list_clear(l);
        if (v->type == YAML_SCALAR_NODE && v->data.scalar.length == 0) return KD_OK;
        if (v->type != YAML_SEQUENCE_NODE) return kd_error_set(err, KD_ERR_INVALID, "%s: %s: expected a list", where, full);
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(doc, *it);
            if (e->type != YAML_SCALAR_NODE) return kd_error_set(err, KD_ERR_INVALID, "%s: %s: list items must be strings", where, full);
            char **n = realloc(l->items, sizeof(char *) * (size_t)(l->count + 1));
            if (!n) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
            l->items = n;
            l->items[l->count++] = strdup((const char *)e->data.scalar.value);
        }
        return KD_OK;
    }
    if (v->type != YAML_SCALAR_NODE) return kd_error_set(err, KD_ERR_INVALID, "%s: %s: expected a single value", where, full);
    const char *s = (const char *)v->data.scalar.value;
    if (k->type == J_STR) {
        if (strlen(s) >= KD_CFG_PATH - 1) return kd_error_set(err, KD_ERR_INVALID, "%s: %s: value too long", where, full);
        char *dst = (char *)job + k->offset;
        size_t cap = (k->offset == O(name) || k->offset == O(tools_per_prompt)) ? KD_CFG_STR : KD_CFG_PATH;
        snprintf(dst, cap, "%s", s);
        return KD_OK;
    }
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno) return kd_error_set(err, KD_ERR_INVALID, "%s: %s: expected an integer, got '%s'", where, full, s);
    if (x < k->min || x > k->max)
        return kd_error_set(err, KD_ERR_INVALID, "%s: %s: value %lld is out of range [%lld, %lld]", where, full, x, (long long)k->min, (long long)k->max);
    *(int64_t *)((char *)job + k->offset) = x;
    return KD_OK;
}

int kd_job_load_string(kd_job *job, const char *yaml, const char *name, kd_error *err) {
    yaml_document_t doc;
    int rc = kd_yaml_load(yaml, name, &doc, err);
    if (rc) return rc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    char where[1200];
    if (!root || (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0)) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: the job file is empty (nothing but blanks or comments), which would run the default demo "
                          "without a word; write the job's keys (see jobs/demo.yaml and docs/guide.md)", name);
        goto done;
    }
    if (root->type != YAML_MAPPING_NODE) {
        rc = kd_error_set(err, KD_ERR_PARSE, "%s:%zu:%zu: a job file is a mapping (job:, prompts:, tools: ...)", name,
                          root->start_mark.line + 1, root->start_mark.column + 1);
        goto done;
    }
    for (yaml_node_pair_t *p = root ? root->data.mapping.pairs.start : NULL; root && p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(&doc, p->key), *vn = yaml_document_get_node(&doc, p->value);
        snprintf(where, sizeof where, "%s:%zu:%zu", name, kn->start_mark.line + 1, kn->start_mark.column + 1);
        if (kn->type != YAML_SCALAR_NODE) {
            rc = kd_error_set(err, KD_ERR_PARSE, "%s: keys must be plain words", where);
            goto done;
        }
        if ((rc = kd_yaml_check_key(&doc, root, p, name, err))) goto done;
        const char *key = (const char *)kn->data.scalar.value;
        const jkey *top = find(NULL, key);
        if (top) {
            if ((rc = set_value(job, top, &doc, vn, name, err))) goto done;
            continue;
        }
        int is_section = 0;
        for (int i = 0; i < NJKEYS; i++)
            if (JKEYS[i].section && strcmp(JKEYS[i].section, key) == 0) is_section = 1;
        if (!is_section) {
            const char *near = nearest(NULL, key);
            rc = near ? kd_error_set(err, KD_ERR_INVALID, "%s: unknown key '%s' (did you mean '%s'?)", where, key, near)
                      : kd_error_set(err, KD_ERR_INVALID, "%s: unknown key '%s' (known: job, prompts, tools, tokenizer, config, overrides, tokenizer_train, onpolicy)", where, key);
            goto done;
        }
        if (vn->type != YAML_MAPPING_NODE) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: '%s' must be a mapping of key: value", where, key);
            goto done;
        }
        for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++) {
            yaml_node_t *k2 = yaml_document_get_node(&doc, q->key), *v2 = yaml_document_get_node(&doc, q->value);
            snprintf(where, sizeof where, "%s:%zu:%zu", name, k2->start_mark.line + 1, k2->start_mark.column + 1);
            if (k2->type != YAML_SCALAR_NODE) {
                rc = kd_error_set(err, KD_ERR_PARSE, "%s: keys must be plain words", where);
                goto done;
            }
            if ((rc = kd_yaml_check_key(&doc, vn, q, name, err))) goto done;
            const char *sub = (const char *)k2->data.scalar.value;
            const jkey *k = find(key, sub);
            if (!k) {
                const char *near = nearest(key, sub);
                rc = near ? kd_error_set(err, KD_ERR_INVALID, "%s: unknown key '%s' in '%s' (did you mean '%s'?)", where, sub, key, near)
                          : kd_error_set(err, KD_ERR_INVALID, "%s: unknown key '%s' in '%s'", where, sub, key);
                goto done;
            }
            if ((rc = set_value(job, k, &doc, v2, name, err))) goto done;
        }
    }
done:
    yaml_document_delete(&doc);
    return rc;
}

int kd_job_load_file(kd_job *job, const char *path, kd_error *err) {
    char *text = NULL;
    int rc = kd_read_file(path, &text, NULL, err);
    if (rc) return rc;
    snprintf(job->path, sizeof job->path, "%s", path);
    rc = kd_job_load_string(job, text, path, err);
    free(text);
    return rc;
}

int kd_job_config(const kd_job *job, kd_config *cfg, kd_error *err) {
    kd_config_defaults(cfg);
    int rc;
    if (job->config[0] && (rc = kd_config_load_file(cfg, job->config, err))) return rc;
    for (int i = 0; i < job->overrides.count; i++)
        if ((rc = kd_config_set(cfg, job->overrides.items[i], err))) return kd_error_prefix(err, "%s: overrides[%d]: ", job->path, i);
    return KD_OK;
}

int kd_job_sbatch_shape(const kd_job *job, char *out, size_t cap) {
    int n;
    if (job->tasks_per_node > 0 && job->nodes > 0)
        n = snprintf(out, cap, "--nodes=%lld\n--ntasks-per-node=%lld\n", (long long)job->nodes, (long long)job->tasks_per_node);
    else if (job->nodes > 0)
        n = snprintf(out, cap, "--nodes=%lld\n--ntasks=%lld\n", (long long)job->nodes, (long long)job->ranks);
    else
        n = snprintf(out, cap, "--ntasks=%lld\n", (long long)job->ranks);
    if (n >= 0 && (size_t)n < cap && job->cpus_per_task > 0)
        n += snprintf(out + n, cap - (size_t)n, "--cpus-per-task=%lld\n", (long long)job->cpus_per_task);
    return n;
}

void kd_job_path(const kd_job *job, const char *rel, char *out) {
    if (kd_path_join(out, KD_CFG_PATH, job->workdir, rel) != 0) snprintf(out, KD_CFG_PATH, "%s", job->workdir);
}
