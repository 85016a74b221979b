/* Spans -> aligned token masks: see include/kdstep/targets.h. */
#include "kdstep/targets.h"

#include <stdlib.h>
#include <string.h>

void kd_target_spans_free(kd_target_spans *s) {
    if (!s) return;
    kd_spans_free(&s->response);
    kd_spans_free(&s->tool_name);
    kd_spans_free(&s->json);
    kd_spans_free(&s->integration);
    kd_spans_free(&s->decision);
}

int kd_targets_add_shifted(kd_spans *dst, const kd_spans *src, size_t shift, kd_error *err) {
    for (size_t i = 0; i < src->count; i++)
        if (kd_spans_push(dst, src->v[i].start + shift, src->v[i].end + shift))
            return kd_error_set(err, KD_ERR_NOMEM, "out of memory adding target spans");
    return KD_OK;
}

int kd_targets_add_calls(kd_target_spans *s, const kd_tool_calls *calls, size_t shift, kd_error *err) {
    for (size_t i = 0; i < calls->count; i++) {
        const kd_tool_call *c = &calls->v[i];
        if (kd_spans_push(&s->tool_name, c->name.start + shift, c->name.end + shift) ||
            (c->arguments.end > c->arguments.start && kd_spans_push(&s->json, c->arguments.start + shift, c->arguments.end + shift)))
            return kd_error_set(err, KD_ERR_NOMEM, "out of memory adding tool-call spans");
    }
    return KD_OK;
}

size_t kd_targets_decision_byte(const char *text, size_t start, size_t end) {
    size_t p = start;
    static const char open[] = "<think>", close[] = "</think>";
    if (end - p >= sizeof open - 1 && memcmp(text + p, open, sizeof open - 1) == 0) {
        for (size_t q = p + sizeof open - 1; q + sizeof close - 1 <= end; q++)
            if (memcmp(text + q, close, sizeof close - 1) == 0) {
                p = q + sizeof close - 1;
                break;
            }
        if (p == start) return end; /* an unclosed think block: no decision in this answer */
    }
    while (p < end && (text[p] == '\n' || text[p] == ' ' || text[p] == '\r' || text[p] == '\t')) p++;
    return p;
}

int kd_targets_spans_for_conversation(const char *text, size_t len, const kd_text_span *assistant, size_t n_assistant,
                                      const kd_text_span *results, size_t n_results, const kd_registry *reg,
                                      kd_target_spans *out, kd_error *err) {
    const char **rs = calloc(n_results + 1, sizeof *rs);
    size_t *rl = calloc(n_results + 1, sizeof *rl);
    if (!rs || !rl) {
        free(rs);
        free(rl);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory collecting tool results");
    }
    int rc = KD_OK;
    size_t prev_end = 0;
    for (size_t m = 0; m < n_assistant && rc == KD_OK; m++) {
        kd_text_span a = assistant[m];
        if (a.start > a.end || a.end > len) {
            rc = kd_error_set(err, KD_ERR_INVALID, "assistant message %zu span [%zu, %zu) lies outside the text of %zu bytes", m, a.start,
                              a.end, len);
            break;
        }
        kd_tool_calls calls = {0};
        kd_spans integ = {0};
        size_t nr = 0;
        for (size_t r = 0; r < n_results; r++)
            if (results[r].start >= prev_end && results[r].end <= a.start && results[r].end <= len) {
                rs[nr] = text + results[r].start;
                rl[nr++] = results[r].end - results[r].start;
            }
        if (kd_spans_push(&out->response, a.start, a.end)) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        /* the decision: the answer's first token (after a think block) chooses between a call and a
         * reply, so it joins the tool-select mask in no-call answers as in call answers */
        size_t d = kd_targets_decision_byte(text, a.start, a.end);
        if (rc == KD_OK && d < a.end && kd_spans_push(&out->decision, d, d + 1))
            rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        if (rc == KD_OK) rc = kd_extract_tool_calls(text + a.start, a.end - a.start, reg, &calls, err);
        if (rc == KD_OK) rc = kd_targets_add_calls(out, &calls, a.start, err);
        size_t from = calls.count ? calls.v[calls.count - 1].call.end : 0;
        if (rc == KD_OK && nr)
            rc = kd_identify_integration_spans(text + a.start + from, a.end - a.start - from, rs, rl, nr, NULL, &integ, err);
        if (rc == KD_OK) rc = kd_targets_add_shifted(&out->integration, &integ, a.start + from, err);
        kd_spans_free(&integ);
        kd_tool_calls_free(&calls);
        prev_end = a.end;
    }
    free(rs);
    free(rl);
    return rc;
}

/* A sorted, merged copy of the spans, without empty ones. */
static kd_text_span *merged_copy(const kd_spans *spans, size_t *n) {
    kd_spans m = {0};
    for (size_t i = 0; i < spans->count; i++)
        if (spans->v[i].end > spans->v[i].start && kd_spans_push(&m, spans->v[i].start, spans->v[i].end)) {
            kd_spans_free(&m);
            *n = (size_t)-1;
            return NULL;
        }
    kd_spans_merge(&m);
    *n = m.count;
    return m.v;
}

