#!/usr/bin/env bash
# Teacher top-k coverage with different tokenizers (issue 16): the demo's own student tokenizer (8192
# ids, trained as jobs/make-student-tokenizer.sh trains it) against a teacher with Qwen3's tokenizer
# (`kdstep teacher serve --tokenizer` Qwen3's tokenizer.json, fetched by tests/fetch-tokenizers.sh).
# The scoring of each conversation comes back over HTTP in vLLM's prompt_logprobs shape, over Qwen3's
# tokens; the worker aligns it by byte span. stats.json reports, per kind of trained token (tool
# name, JSON, integration, other), the share that got teacher top-k; the test checks those counts
# against the arrays (h5py), and that an aligned row is the right one: where the teacher's top-1 is
# a token the student has, it is the student's own token at that position. The figures are printed
# and written in docs/teachers.md ("Coverage").
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
qwen="$KD_SOURCE_DIR/tests/.cache/tokenizers/qwen3/tokenizer.json"
[[ -s "$qwen" ]] || { echo "skip: $qwen absent (run tests/fetch-tokenizers.sh)"; exit 77; }
demo="$KD_BUILD_DIR/test-fixtures/demo-tokenizer"
[[ -s "$demo/tokenizer.json" ]] || KDSTEP="$KDSTEP" bash "$KD_SOURCE_DIR/jobs/make-student-tokenizer.sh" --out "$demo" >/dev/null
tmp=$(mktemp -d)
server=""
cleanup() { [[ -n "$server" ]] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
n=${KD_TEST_PROMPTS:-120}
tools="$KD_SOURCE_DIR/configs/tools.json"
"$KDSTEP" prompts synth --tools "$tools" -n "$n" --seed 8 -o "$tmp/p.jsonl" >/dev/null
"$KDSTEP" teacher serve --port 0 --tokenizer "$qwen" --tools "$tools" --duration 900 >"$tmp/port" 2>"$tmp/server.log" &
server=$!
for _ in $(seq 300); do [[ -s "$tmp/port" ]] && break; sleep 0.1; done
port=$(grep -o '[0-9]\+' "$tmp/port" | tail -n 1)
[[ -n "$port" ]] || { echo "server did not start"; cat "$tmp/server.log"; exit 1; }
"$KDSTEP" generate --prompts "$tmp/p.jsonl" --out "$tmp/ds" --tokenizer-path "$demo" --tools "$tools" \
  --teacher "http://127.0.0.1:$port" --set teacher.top_logprobs=8 2>"$tmp/gen.log" || { cat "$tmp/gen.log"; exit 1; }
/usr/bin/python3 - "$tmp/ds" "$n" <<'PY'
import json, sys, h5py, numpy as np
d, n = sys.argv[1], int(sys.argv[2])
st = json.load(open(d + "/stats.json"))
assert st["samples"] + st["filtered"] + st["failures"] == n, st
with h5py.File(d + "/dataset.h5", "r") as f:
    top = f["teacher/topk_ids"][:]
    ids = f["tokens/input_ids"][:]
    m = {k: f["tokens/" + k][:].astype(bool) for k in ["loss_mask", "tool_name_mask", "json_mask", "integration_mask"]}
has = top[:, 0] >= 0
kind = {"tool_name": m["tool_name_mask"], "json": m["json_mask"] & ~m["tool_name_mask"],
        "integration": m["integration_mask"] & ~m["tool_name_mask"] & ~m["json_mask"]}
kind["other"] = m["loss_mask"] & ~kind["tool_name"] & ~kind["json"] & ~kind["integration"]
cov = st["teacher_coverage"]
rows = []
for k, sel in kind.items():
    assert cov[k]["tokens"] == int(sel.sum()), (k, cov[k], int(sel.sum()))
    assert cov[k]["with_topk"] == int((sel & has).sum()), (k, cov[k], int((sel & has).sum()))
    rows.append(f"{k} {cov[k]['with_topk']}/{cov[k]['tokens']} = {cov[k]['share']:.1%}")
total = sum(c["tokens"] for c in cov.values())
hit = sum(c["with_topk"] for c in cov.values())
assert 0 < hit < total, f"byte-span alignment covered {hit} of {total} (expected some, not all: the tokenizers differ)"
# an aligned row is the row of that token: the teacher's top-1 (when the student has it) is the token
own = (top[:, 0] == ids) & has
assert own.sum() >= 0.95 * has.sum(), f"only {own.sum()} of {has.sum()} aligned rows have the student's token as top-1"
print(f"coverage, demo 8k student vs Qwen3 teacher tokenizer, {st['samples']} samples: " + "; ".join(rows) +
      f"; all {hit}/{total} = {hit / total:.1%}")
PY
