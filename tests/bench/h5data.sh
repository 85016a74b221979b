#!/usr/bin/env bash
# HDF5 dataset write/read speed and bytes on disk per token for the three compression modes
# (0 none, 1 default: masks/offsets/texts deflated, 2 everything deflated), teacher top-k K=8,
# random token ids and log-probs (a pessimistic case for compression). All modes run in this one
# process tree on the same machine; compare the ratios. Ends with one JSON line.
set -euo pipefail
B="${KD_BUILD_DIR:?}"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
SAMPLES=${SAMPLES:-2000}; TPS=${TPS:-512}; K=${K:-8}
declare -A J
for mode in 0 1 2; do
  out=$("$B/tests/bench_h5data" bench "$T/d$mode" "$SAMPLES" "$TPS" "$K" "$mode")
  echo "$out" | sed '$d'
  J[$mode]=$(tail -1 <<<"$out")
  rm -rf "$T/d$mode"
done
/usr/bin/python3 - "${J[0]}" "${J[1]}" "${J[2]}" <<'PY'
import sys, json
m = [json.loads(a) for a in sys.argv[1:]]
r = {}
for name, x in zip(("none", "default", "all"), m):
    r[name + "_write_tokens_s"] = x["write_tokens_s"]
    r[name + "_read_tokens_s"] = x["read_tokens_s"]
    r[name + "_bytes_per_token"] = x["bytes_per_token"]
r["default_write_vs_none"] = round(m[1]["write_tokens_s"] / m[0]["write_tokens_s"], 3)
r["all_write_vs_none"] = round(m[2]["write_tokens_s"] / m[0]["write_tokens_s"], 3)
print(json.dumps(r))
PY
