#!/usr/bin/env bash
# Cost of the JSON grammar term per training step: 8192-token vocabulary, batch 8x256, ~30% JSON
# positions; the peer is masked CE over the same positions in the same run. Ends with one JSON line.
set -u
B="${KD_BUILD_DIR:?}"
drv="$B/tests/bench_loss"
[ -x "$drv" ] || { echo "FAIL: $drv not built"; exit 1; }
threads="${KD_BENCH_THREADS:-1}"
out=$(OMP_NUM_THREADS="$threads" "$drv" grammar 8192 8 256 0.3 10) || { echo "FAIL: bench_loss grammar"; exit 1; }
echo "threads: $threads"
glaive="${KD_SOURCE_DIR:-.}/../shared/data/glaive/glaive_toolcall_en_demo.json"
if [ -f "$glaive" ]; then
  "$drv" states "$glaive" 8192 || { echo "FAIL: bench_loss states"; exit 1; }
else
  echo "note: $glaive absent, skipping the real tool-call state count"
fi
echo "$out"
json=$(tail -n 1 <<<"$out")
/usr/bin/python3 - "$json" <<'PY' || { echo "FAIL: implausible figures"; exit 1; }
import json, sys
r = json.loads(sys.argv[1])
assert r["vocab"] == 8192 and r["batch"] == "8x256"
assert 0.25 * 2048 < r["json_positions"] < 0.35 * 2048, r
assert r["steady_step_ms"] > 0 and r["ce_step_ms"] > 0 and r["sets_built"] > 0
PY
