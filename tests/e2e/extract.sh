#!/usr/bin/env bash
# kdstep extract: JSON Lines in/out, spans, bad lines reported with their number, --tokenizer masks.
set -u
K="${KDSTEP:?}"
SRC="${KD_SOURCE_DIR:?}"
PY=/usr/bin/python3
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/in.jsonl" <<'JSONL'
{"text": "Checking. <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\nIt is 21.50 degrees and Sunny in Paris.", "tool_results": ["{\"temp\": 21.5, \"sky\": \"sunny\"}"]}
not json at all

{"text": "No call here, but Oslo is 1,000 km away.", "tool_results": [{"distance_km": 1000, "city": "Oslo"}]}
{"text": "{\"name\": \"launch\", \"arguments\": {\"x\": 1}} and {\"name\": \"get_weather\", \"arguments\": {\"city\": 3}}"}
{"text": 3}
JSONL
"$K" extract --tools "$SRC/configs/tools.json" <"$tmp/in.jsonl" >"$tmp/out.jsonl"; rc=$?
check "extract exits 0 on bad lines" '[ $rc -eq 0 ]'
check "one output line per input line" '[ $(wc -l <"$tmp/out.jsonl") -eq 5 ]'
$PY - "$tmp/in.jsonl" "$tmp/out.jsonl" <<'PY' >"$tmp/py.txt" 2>&1; rc=$?
import json, sys
ins = [json.loads(l) for l in open(sys.argv[1]) if l.strip() and l.startswith("{")]
outs = [json.loads(l) for l in open(sys.argv[2])]
t0 = ins[0]["text"].encode()
o = outs[0]
c = o["tool_calls"][0]
assert c["format"] == "hermes" and c["name"] == "get_weather", c
assert t0[c["name_span"][0]:c["name_span"][1]] == b"get_weather"
assert json.loads(t0[c["arguments_span"][0]:c["arguments_span"][1]]) == {"city": "Paris"}
assert c["registered"] and c["json_valid"] and c["schema_valid"] and c["schema_error"] is None
spans = [t0[s:e].decode() for s, e in o["integration_spans"]]
assert spans == ["21.50", "Sunny"], spans          # searched only after the call: "Paris" there is an argument, not a result
assert o["errors"] == []
assert outs[1]["errors"][0].startswith("line 2: invalid JSON at column"), outs[1]
t2 = ins[1]["text"].encode()
assert [t2[s:e].decode() for s, e in outs[2]["integration_spans"]] == ["Oslo", "1,000"], outs[2]
c1, c2 = outs[3]["tool_calls"]
assert c1["name"] == "launch" and not c1["registered"] and c1["schema_error"] == "tool 'launch' is not registered"
assert c2["registered"] and not c2["schema_valid"] and "$.city: expected string, got integer" in c2["schema_error"]
assert outs[4]["errors"] == ['line 6: missing string "text"'], outs[4]
print("python checks passed")
PY
check "spans, flags and errors are right" '[ $rc -eq 0 ]'
cat "$tmp/py.txt"

err=$("$K" extract </dev/null 2>&1); rc=$?
check "--tools is required" '[ $rc -eq 2 ] && grep -q "extract: --tools FILE is required" <<<"$err"'
err=$("$K" extract --tools "$tmp/nope.json" </dev/null 2>&1); rc=$?
check "missing registry file fails" '[ $rc -eq 1 ] && grep -q "nope.json" <<<"$err"'
echo '[{"text": "x"}]' | "$K" extract --tools "$SRC/configs/tools.json" >"$tmp/o2" 2>&1
check "non-object line is an error entry" 'grep -q "line 1: expected an object" "$tmp/o2"'
echo '{"text": "It is 5 degrees", "tool_results": "5"}' | "$K" extract --tools "$SRC/configs/tools.json" >"$tmp/o3" 2>&1
want='line 1: \"tool_results\" must be an array of strings (or JSON values)'
check "tool_results must be an array" 'grep -qF -- "$want" "$tmp/o3"'

tok="$SRC/tests/.cache/tokenizers/qwen3"
head -n 1 "$tmp/in.jsonl" >"$tmp/one.jsonl"
err=$("$K" extract --tools "$SRC/configs/tools.json" --tokenizer "$tmp/no-such-tokenizer" </dev/null 2>&1); rc=$?
check "a missing tokenizer fails with exit 1" '[ $rc -eq 1 ] && grep -q "no-such-tokenizer" <<<"$err"'
out=$("$K" extract --tools "$SRC/configs/tools.json" --tokenizer "$tok" <"$tmp/one.jsonl" 2>&1); rc=$?
if [ ! -d "$tok" ]; then
  echo "SKIP --tokenizer masks: $tok is absent (run tests/fetch-tokenizers.sh)"
else
  check "--tokenizer exits 0" '[ $rc -eq 0 ]'
  echo "$out" >"$tmp/tok.jsonl"
  $PY - "$tmp/one.jsonl" "$tmp/tok.jsonl" <<'PY'; rc=$?
import json, sys
text = json.loads(open(sys.argv[1]).read())["text"].encode()
o = json.loads(open(sys.argv[2]).read())
n = len(o["input_ids"])
for k in ("loss_mask", "tool_name_mask", "json_mask", "integration_mask", "offsets"):
    assert len(o[k]) == n, k
def covered(mask):
    return b"".join(text[s:e] for (s, e), m in zip(o["offsets"], o[mask]) if m)
assert b"get_weather" in covered("tool_name_mask")
assert b'{"city": "Paris"}' in covered("json_mask")
assert b"21.50" in covered("integration_mask") and b"Sunny" in covered("integration_mask")
assert all(o["loss_mask"])
print("tokenizer masks aligned")
PY
  check "--tokenizer masks cover name, arguments, integration" '[ $rc -eq 0 ]'
fi
exit $fail
