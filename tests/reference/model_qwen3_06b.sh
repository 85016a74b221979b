#!/usr/bin/env bash
# The real Qwen3-0.6B shape (configs/models/qwen3-0.6b.json: 596M parameters, vocab 151936,
# 16 heads / 8 kv heads, head_dim 128, tied): seeded weights saved by kdstep load in the PyTorch
# reference by HF names and give the same logits; the KV-cache decode agrees with the forward;
# a BF16 copy of the checkpoint (the dtype Qwen ships) loads in kdstep. Needs ~10 GB of free memory.
set -euo pipefail
# Several minutes and 10 GB: run it with KDSTEP_SLOW_TESTS=1 (tests/run.sh -R model_qwen3_06b).
[ -n "${KDSTEP_SLOW_TESTS:-}" ] || { echo "skip: slow test (set KDSTEP_SLOW_TESTS=1)"; exit 77; }
PY=/usr/bin/python3
$PY -c 'import torch' 2>/dev/null || { echo "skip: torch not importable by $PY"; exit 77; }
avail=$(awk '/MemAvailable/ {print int($2/1048576)}' /proc/meminfo)
[ "$avail" -ge 10 ] || { echo "skip: needs 10 GB of free memory, $avail GB available"; exit 77; }
DRV="$KD_BUILD_DIR/tests/bench_model_ref"
REF="$KD_SOURCE_DIR/tests/reference/qwen3_ref.py"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
T=12
echo "== kdstep: seeded init, save, forward, KV-cache decode (asserted inside, rel 1e-4)"
"$DRV" dump-inference qwen3-0.6b "$W/m" 5 $T
echo "== torch loads the kdstep checkpoint by HF names: same logits"
$PY "$REF" compare-batch "$W/m" "$W/m/c_logits.safetensors"
echo "== BF16 checkpoint -> kdstep"
$PY "$REF" write-dtype "$W/m" "$W/bf16" BF16
cp "$W/m/batch.safetensors" "$W/bf16/"
rm -rf "$W/m"   # disk: each copy is 2.4 GB
"$DRV" logits "$W/bf16" "$W/bf16.logits.safetensors"
$PY "$REF" compare-batch "$W/bf16" "$W/bf16.logits.safetensors"
echo "model_qwen3_06b: all checks passed"
