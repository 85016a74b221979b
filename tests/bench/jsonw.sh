#!/usr/bin/env bash
# Compact JSON writing: kd_json_dumps_compact against jansson's json_dumps(JSON_COMPACT), same run
# (tests/bench/bench_jsonw): the teacher's request body with configs/tools.json as tools, and every
# BFCL function list in one array (when ../shared/data is there). The outputs are compared byte for
# byte first: a difference fails the run (exit 1). Ends with one JSON line.
set -euo pipefail
SRC=${KD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${KD_BUILD_DIR:-$SRC/build}
bench="$BUILD/tests/bench_jsonw"
[[ -x "$bench" ]] || { echo "jsonw bench: $bench not built" >&2; exit 1; }
args=(--tools "$SRC/configs/tools.json" --rounds "${KD_BENCH_JSONW_ROUNDS:-7}")
if [[ -d "$SRC/../shared/data/bfcl" ]]; then
  args+=(--bfcl "$SRC/../shared/data/bfcl")
else
  echo "jsonw bench: ../shared/data is absent; the BFCL workload is skipped"
fi
out=$("$bench" "${args[@]}" 2>&1) || { echo "$out"; echo "jsonw bench: failed (outputs differ or bad input)" >&2; exit 1; }
echo "$out" | grep -v '^{'
last=$(echo "$out" | grep '^{' | tail -1)
/usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["ratio"] > 0 and d["kdstep_mb_s"] > 0' "$last" \
  || { echo "jsonw bench: no result line" >&2; exit 1; }
echo "$last"
