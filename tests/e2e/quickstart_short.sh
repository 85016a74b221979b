#!/usr/bin/env bash
# A shortened quickstart: jobs/quickstart.sh on a small job (120 prompts, a few steps of the tiny
# student) runs every stage on 2 MPI ranks and prints the eval table and the plot's path.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/short.yaml" <<YAML
job:
  name: short
  workdir: $tmp/run
  ranks: 2
prompts:
  synth_count: 120
  synth_seed: 1
  heldout_count: 16
  heldout_seed: 2
tools: $KD_SOURCE_DIR/configs/tools.json
tokenizer: $tok
config: $KD_SOURCE_DIR/configs/process_supervision.yaml
overrides: [model.preset=tiny, train.seq_len=128, train.micro_batch=4, train.steps=8, train.eval_every=4, eval.max_new_tokens=16]
YAML
KD_BUILD_DIR="$KD_BUILD_DIR" "$KD_SOURCE_DIR/jobs/quickstart.sh" "$tmp/short.yaml" >"$tmp/out.log" 2>&1 || { tail -30 "$tmp/out.log"; exit 1; }
grep -q "^== eval: $tmp/run/eval/report.md" "$tmp/out.log" || { tail -20 "$tmp/out.log"; exit 1; }
grep -q "^| \*\*all\*\* | 16 |" "$tmp/out.log" || { tail -20 "$tmp/out.log"; exit 1; }
grep -q "training curves: $tmp/run/train/curves.png" "$tmp/out.log"
[[ -s "$tmp/run/train/curves.png" && -s "$tmp/run/train/final/model.safetensors" ]]
echo "quickstart (short) printed the eval table: $(grep '^| all' "$tmp/out.log" | head -1)"
