#!/usr/bin/env bash
# A real model as the teacher: `kdstep serve` serves a student trained here (the tiny preset on the
# stub teacher's answers, tests/lib/serve_lib.bash), `kdstep generate` at 2 MPI ranks uses it as an
# OpenAI-compatible teacher with teacher-forced scoring on (vLLM's prompt_logprobs through
# /v1/completions), a tiny student trains on that dataset at 2 ranks and `kdstep eval` evaluates it.
# The teacher's top-k are the served model's real distributions:
#  1. every scoring answer the server gave (--log-requests) equals kdstep's own batched forward pass
#     (tests/bench/bench_model_ref logits) over the same token ids: top-k ids and logprobs to 1e-4;
#  2. every assistant token of the dataset has teacher top-k, and each such row is one of the rows
#     the server answered (ids and float32 logprobs exactly).
set -u
# under tests/sanitize.sh (KD_TEST_QUICK=1) the fixture's ~50 CPU-seconds of training would take many
# minutes; the engine and API run under the sanitizers in unit/test_serve
[[ "${KD_TEST_QUICK:-0}" == 1 ]] && { echo "skip: KD_TEST_QUICK=1 (the default run covers it)"; exit 77; }
source "$KD_SOURCE_DIR/tests/lib/serve_lib.bash"
command -v mpirun >/dev/null && command -v jq >/dev/null || { echo "skip: mpirun and jq are needed"; exit 77; }
$PY -c 'import h5py, numpy' 2>/dev/null || { echo "skip: h5py/numpy not importable by $PY"; exit 77; }
export KDSTEP_PROGRESS_INTERVAL=1000
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
mpi() { local n=$1; shift; mpirun --allow-run-as-root --oversubscribe -np "$n" "$@"; }
tmp=$(mktemp -d); trap 'serve_stop >/dev/null 2>&1; rm -rf "$tmp"' EXIT
serve_trained_student FX || { echo "FAIL: could not train the fixture student"; exit 1; }
serve_start "$FX/run/final" --name student --log-requests "$tmp/requests.jsonl" || { echo "FAIL: serve did not start"; exit 1; }
"$K" prompts synth --tools "$FX/tools.json" -n 12 --seed 21 -o "$tmp/p.jsonl" >/dev/null 2>&1
"$K" prompts synth --tools "$FX/tools.json" -n 8 --seed 22 -o "$tmp/held.jsonl" >/dev/null 2>&1
mpi 2 "$K" generate --prompts "$tmp/p.jsonl" --out "$tmp/ds" --tools "$FX/tools.json" --tokenizer-path "$FX/tok" \
  --teacher "http://127.0.0.1:$SERVE_PORT" --model student --set teacher.teacher_forced_scoring=true --set teacher.top_logprobs=5 \
  --set teacher.max_tokens=96 --set generate.max_turns=2 >"$tmp/gen.out" 2>"$tmp/gen.err"; rc=$?
check "generate at 2 ranks against kdstep serve" '[ $rc -eq 0 ] || { tail -20 "$tmp/gen.err"; false; }'
check "the server answered scoring requests" '[ "$(grep -c "/v1/completions" "$tmp/requests.jsonl")" -ge 6 ]'
cp -r "$FX/run/final" "$tmp/served"
"$PY" - "$tmp" "$S/tests/reference/qwen3_ref.py" <<'PY' || fail=1
import importlib.util, json, sys
import numpy as np
t = sys.argv[1]
spec = importlib.util.spec_from_file_location("ref", sys.argv[2]); ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)
reqs = [json.loads(l) for l in open(f"{t}/requests.jsonl") if '"/v1/completions"' in l]
reqs = [r for r in reqs if r["response"]["choices"][0].get("prompt_logprobs")]
B, T = len(reqs), max(len(r["prompt_token_ids"]) for r in reqs)
ids = np.zeros((B, T), np.float32); lengths = np.zeros(B, np.float32)
for b, r in enumerate(reqs):
    p = r["prompt_token_ids"]; ids[b, :len(p)] = p; lengths[b] = len(p)
