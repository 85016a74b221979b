#!/usr/bin/env bash
# Batched eval decoding (eval.batch) gives byte-identical predictions to one prompt at a time, over
# 200 held-out prompts synthesized as the demo's are (configs/tools.json, seed 2): greedy at batch
# 1, 8 and 32 (the last on 2 ranks), with the prompts cut to a window as the demo's student sees them
# and with whole prompts (their shared system turn is prefilled once and copied between sequences),
# and seeded sampling at batch 1 and 5, and guided (eval.guide=schema) sampling at batch 1 and 8. The student is the `small` preset with random weights
# (tests/e2e/make_student.py), on the cached student tokenizer: not the demo's trained checkpoint,
# which takes the whole demo to make (docs/performance-model.md has that comparison, run by hand).
set -u
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
K="${KDSTEP:?}"; S="${KD_SOURCE_DIR:?}"
command -v jq >/dev/null || { echo "jq missing"; exit 77; }
export KDSTEP_PROGRESS_INTERVAL=1000
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
tok=$(kd_student_tokenizer)
/usr/bin/python3 "$S/tests/e2e/make_student.py" "$S/configs/models/small.json" "$tok/tokenizer.json" "$tmp/ckpt" --seed 3 \
  || { echo "FAIL make_student.py"; exit 1; }
# under tests/sanitize.sh (KD_TEST_QUICK=1, a Debug build with ASan) the same checks on fewer prompts
n=200 nw=40; [[ -n "${KD_TEST_QUICK:-}" ]] && n=8 nw=3
"$K" prompts synth --tools "$S/configs/tools.json" -n "$n" --seed 2 -o "$tmp/held.jsonl" >/dev/null 2>&1

run_eval() { # NP OUT BATCH [extra flags]
  local np=$1 out=$2 b=$3; shift 3
  kd_mpirun "$np" "$K" eval --model "$tmp/ckpt" --prompts "$tmp/held.jsonl" --tools "$S/configs/tools.json" \
    --max-new-tokens 32 --out "$tmp/$out" --set eval.batch="$b" "$@" >/dev/null 2>"$tmp/$out.stderr" \
    || { echo "eval $out failed:"; tail -5 "$tmp/$out.stderr"; return 1; }
}
same() { cmp -s "$tmp/$1/predictions.jsonl" "$tmp/$2/predictions.jsonl"; }

run_eval 1 b1 1 && run_eval 1 b8 8 && run_eval 2 b32 32; rc=$?
check "greedy evals exit 0" '[ $rc -eq 0 ]'
check "$n predictions" '[ "$(jq -s length "$tmp/b1/predictions.jsonl")" = "$n" ]'
check "eval.json records the batch" '[ "$(jq .batch "$tmp/b8/eval.json")" = 8 ] && [ "$(jq .batch "$tmp/b1/eval.json")" = 1 ]'
check "greedy batch 8 == batch 1 (byte-identical predictions)" 'same b1 b8'
check "greedy batch 32 on 2 ranks == batch 1" 'same b1 b32'
check "same generated token count" '[ "$(jq .generated_tokens "$tmp/b1/eval.json")" = "$(jq .generated_tokens "$tmp/b8/eval.json")" ]'

# whole prompts: every prompt shares the tools block, computed once per batch and copied
run_eval 1 f1 1 --max-prompts "$nw" --set train.seq_len=4096 && run_eval 1 f8 8 --max-prompts "$nw" --set train.seq_len=4096; rc=$?
check "whole-prompt evals exit 0" '[ $rc -eq 0 ]'
check "whole prompts: batch 8 == batch 1" 'same f1 f8'
check "whole prompts: the shared prefix was reused" \
  '[ "$(jq .reused_prompt_tokens "$tmp/f8/eval.json")" -gt "$(( $(jq .prompt_tokens "$tmp/f8/eval.json") / 2 ))" ]'

# seeded sampling draws the same tokens whatever the batch
run_eval 1 s1 1 --max-prompts "$nw" --temperature 0.9 --set eval.seed=4 && run_eval 1 s5 5 --max-prompts "$nw" --temperature 0.9 --set eval.seed=4; rc=$?
check "sampling evals exit 0" '[ $rc -eq 0 ]'
check "sampling: batch 5 == batch 1" 'same s1 s5'
check "sampling differs from greedy" '! cmp -s <(head -"$nw" "$tmp/b1/predictions.jsonl") "$tmp/s1/predictions.jsonl"'

# guided tool calls (eval.guide): a guide per prompt, so the batch still changes nothing
run_eval 1 g1 1 --max-prompts "$nw" --temperature 1.5 --set eval.seed=4 --set eval.guide=schema \
  && run_eval 2 g8 8 --max-prompts "$nw" --temperature 1.5 --set eval.seed=4 --set eval.guide=schema; rc=$?
check "guided evals exit 0" '[ $rc -eq 0 ]'
check "guided: batch 8 on 2 ranks == batch 1" 'same g1 g8'
check "eval.json records the guide" '[ "$(jq -r .guide "$tmp/g8/eval.json")" = schema ] && [ "$(jq -r .guide "$tmp/b1/eval.json")" = none ]'
check "the log says what is guided" 'grep -q "guided tool calls (eval.guide=schema)" "$tmp/g1.stderr"'
"$K" eval --model "$tmp/ckpt" --prompts "$tmp/held.jsonl" --out "$tmp/x" --set eval.guide=keys >/dev/null 2>"$tmp/e2"; rc=$?
check "an unknown eval.guide level is refused, naming the levels" '[ $rc -ne 0 ] && grep -q "eval.guide: unknown value .keys. (expected one of: none|names|json|schema)" "$tmp/e2"'

"$K" eval --model "$tmp/ckpt" --prompts "$tmp/held.jsonl" --out "$tmp/x" --set eval.batch=0 >/dev/null 2>"$tmp/e1"; rc=$?
check "eval.batch=0 is a config range error" '[ $rc -ne 0 ] && grep -q "eval.batch" "$tmp/e1"'
exit $fail
