#!/usr/bin/env bash
# Data-parallel is exact: -np 2 with micro-batch B equals -np 1 with B and grad_accum 2 (same
# samples per step; every loss term is normalized by its global count), and -np 4 with B/2 agrees:
# the same losses and weights within 1e-5 after 20 steps.
source "$(dirname "$0")/train_lib.bash"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_data "$tmp" 160
common=($(tiny_flags) --train-data "$tmp/ds" --tokenizer-path "$tmp/tok" --set train.steps=20
        --set train.eval_every=0 --set train.checkpoint_every=0 --set train.lr=0.003)
mpirun --oversubscribe -np 1 "$KDSTEP" train "${common[@]}" --out "$tmp/np1" --set train.micro_batch=2 --set train.grad_accum=2 2>"$tmp/np1.log" || { cat "$tmp/np1.log"; exit 1; }
mpirun --oversubscribe -np 2 "$KDSTEP" train "${common[@]}" --out "$tmp/np2" --set train.micro_batch=2 --set train.grad_accum=1 2>"$tmp/np2.log" || { cat "$tmp/np2.log"; exit 1; }
mpirun --oversubscribe -np 4 "$KDSTEP" train "${common[@]}" --out "$tmp/np4" --set train.micro_batch=1 --set train.grad_accum=1 2>"$tmp/np4.log" || { cat "$tmp/np4.log"; exit 1; }
"$PY" - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
runs = {n: [json.loads(l) for l in open(f"{t}/{n}/metrics.jsonl")] for n in ("np1", "np2", "np4")}
keys = ["loss", "kd", "ce", "tool", "json_ce", "json_grammar", "grad_norm"]
for n in ("np2", "np4"):
    assert len(runs[n]) == len(runs["np1"]) == 20, (n, len(runs[n]))
    worst = 0.0
    for a, b in zip(runs["np1"], runs[n]):
        assert a["step"] == b["step"] and a["tokens"] == b["tokens"], (a, b)
        for k in keys:
            worst = max(worst, abs(a[k] - b[k]))
    print(f"{n}: max |metric diff| vs np1 over 20 steps = {worst:.3g}")
    assert worst < 1e-5, (n, worst)
first, last = runs["np1"][0]["loss"], runs["np1"][-1]["loss"]
assert last < first, ("loss did not fall", first, last)
PY
for n in np2 np4; do
  d=$(st_maxdiff "$tmp/np1/final/model.safetensors" "$tmp/$n/final/model.safetensors")
  echo "$n: max |weight diff| vs np1 = $d"
  "$PY" -c "import sys; sys.exit(0 if float('$d') < 1e-5 else 1)" || { echo "weights differ by $d"; exit 1; }
done
echo "train_dp_exact: OK"
