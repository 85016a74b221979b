#!/usr/bin/env bash
# The C student against the PyTorch reference (tests/reference/qwen3_ref.py), on the tiny preset
# (MHA, tied) and gqa.json (4 heads / 2 kv heads, head_dim 16 != 48/4, untied lm_head):
# logits, loss, every gradient (tensor by tensor), 10 AdamW steps; then checkpoint round trips.
set -euo pipefail
PY=/usr/bin/python3
$PY -c 'import torch' 2>/dev/null || { echo "skip: torch not importable by $PY"; exit 77; }
DRV="$KD_BUILD_DIR/tests/bench_model_ref"
REF="$KD_SOURCE_DIR/tests/reference/qwen3_ref.py"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
run() { echo "== $*"; "$@"; }
for cfg in "$KD_SOURCE_DIR/configs/models/tiny.json:3:16:1" "$KD_SOURCE_DIR/tests/reference/gqa.json:3:20:2"; do
  IFS=: read -r path B T threads <<<"$cfg"
  name=$(basename "$path" .json)
  d="$W/$name"
  # threads=2 exercises the OpenMP paths (attention tasks, per-thread norm-gradient sums)
  run env OMP_NUM_THREADS=$threads "$DRV" dump "$path" "$d" 1234 "$B" "$T"
  run $PY "$REF" check "$d"
  # save -> load -> save: byte-identical safetensors (and config.json)
  run "$DRV" resave "$d" "$W/$name.2"
  cmp "$d/model.safetensors" "$W/$name.2/model.safetensors"
  cmp "$d/config.json" "$W/$name.2/config.json"
  # the kdstep checkpoint, read by HF names in PyTorch, gives the same logits on a fresh batch
  run $PY "$REF" batch "$d" 2 "$T" 7
  run "$DRV" logits "$d" "$W/$name.logits.safetensors"
  run $PY "$REF" compare-logits "$d" "$W/$name.logits.safetensors"
  # F16 / BF16 checkpoints written by Python load in kdstep (converted to float exactly)
  for dt in F16 BF16; do
    run $PY "$REF" write-dtype "$d" "$W/$name.$dt" $dt
    run $PY "$REF" batch "$W/$name.$dt" 2 "$T" 8
    run "$DRV" logits "$W/$name.$dt" "$W/$name.$dt.logits.safetensors"
    run $PY "$REF" compare-logits "$W/$name.$dt" "$W/$name.$dt.logits.safetensors"
  done
done
echo "model_oracle: all checks passed"
