#!/usr/bin/env bash
# Extraction + alignment time per MB of teacher text, next to the tokenizer's encode time for the
# same text (Qwen3). Ends with one JSON line. Skips (77) without ../shared/data.
set -euo pipefail
B="${KD_BUILD_DIR:?}/tests/bench_extract"
SRC="${KD_SOURCE_DIR:?}"
data="$SRC/../shared/data/glaive/glaive_toolcall_en_demo.json"
[[ -f "$data" ]] || { echo "SKIP: $data is absent"; exit 77; }
[[ -x "$B" ]] || { echo "bench_extract is not built ($B)"; exit 1; }
out=$("$B" "$data" "$SRC/tests/.cache/tokenizers/qwen3" "${KD_BENCH_PASSES:-20}")
echo "$out"
last=$(tail -n 1 <<<"$out")
/usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["extract_s_per_mb"] > 0 and d["align_s_per_mb"] > 0' "$last"
