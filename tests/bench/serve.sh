#!/usr/bin/env bash
# Decode speed of `kdstep serve` for the `small` student shape (random weights: speed does not depend
# on them; ignore_eos keeps every answer NEW tokens long) at batch 1 against PyTorch with a KV cache on
# the same safetensors in the same run, and 8 concurrent requests' aggregate tokens/s (continuous
# batching) against batch 1. Prints one JSON line. The machine may be shared: figures are ratios
# taken in one run, with the thread count given.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/serve_lib.bash"
$PY -c 'import torch' 2>/dev/null || { echo "skip: torch not importable by $PY"; exit 77; }
THREADS=${KD_BENCH_THREADS:-2}; NEW=${KD_BENCH_NEW_TOKENS:-128}
tmp=$(mktemp -d); trap 'serve_stop >/dev/null 2>&1; rm -rf "$tmp"' EXIT
jq '.[0:2]' "$S/configs/tools.json" >"$tmp/tools.json"
serve_tokenizer "$tmp/tok" "$tmp/tools.json"
"$PY" "$S/tests/e2e/make_student.py" "$S/configs/models/small.json" "$tmp/tok/tokenizer.json" "$tmp/m" --seed 5 --vocab 8192 >/dev/null
serve_start "$tmp/m" --name m --threads "$THREADS"
"$PY" "$S/tests/bench/serve.py" "$SERVE_PORT" "$tmp/m" "$NEW" "$THREADS" "$SERVE_PID"
serve_stop