/* Index of the first span whose end is past `a`, or n. */
static size_t first_ending_after(const kd_text_span *v, size_t n, size_t a) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].end <= a) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* mask[i] = 1 when token i intersects a span; inside (if not NULL) = 1 when it lies wholly in one. */
static int mask_and_inside(const int32_t (*offsets)[2], size_t n, const kd_spans *spans, uint8_t *mask, uint8_t *inside) {
    size_t ns;
    kd_text_span *v = merged_copy(spans, &ns);
    if (ns == (size_t)-1) return -1;
    size_t k = 0, prev_a = 0;
    for (size_t i = 0; i < n; i++) {
        size_t a = (size_t)offsets[i][0], b = (size_t)offsets[i][1];
        mask[i] = 0;
        if (inside) inside[i] = 0;
        if (offsets[i][0] < 0 || b <= a) continue;
        /* tokens come in text order: walk forward; search only when a token goes back */
        if (a < prev_a) k = first_ending_after(v, ns, a);
        else
            while (k < ns && v[k].end <= a) k++;
        prev_a = a;
        if (k < ns && v[k].start < b) {
            mask[i] = 1;
            if (inside) inside[i] = v[k].start <= a && b <= v[k].end;
        }
    }
    free(v);
    return 0;
}

int kd_mask_from_spans(const int32_t (*offsets)[2], size_t n, const kd_spans *spans, uint8_t *mask) {
    return mask_and_inside(offsets, n, spans, mask, NULL);
}

void kd_targets_free(kd_targets *t) {
    if (!t) return;
    free(t->loss_mask);
    free(t->tool_name_mask);
    free(t->json_mask);
    free(t->integration_mask);
    memset(t, 0, sizeof *t);
}

static int check_spans(const kd_spans *s, const char *what, size_t text_len, kd_error *err) {
    for (size_t i = 0; i < s->count; i++)
        if (s->v[i].start > s->v[i].end || s->v[i].end > text_len)
            return kd_error_set(err, KD_ERR_INVALID,
                                "%s span %zu [%zu, %zu) lies outside the rendered text of %zu bytes (shift spans into "
                                "rendered-text coordinates before building targets)",
                                what, i, s->v[i].start, s->v[i].end, text_len);
    return KD_OK;
}

int kd_targets_build(const int32_t (*offsets)[2], size_t n, size_t text_len, const kd_target_spans *spans,
                     int process_supervision, kd_targets *out, kd_error *err) {
    memset(out, 0, sizeof *out);
    int rc;
    if ((rc = check_spans(&spans->response, "response", text_len, err)) ||
        (rc = check_spans(&spans->tool_name, "tool name", text_len, err)) ||
        (rc = check_spans(&spans->json, "arguments", text_len, err)) ||
        (rc = check_spans(&spans->integration, "integration", text_len, err)) ||
        (rc = check_spans(&spans->decision, "decision", text_len, err)))
        return rc;
    for (size_t i = 0; i < n; i++)
        if (offsets[i][0] > offsets[i][1] || (size_t)offsets[i][1] > text_len)
            return kd_error_set(err, KD_ERR_INVALID, "token %zu has byte offsets [%d, %d) outside the text of %zu bytes", i,
                                offsets[i][0], offsets[i][1], text_len);
    out->n = n;
    size_t bytes = n ? n : 1;
    out->loss_mask = malloc(bytes);
    if (!out->loss_mask) goto nomem;
    if (kd_mask_from_spans(offsets, n, &spans->response, out->loss_mask)) goto nomem;
    if (!process_supervision) return KD_OK;
    out->tool_name_mask = malloc(bytes);
    out->json_mask = malloc(bytes);
    out->integration_mask = malloc(bytes);
    if (!out->tool_name_mask || !out->json_mask || !out->integration_mask) goto nomem;
    if (kd_mask_from_spans(offsets, n, &spans->tool_name, out->tool_name_mask) ||
        kd_mask_from_spans(offsets, n, &spans->json, out->json_mask) ||
        kd_mask_from_spans(offsets, n, &spans->integration, out->integration_mask))
        goto nomem;
    if (spans->decision.count) { /* decision tokens join the tool-select mask */
        uint8_t *dm = malloc(bytes);
        if (!dm || kd_mask_from_spans(offsets, n, &spans->decision, dm)) {
            free(dm);
            goto nomem;
        }
        for (size_t i = 0; i < n; i++) out->tool_name_mask[i] |= dm[i];
        free(dm);
    }
    return KD_OK;
nomem:
    kd_targets_free(out);
    return kd_error_set(err, KD_ERR_NOMEM, "out of memory building token masks for %zu tokens", n);
}

static int gather(json_t *obj, const char *ids_key, const char *mask_key, const int32_t *ids, const int32_t (*offsets)[2],
                  size_t n, const kd_spans *spans) {
    uint8_t *m = malloc(n ? n : 1), *in = malloc(n ? n : 1);
    if (!m || !in || mask_and_inside(offsets, n, spans, m, in)) {
        free(m);
        free(in);
        return -1;
    }
    json_t *ja = json_array(), *jm = json_array();
    for (size_t i = 0; i < n; i++)
        if (m[i]) {
            json_array_append_new(ja, json_integer(ids[i]));
            json_array_append_new(jm, json_integer(in[i]));
        }
    json_object_set_new(obj, ids_key, ja);
    json_object_set_new(obj, mask_key, jm);
    free(m);
    free(in);
    return 0;
}

json_t *kd_targets_seed_fields(const int32_t *ids, const int32_t (*offsets)[2], const kd_targets *t,
                               const kd_target_spans *spans) {
    json_t *o = json_object();
    if (!o || !t->tool_name_mask) return o;
    if (gather(o, "tool_name_ids", "tool_name_mask", ids, offsets, t->n, &spans->tool_name) ||
        gather(o, "gold_json_text_ids", "mask_valid_json_tokens", ids, offsets, t->n, &spans->json) ||
        gather(o, "tool_result_fields", "integration_mask", ids, offsets, t->n, &spans->integration)) {
        json_decref(o);
        return NULL;
    }
    return o;
}
