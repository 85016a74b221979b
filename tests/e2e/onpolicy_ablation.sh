#!/usr/bin/env bash
# jobs/onpolicy_ablation.sh and its report, tiny: a base student from a tiny unseen-tools job (own
# tools per prompt, held-out tools, all of `kdstep run`), then both arms over 2 seeds (12 prompts,
# 2 steps). Checks: the mixed datasets are partly student-written and the off one is not; every run
# is evaluated on splits (a) and (b); the report section lands between its markers with both arms and
# a Welch cell per metric, and the rest of the page is kept; a rerun redoes nothing. Then the Welch
# p-values of jobs/results_lib.py against a numeric integral of Student's t density (numpy).
set -euo pipefail
[[ "${KD_TEST_QUICK:-0}" == 1 ]] && { echo "skip: KD_TEST_QUICK=1"; exit 77; }
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
command -v mpirun >/dev/null || { echo "skip: mpirun missing"; exit 77; }
export OMP_NUM_THREADS=1 KDSTEP_THREADS=1 KDSTEP_PROGRESS_INTERVAL=1000
tok=$(kd_student_tokenizer)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/base.yaml" <<YAML
job:
  name: base
  workdir: $tmp/base
  ranks: 2
prompts:
  synth_count: 24
  synth_seed: 1
  tools_per_prompt: 2-3
  heldout_count: 4
  heldout_seed: 2
  heldout_tools: $KD_SOURCE_DIR/configs/tool_pool.heldout.json
  heldout_tools_count: 4
tools: $KD_SOURCE_DIR/configs/tool_pool.train.json
tokenizer: $tok
config: $KD_SOURCE_DIR/configs/process_supervision.yaml
overrides:
  - model.preset=tiny
  - train.seq_len=0
  - train.micro_batch=2
  - train.steps=3
  - train.warmup_steps=1
  - train.eval_every=0
  - train.checkpoint_every=0
  - eval.max_new_tokens=12
YAML
kd_mpirun 2 "$KDSTEP" run "$tmp/base.yaml" >"$tmp/base.log" 2>&1 || { tail -30 "$tmp/base.log"; exit 1; }
printf '# Results\n\nhand-written text that must stay\n\n<!-- begin onpolicy-ablation (generated: do not edit by hand) -->\nold\n<!-- end onpolicy-ablation -->\n\nmore text after\n' >"$tmp/results.md"

abl() {
  BASE="$tmp/base" WORK="$tmp/abl" NPROMPTS=12 STEPS=2 SEEDS="1 2" RESULTS="$tmp/results.md" EVAL_TOKENS=12 \
    STUDENT_TOKENS=24 KDSTEP="$KDSTEP" "$KD_SOURCE_DIR/jobs/onpolicy_ablation.sh"
}
abl >"$tmp/abl.log" 2>&1 || { tail -40 "$tmp/abl.log"; exit 1; }
policy_sum() { /usr/bin/python3 -c "import h5py,sys; print(int(h5py.File(sys.argv[1])['samples/policy'][:].sum()))" "$1/dataset.h5"; }
[[ $(policy_sum "$tmp/abl/data/off") == 0 ]] || { echo "FAIL: the off-policy dataset has student-written samples"; exit 1; }
for s in 1 2; do
  n=$(policy_sum "$tmp/abl/data/mixed-seed$s")
  [[ $n -gt 0 && $n -lt 12 ]] || { echo "FAIL: mixed seed $s: $n of 12 samples student-written"; exit 1; }
  for arm in off mixed; do
    for sp in a b; do
      jq -e '.count == 4' "$tmp/abl/$arm-seed$s/eval-$sp/report.json" >/dev/null || { echo "FAIL: $arm seed $s split $sp"; exit 1; }
    done
    # both arms start from the base's weights (model.init pretrained) and train STEPS steps
    [[ $(jq -s 'last.step' "$tmp/abl/$arm-seed$s/train/metrics.jsonl") == 2 ]] || { echo "FAIL: $arm seed $s: not 2 steps"; exit 1; }
  done
done
echo "ok   2 seeds x 2 arms trained and evaluated; mixed datasets partly student-written, the off one not"
grep -q "hand-written text that must stay" "$tmp/results.md" && grep -q "more text after" "$tmp/results.md" \
  || { cat "$tmp/results.md"; echo "FAIL: the report lost the rest of the page"; exit 1; }
grep -qx old "$tmp/results.md" && { echo "FAIL: the old section text is still there"; exit 1; }
[[ $(grep -c "<!-- begin onpolicy-ablation" "$tmp/results.md") == 1 ]] || { echo "FAIL: the section markers doubled"; exit 1; }
for want in "| off-policy (teacher writes every answer) |" "| mixed on-policy (λ 0.5: the student writes half) |" \
            "| mixed − off (Welch) |" "**Verdict on unseen tools (split b).**" "| 1 | " "| 2 | "; do
  grep -qF -- "$want" "$tmp/results.md" || { cat "$tmp/results.md"; echo "FAIL: the section lacks '$want'"; exit 1; }
done
[[ $(grep -c "^| mixed − off (Welch) |" "$tmp/results.md") == 2 ]] || { echo "FAIL: not one Welch row per split"; exit 1; }
echo "ok   the report section replaced its markers' text, with both arms, per-seed rows and Welch rows; the rest kept"
cp "$tmp/results.md" "$tmp/results.first"
abl >"$tmp/abl2.log" 2>&1 || { tail -40 "$tmp/abl2.log"; exit 1; }
grep -q ": train \|: eval split\|: generate$" "$tmp/abl2.log" && { cat "$tmp/abl2.log"; echo "FAIL: the rerun redid work"; exit 1; }
cmp "$tmp/results.first" "$tmp/results.md" || { echo "FAIL: the rerun changed the report"; exit 1; }
echo "ok   a rerun skips every finished step and writes the same section"

/usr/bin/python3 - "$KD_SOURCE_DIR/jobs" <<'PY'
import math, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from results_lib import welch_test

def p_numeric(t, df):  # 2 * integral of Student's t density from |t| to infinity (substitution x = |t| + u/(1-u))
    u = np.linspace(0.0, 1.0, 400001)[:-1]
    x = abs(t) + u / (1.0 - u)
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    f = c * (1 + x * x / df) ** (-(df + 1) / 2) / (1.0 - u) ** 2
    return 2 * float(np.sum((f[1:] + f[:-1]) / 2 * np.diff(u)))

cases = [([1, 2, 3], [4, 5, 7]), ([0.1, 0.12, 0.11], [0.2, 0.1, 0.3]), ([0.0, 0.01, 0.03], [0.5, 0.52, 0.49]),
         ([0.3, 0.5, 0.4, 0.45], [0.31, 0.52, 0.38])]
for a, b in cases:
    d, t, df, p = welch_test(a, b)
    q = p_numeric(t, df)
    assert abs(p - q) < 1e-6 * max(1.0, q) + 1e-9, (a, b, t, df, p, q)
    print(f"ok   welch {a} vs {b}: t {t:.4f} df {df:.3f} p {p:.6f} (numeric {q:.6f})")
assert welch_test([0, 0, 0], [0, 0, 0])[3] == 1.0 and welch_test([0, 0, 0], [1, 1, 1])[3] == 0.0
assert welch_test([0.5], [0.1, 0.2])[3] is None
PY
