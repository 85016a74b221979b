#!/usr/bin/env bash
# kdstep score end to end: JSON report keys on stdout, the Markdown table, per-item details, errors.
set -u
K="${KDSTEP:?}"
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/tools.json" <<'J'
[{"name": "get_weather", "description": "Weather", "parameters": {"type": "dict", "required": ["city"],
  "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}]
J
cat >"$tmp/answers.jsonl" <<'J'
{"id": "simple_0", "ground_truth": [{"get_weather": {"city": ["Paris"], "days": [2, ""]}}]}
{"id": "simple_1", "ground_truth": [{"get_weather": {"city": ["Rome"], "days": [2, ""]}}]}
{"id": "irrelevance_0", "ground_truth": []}
J
cat >"$tmp/preds.jsonl" <<'J'
{"id": "simple_0", "tool_calls": [{"name": "get_weather", "arguments": {"city": "paris", "days": 2}}]}
{"id": "simple_1", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome", "days": "2"}}]}
{"id": "irrelevance_0", "tool_calls": []}
J
out=$("$K" score --predictions "$tmp/preds.jsonl" --answers "$tmp/answers.jsonl" --tools "$tmp/tools.json" \
      --markdown "$tmp/report.md" --details "$tmp/details.jsonl"); rc=$?
check "score exits 0" '[ $rc -eq 0 ]'
check "stdout is JSON with every key" 'jq -e "has(\"tool_name_accuracy\") and has(\"json_validity\") and has(\"schema_validity\") and has(\"ast_accuracy\") and has(\"no_call_accuracy\") and has(\"count\") and has(\"by_category\")" <<<"$out" >/dev/null'
check "count is 3" '[ "$(jq .count <<<"$out")" = 3 ]'
check "ast_accuracy is 2/3" '[ "$(jq ".ast_accuracy*3|round" <<<"$out")" = 2 ]'
check "simple ast 0.5" '[ "$(jq .by_category.simple.ast_accuracy <<<"$out")" = 0.5 ]'
check "simple no_call is null" '[ "$(jq .by_category.simple.no_call_accuracy <<<"$out")" = null ]'
check "irrelevance no_call 1" 'jq -e ".by_category.irrelevance.no_call_accuracy == 1" <<<"$out" >/dev/null'
check "irrelevance tool name null" '[ "$(jq .by_category.irrelevance.tool_name_accuracy <<<"$out")" = null ]'
check "fractions in [0,1]" 'jq -e "[.tool_name_accuracy,.json_validity,.schema_validity,.ast_accuracy,.no_call_accuracy]|all(.>=0 and .<=1)" <<<"$out" >/dev/null'
check "markdown header" 'grep -q "^| category | count | tool name | JSON valid | schema valid | AST | no call |$" "$tmp/report.md"'
check "markdown simple row" 'grep -q "^| simple | 2 | 100.0% | 100.0% | 50.0% | 50.0% | – |$" "$tmp/report.md"'
check "markdown total row" 'grep -q "^| \*\*all\*\* | 3 |" "$tmp/report.md"'
check "details name the wrong type" 'grep -q "get_weather: parameter '"'"'days'"'"': wrong type string, expected integer" "$tmp/details.jsonl"'

err=$("$K" score --answers "$tmp/answers.jsonl" 2>&1); rc=$?
check "missing --predictions exits 2" '[ $rc -eq 2 ] && grep -q -- "--predictions and --answers are required" <<<"$err"'
cat >"$tmp/raw.jsonl" <<'J'
{"id": "simple_0", "text": "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"paris\", \"days\": 2}}\n</tool_call>"}
{"id": "simple_1", "text": "<functioncall> {\"name\": \"get_weather\", \"arguments\": '{\"city\": \"Rome\", \"days\": \"2\"}'}"}
{"id": "irrelevance_0", "text": "No tool can answer that."}
J
raw=$("$K" score --predictions "$tmp/raw.jsonl" --answers "$tmp/answers.jsonl" --tools "$tmp/tools.json"); rc=$?
check "raw text scores like its structured twin" '[ $rc -eq 0 ] && [ "$(jq -S . <<<"$raw")" = "$(jq -S . <<<"$out")" ]'
echo '{"id": "simple_0", "text": 7}' >"$tmp/bad.jsonl"
err=$("$K" score --predictions "$tmp/bad.jsonl" --answers "$tmp/answers.jsonl" 2>&1); rc=$?
check "non-string text is an error naming the line" '[ $rc -eq 1 ] && grep -q "bad.jsonl:1: \"text\" must be a string" <<<"$err"'
err=$("$K" score --predictions "$tmp/preds.jsonl" --answers "$tmp/nope.jsonl" 2>&1); rc=$?
check "missing answers file" '[ $rc -eq 1 ] && grep -q "cannot open $tmp/nope.jsonl" <<<"$err"'
err=$("$K" score --predictions "$tmp/preds.jsonl" --answers "$tmp/answers.jsonl" --markdown /nonexistent/dir/r.md 2>&1); rc=$?
check "unwritable markdown" '[ $rc -eq 1 ] && grep -q "/nonexistent/dir/r.md" <<<"$err"'
err=$("$K" score --predictions "$tmp/preds.jsonl" --answers "$tmp/answers.jsonl" --details /nonexistent/dir/d.jsonl 2>&1); rc=$?
check "unwritable details" '[ $rc -eq 1 ] && grep -q "cannot write --details /nonexistent/dir/d.jsonl" <<<"$err"'

# BFCL files as they are: question file as --tools, possible_answer as --answers
D="$KD_SOURCE_DIR/../shared/data/bfcl"
if [ -d "$D" ]; then
  head -n 5 "$D/possible_answer/BFCL_v3_simple.json" | jq -c '{id, tool_calls: [.ground_truth[] | to_entries[0] | {name: .key, arguments: (.value | with_entries(select(.value[0] != "")) | map_values(.[0]))}]}' >"$tmp/bfcl.jsonl"
  out=$("$K" score --predictions "$tmp/bfcl.jsonl" --answers "$D/possible_answer/BFCL_v3_simple.json" --tools "$D/BFCL_v3_simple.json"); rc=$?
  check "BFCL files load as they are" '[ $rc -eq 0 ] && [ "$(jq .count <<<"$out")" = 400 ] && [ "$(jq .missing <<<"$out")" = 395 ]'
else
  echo "skip BFCL part: $D absent"
fi
exit $fail
