#!/bin/bash
# Chat rendering speed: kd_chat_render_json (tests/bench/bench_chat_render --repeat) against Jinja2
# rendering Qwen3's template as transformers does, on the generated test conversations, same run.
set -euo pipefail
SRC=${KD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${KD_BUILD_DIR:-$SRC/build}
CFG=$SRC/tests/.cache/tokenizers/qwen3/tokenizer_config.json
[ -f "$CFG" ] && /usr/bin/python3 -c 'import jinja2' 2>/dev/null || { echo "skip: needs $CFG and python3-jinja2"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
/usr/bin/python3 "$SRC/tests/reference/chat_template.py" gen 300 "$SRC/configs/tools.json" > "$T/conv.jsonl"
KD=$("$BUILD/tests/bench_chat_render" --repeat 200 < "$T/conv.jsonl" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["render_mb_s"])')
JJ=$(/usr/bin/python3 - "$CFG" "$T/conv.jsonl" "$SRC/tests/reference" <<'PY'
import json, sys, time
sys.path.insert(0, sys.argv[3])
from chat_template import jinja_render
t = json.load(open(sys.argv[1], encoding="utf-8"))["chat_template"]
convs = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
t0 = time.perf_counter(); n = 0
for _ in range(3):
    for c in convs: n += len(jinja_render(t, c).encode("utf-8"))
print(round(n / 1e6 / (time.perf_counter() - t0), 3))
PY
)
RATIO=$(awk "BEGIN{printf \"%.1f\", $KD / $JJ}")
echo "chat rendering: kdstep $KD MB/s, Jinja2 (compiled once) $JJ MB/s"
echo "{\"kdstep_mb_s\": $KD, \"jinja2_mb_s\": $JJ, \"ratio\": $RATIO}"
