#!/usr/bin/env bash
# kdstep prompts synth / check from the command line: determinism, the set reads back clean,
# bad lines are reported as failures.jsonl records, usage errors exit 2 naming the problem.
set -u
K="${KDSTEP:?}"; S="${KD_SOURCE_DIR:?}"
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

"$K" prompts synth --tools "$S/configs/tools.json" -n 500 --seed 9 -o "$T/a.jsonl" 2>/dev/null; rc=$?
check "synth exits 0" '[ $rc -eq 0 ]'
"$K" prompts synth --tools "$S/configs/tools.json" -n 500 --seed 9 -o "$T/b.jsonl" 2>/dev/null
check "same seed, same bytes" 'cmp -s "$T/a.jsonl" "$T/b.jsonl"'
"$K" prompts synth --tools "$S/configs/tools.json" -n 500 --seed 10 -o "$T/c.jsonl" 2>/dev/null
check "other seed, other prompts" '! cmp -s "$T/a.jsonl" "$T/c.jsonl"'
check "500 lines" '[ "$(wc -l < "$T/a.jsonl")" -eq 500 ]'
check "no temp file left" '[ -z "$(ls "$T" | grep tmp)" ]'
err=$("$K" prompts check "$T/a.jsonl" 2>&1 >/dev/null); rc=$?
check "synthesized set checks clean" '[ $rc -eq 0 ]'
check "check summary" 'grep -q "500 prompts, 0 bad lines" <<<"$err"'

printf '{"prompt": "ok"}\n{"prompt": \n{"id": "x"}\n' > "$T/bad.jsonl"
out=$("$K" prompts check "$T/bad.jsonl" 2>/dev/null); rc=$?
check "bad set exits 1" '[ $rc -eq 1 ]'
check "bad line 2 reported" '/usr/bin/python3 -c "import json,sys; r=[json.loads(l) for l in sys.stdin]; assert [x[\"line\"] for x in r]==[2,3], r; assert \"invalid JSON\" in r[0][\"reason\"] and \"missing prompt\" in r[1][\"reason\"]" <<<"$out"'

if [ -d "$S/../shared/data/bfcl" ]; then
  "$K" prompts check "$S/../shared/data/bfcl/BFCL_v3_simple.json" >/dev/null 2>&1; rc=$?
  check "BFCL file checks clean" '[ $rc -eq 0 ]'
fi

err=$("$K" prompts synth -o "$T/x.jsonl" 2>&1); rc=$?
check "missing -n exits 2" '[ $rc -eq 2 ] && grep -q -- "-n N is required" <<<"$err"'
err=$("$K" prompts synth -n 5 2>&1); rc=$?
check "missing -o exits 2" '[ $rc -eq 2 ] && grep -q -- "-o FILE is required" <<<"$err"'
err=$("$K" prompts synth -n abc -o x 2>&1); rc=$?
check "bad -n exits 2" '[ $rc -eq 2 ] && grep -q "needs a count >= 0, got '"'"'abc'"'"'" <<<"$err"'
err=$("$K" prompts synth -n 1 --seed 1x -o x 2>&1); rc=$?
check "bad --seed exits 2" '[ $rc -eq 2 ] && grep -q "seed needs an integer" <<<"$err"'
err=$("$K" prompts synth -n 1 --rename-tools 150 --tools-per-prompt 2-4 -o x 2>&1); rc=$?
check "bad --rename-tools exits 2" '[ $rc -eq 2 ] && grep -q "rename-tools wants a share 0..100, got '"'"'150'"'"'" <<<"$err"'
err=$("$K" prompts synth -n 1 --rename-tools 50 -o x 2>&1); rc=$?
check "--rename-tools without per-prompt tools exits 2" '[ $rc -eq 2 ] && grep -q "rename-tools needs --tools-per-prompt" <<<"$err"'
# the job key: prompts.rename_tools without per-prompt tool sets is refused, naming the job file
printf 'job:\n  workdir: %s/w\nprompts:\n  synth_count: 5\n  rename_tools: 50\ntools: %s/configs/tools.json\nconfig: %s/configs/process_supervision.yaml\n' \
  "$T" "$S" "$S" > "$T/j.yaml"
err=$(cd "$T" && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "$K" run j.yaml 2>&1); rc=$?
check "job rename_tools without tools_per_prompt fails" '[ $rc -ne 0 ] && grep -q "j.yaml: prompts.rename_tools needs prompts.tools_per_prompt" <<<"$err" && [ ! -e "$T/w/prompts.jsonl" ]'
err=$("$K" prompts frob 2>&1); rc=$?
check "unknown subcommand exits 2" '[ $rc -eq 2 ] && grep -q "unknown subcommand '"'"'frob'"'"'" <<<"$err"'
err=$("$K" prompts 2>&1); rc=$?
check "missing subcommand exits 2" '[ $rc -eq 2 ] && grep -q "missing subcommand" <<<"$err"'
err=$("$K" prompts check 2>&1); rc=$?
check "check without FILE exits 2" '[ $rc -eq 2 ] && grep -q "needs exactly one FILE" <<<"$err"'
err=$("$K" prompts synth --tools /nonexistent.json -n 1 -o "$T/y" 2>&1); rc=$?
check "missing registry exits 1" '[ $rc -eq 1 ] && grep -q "/nonexistent.json" <<<"$err"'
err=$("$K" prompts synth --tools "$S/configs/tools.json" -n 1 -o /nonexistent/dir/out.jsonl 2>&1); rc=$?
check "unwritable output exits 1" '[ $rc -eq 1 ] && grep -q "/nonexistent/dir/out.jsonl: cannot create" <<<"$err"'
exit $fail