import torch
ref.st_write(f"{t}/served/batch.safetensors", {"ids": torch.from_numpy(ids), "lengths": torch.from_numpy(lengths)})
json.dump({"B": B, "T": T}, open(f"{t}/batch.json", "w"))
PY
"$KD_BUILD_DIR/tests/bench_model_ref" logits "$tmp/served" "$tmp/logits.safetensors" >/dev/null || fail=1
"$PY" - "$tmp" "$S/tests/reference/qwen3_ref.py" <<'PY' || fail=1
import importlib.util, json, sys
import h5py, numpy as np
t = sys.argv[1]
spec = importlib.util.spec_from_file_location("ref", sys.argv[2]); ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)
reqs = [json.loads(l) for l in open(f"{t}/requests.jsonl") if '"/v1/completions"' in l]
reqs = [r for r in reqs if r["response"]["choices"][0].get("prompt_logprobs")]
logits = ref.st_read(f"{t}/logits.safetensors")[0]["logits"].double().numpy()
served_rows, worst, n_pos = set(), 0.0, 0
for b, r in enumerate(reqs):
    p, plp = r["prompt_token_ids"], r["response"]["choices"][0]["prompt_logprobs"]
    x = logits[b, : len(p)]
    lsm = x - (np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) + x.max(-1, keepdims=True))
    for i in range(1, len(p)):
        e = plp[i]
        top = sorted(((v["rank"], int(k), v["logprob"]) for k, v in e.items() if v["rank"] <= 5))
        assert [a for a, _, _ in top] == [1, 2, 3, 4, 5], (b, i, e)
        want = np.sort(lsm[i - 1])[::-1][:5]
        for j, (_, tid, lp) in enumerate(top):
            # the served id's logprob is kdstep's, and it sits at rank j of kdstep's own distribution
            worst = max(worst, abs(lsm[i - 1][tid] - lp), abs(want[j] - lp))
        actual = e[str(p[i])]
        worst = max(worst, abs(lsm[i - 1][p[i]] - actual["logprob"]))
        served_rows.add((tuple(tid for _, tid, _ in top), tuple(np.float32(lp) for _, _, lp in top)))
        n_pos += 1
print(f"served prompt_logprobs vs kdstep's forward pass: {len(reqs)} requests, {n_pos} positions, max |d logprob| {worst:.2e}")
assert worst <= 1e-4, worst
f = h5py.File(f"{t}/ds/dataset.h5", "r")
off = f["samples/offsets"][:]; loss = f["tokens/loss_mask"][:]; tids = f["teacher/topk_ids"][:]; tlps = f["teacher/topk_logprobs"][:]
inp = f["tokens/input_ids"][:]
tok = json.load(open(f"{t}/served/tokenizer.json"))
added = {a["content"]: a["id"] for a in tok["added_tokens"]}
vocab = {v: k for k, v in tok["model"]["vocab"].items()}
special = {added["<|im_end|>"], added["<|endoftext|>"]}
n_asst = n_cov = n_match = n_all = n_all_cov = 0
missing = []
for s in range(len(off) - 1):
    rows = range(off[s], off[s + 1])
    # an endpoint teacher's logprobs describe its final answer (docs/architecture.md): the last
    # assistant turn, from after its last <|im_start|> (and the template's think block) to its <|im_end|>
    last = max(r for r in rows if inp[r] == added["<|im_start|>"])
    think = [r for r in rows if r > last and inp[r] == added.get("</think>")]
    if think:
        last = think[0] + 1
        while last < rows.stop and set(vocab.get(int(inp[last]), "x")) == {"\u010a"}:  # newlines ("Ċ" byte-level)
            last += 1
    for row in rows:
        if not loss[row] or inp[row] in special:
            continue
        n_all += 1
        n_all_cov += tids[row, 0] >= 0
        if row < last:
            continue
        n_asst += 1
        if tids[row, 0] < 0:
            missing.append((s, row - off[s]))
            continue
        n_cov += 1
        key = (tuple(int(v) for v in tids[row, :5]), tuple(np.float32(v) for v in tlps[row, :5]))
        n_match += key in served_rows
print(f"dataset: {len(off) - 1} samples; final answers: {n_asst} assistant tokens (end-of-turn excluded), {n_cov} with teacher top-k, "
      f"{n_match} of those equal to a served row; all turns: {n_all_cov} of {n_all} tokens have top-k")
assert len(off) - 1 >= 6 and n_asst > 0
assert n_cov == n_asst, f"final-answer tokens without teacher top-k (sample, position): {missing[:10]}"
assert n_match == n_cov, "teacher rows that the server did not give"
print("ok   every assistant token has teacher top-k, and they are the served model's own distributions")
PY
serve_stop || fail=1
KDSTEP_THREADS=1 mpi 2 "$K" train --train-data "$tmp/ds" --out "$tmp/run" --tokenizer-path "$FX/tok" --set model.preset=tiny \
  --set train.seq_len=384 --set train.micro_batch=2 --set train.steps=4 --set train.warmup_steps=1 --set train.eval_every=0 \
  >/dev/null 2>"$tmp/train.err"; rc=$?
check "train a tiny student on the served teacher's dataset (2 ranks)" '[ $rc -eq 0 ] || { tail "$tmp/train.err"; false; }'
mpi 2 "$K" eval --model "$tmp/run/final" --prompts "$tmp/held.jsonl" --tools "$FX/tools.json" --max-new-tokens 24 --out "$tmp/eval" \
  >/dev/null 2>"$tmp/eval.err"; rc=$?
check "eval it end to end (2 ranks)" '[ $rc -eq 0 ] && [ "$(jq .count "$tmp/eval/report.json")" = 8 ] || { tail "$tmp/eval.err"; false; }'
exit $fail
