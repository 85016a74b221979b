#!/usr/bin/env bash
# The stub teacher on prompts over the held-out tools of the pool (split (b)), measured the way the
# eval measures a student: `kdstep teacher answer` (the stub reads each prompt's text and tools, never
# its metadata), then `kdstep score`. The issue's bar: tool name >= 95%, AST >= 70%, no call >= 90%.
set -u
S="${KD_SOURCE_DIR:?}"
K="${KDSTEP:?}"
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$K" prompts synth --tools "$S/configs/tool_pool.heldout.json" --tools-per-prompt 3-5 -n 400 --seed 4242 -o "$tmp/p.jsonl" 2>/dev/null
check "teacher answer runs" '"$K" teacher answer --prompts "$tmp/p.jsonl" -o "$tmp/preds.jsonl" 2>/dev/null'
check "one prediction per prompt" '[ "$(wc -l <"$tmp/preds.jsonl")" = 400 ]'
check "the stub never reads metadata (a copy without it answers the same)" \
  'jq -c "del(.metadata)" "$tmp/p.jsonl" >"$tmp/nometa.jsonl" && "$K" teacher answer --prompts "$tmp/nometa.jsonl" -o "$tmp/preds2.jsonl" 2>/dev/null && cmp -s "$tmp/preds.jsonl" "$tmp/preds2.jsonl"'
out=$("$K" score --predictions "$tmp/preds.jsonl" --answers "$tmp/p.jsonl" --tools "$tmp/p.jsonl" 2>/dev/null)
echo "stub on held-out tools: $(jq -c '{tool_name_accuracy, ast_accuracy, no_call_accuracy, count}' <<<"$out")"
check "tool name >= 95%" 'jq -e ".tool_name_accuracy >= 0.95" <<<"$out" >/dev/null'
check "AST >= 70%" 'jq -e ".ast_accuracy >= 0.70" <<<"$out" >/dev/null'
check "no call >= 90%" 'jq -e ".no_call_accuracy >= 0.90" <<<"$out" >/dev/null'
err=$("$K" teacher answer --prompts "$tmp/p.jsonl" 2>&1); rc=$?
check "missing -o exits 2" '[ $rc -eq 2 ] && grep -q -- "--prompts and -o are required" <<<"$err"'
exit $fail
