#!/usr/bin/env bash
# The HTTP teacher path is as good as the stub path (issue 16): 500 synthesized prompts (two-call
# prompts, and earlier user/assistant exchanges in a fifth of them) generated on 2 ranks twice, once
# with the in-process stub teacher and once with `kdstep teacher serve` over HTTP (the scoring of each
# finished conversation: one /v1/chat/completions request with vLLM's prompt_logprobs), same seed.
# The datasets are identical sample by sample: every /tokens/* and /teacher/* array and every text
# (tests/lib/compare_datasets.py, h5py). The student and the teacher share the tokenizer, so every
# trained token of every assistant turn has teacher top-k (coverage 100%, from stats.json and from the
# arrays). A smaller run, with a thinking teacher (teacher.extra_body), scores through /v1/completions
# over kdstep's own rendering: identical again.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tmp=$(mktemp -d)
server=""
cleanup() { [[ -n "$server" ]] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
n=${KD_TEST_PROMPTS:-500}
[[ -n "${KD_TEST_QUICK:-}" ]] && n=100
tools="$KD_SOURCE_DIR/configs/tools.json"
"$KDSTEP" prompts synth --tools "$tools" -n "$n" --seed 11 -o "$tmp/synth.jsonl" >/dev/null
/usr/bin/python3 - "$tmp/synth.jsonl" "$tmp/prompts.jsonl" <<'PY'
import json, sys
out = open(sys.argv[2], "w")
for i, line in enumerate(open(sys.argv[1])):
    r = json.loads(line)
    if i % 5 == 2:  # a conversation that has gone on before the prompt
        r["messages"] = [{"role": "system", "content": "You are a careful assistant."},
                         {"role": "user", "content": "Hi, I have a few things to ask."},
                         {"role": "assistant", "content": "Of course. What do you need?"},
                         {"role": "user", "content": r.pop("prompt")}]
    out.write(json.dumps(r) + "\n")
PY
gen() { # out-dir teacher [--set ...]
  local out=$1 teacher=$2; shift 2
  kd_mpirun 2 "$KDSTEP" generate --prompts "${PROMPTS:-$tmp/prompts.jsonl}" --out "$out" --tokenizer-path "$tok" \
    --tools "$tools" --teacher "$teacher" --set teacher.seed=3 --set teacher.top_logprobs=6 "$@" \
    2>"$out.log" || { cat "$out.log"; exit 1; }
  tail -n 1 "$out.log"
}
gen "$tmp/stub" stub
"$KDSTEP" teacher serve --port 0 --tokenizer "$tok" --tools "$tools" --duration 900 >"$tmp/port" 2>"$tmp/server.log" &
server=$!
for _ in $(seq 300); do [[ -s "$tmp/port" ]] && break; sleep 0.1; done
port=$(grep -o '[0-9]\+' "$tmp/port" | tail -n 1)
[[ -n "$port" ]] || { echo "server did not start"; cat "$tmp/server.log"; exit 1; }
gen "$tmp/http" "http://127.0.0.1:$port" --set teacher.max_in_flight=8
/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$tmp/stub" "$tmp/http"
/usr/bin/python3 - "$tmp/http" "$n" <<'PY'
import json, sys, h5py, numpy as np
d, n = sys.argv[1], int(sys.argv[2])
st = json.load(open(d + "/stats.json"))
assert st["samples"] + st["filtered"] + st["failures"] == n, st
assert st["samples"] > n * 0.9, f"only {st['samples']} samples of {n}"
cov = st["teacher_coverage"]
for kind, c in cov.items():
    assert c["with_topk"] == c["tokens"], f"{kind}: {c['with_topk']} of {c['tokens']} trained tokens have teacher top-k"
assert cov["tool_name"]["tokens"] > 0 and cov["json"]["tokens"] > 0
with h5py.File(d + "/dataset.h5", "r") as f:
    off = f["samples/offsets"][:]
    loss = f["tokens/loss_mask"][:].astype(bool)
    top = f["teacher/topk_ids"][:, 0]
    ids = f["tokens/input_ids"][:]
    tt, to = f["text/teacher_text"][:], f["text/teacher_text_offsets"][:]
assert (top[loss] >= 0).all(), "a trained token without teacher top-k"
turns = [tt[to[i]:to[i + 1]].tobytes().count(b"<|im_start|>assistant") + 1 for i in range(len(off) - 1)]
multi = sum(t >= 2 for t in turns)
assert multi > len(turns) // 2, f"only {multi} conversations with a tool-call turn and an answer turn"
kinds = ", ".join("%s %d" % (k, c["tokens"]) for k, c in cov.items())
print(f"http: {st['samples']} samples, coverage 100% of {int(loss.sum())} trained tokens ({kinds}); "
      f"{multi} conversations with 2+ assistant turns")
PY
head -n 100 "$tmp/prompts.jsonl" >"$tmp/p100.jsonl"
# with a thinking teacher: teacher.extra_body reaches the server in every chat request
think='teacher.extra_body={"chat_template_kwargs": {"enable_thinking": true}}'
PROMPTS="$tmp/p100.jsonl" gen "$tmp/stub100" stub --set "$think"
PROMPTS="$tmp/p100.jsonl" gen "$tmp/cmpl100" "http://127.0.0.1:$port" --set teacher.scoring=completions --set "$think"
/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$tmp/stub100" "$tmp/cmpl100"
/usr/bin/python3 - "$tmp/cmpl100" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1] + "/dataset.h5", "r") as f:
    t = f["text/teacher_text"][:].tobytes()
assert t.count(b"<think>\nThe user wrote") > 50, "the thinking teacher wrote no think blocks over HTTP"
PY
