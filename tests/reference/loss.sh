#!/usr/bin/env bash
# Each loss and its gradient against PyTorch (float64 autograd) within 1e-5: CE, forward KL, reverse KL,
# JSD(beta) with the tail bucket, masked tool/JSON/integration CE and the JSON grammar term.
set -u
B="${KD_BUILD_DIR:?}"
S="${KD_SOURCE_DIR:?}"
PY=/usr/bin/python3
if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
  echo "skip: $PY has no torch/numpy"; exit 77
fi
drv="$B/tests/bench_loss"
[ -x "$drv" ] || { echo "FAIL: $drv not built"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$drv" ref "$dir" || { echo "FAIL: bench_loss ref"; exit 1; }
"$PY" "$S/tests/reference/loss_ref.py" "$dir" || { echo "FAIL: losses differ from PyTorch"; exit 1; }
echo "ok   all losses match PyTorch within 1e-5"
