#!/usr/bin/env bash
# A crash inside a seal loses nothing sealed: a 2-rank generation is SIGKILLed three times at chosen
# points inside the worker's seals (KD_DEBUG_KILL_IN_SEAL, include/kdstep/h5data.h): with a segment's
# data written but its file not closed (where a kill mid-H5Fflush used to land), with it closed but
# not renamed, and in the compaction after the base was renamed into place but before the segments
# were removed. After each kill every sample the journal called sealed is still there (the rerun
# resumes with at least that many, nothing is moved aside as corrupt), and the final dataset equals
# an uninterrupted run's, every prompt exactly once.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=${KD_TEST_PROMPTS:-200}
tools="$KD_SOURCE_DIR/configs/tools.json"
"$KDSTEP" prompts synth --tools "$tools" -n "$n" --seed 5 -o "$tmp/prompts.jsonl" >/dev/null
gen() { # out-dir [mpirun env]
  local out=$1; shift
  mpirun --allow-run-as-root --oversubscribe -np 2 "$@" "$KDSTEP" generate --prompts "$tmp/prompts.jsonl" --out "$out" \
    --tokenizer-path "$tok" --tools "$tools" --set generate.seal_every=8 --set teacher.max_in_flight=4 --set generate.chunk_size=4
}
gen "$tmp/ref" 2>"$tmp/ref.log" || { cat "$tmp/ref.log"; exit 1; }
sealed() { cat "$tmp"/crash/shard-*.journal 2>/dev/null | grep -o '"samples": [0-9]*' | awk '{s+=$2} END {print s+0}'; }
fail() { echo "FAIL: $*"; exit 1; }
promised=0
for hook in written:3:1 closed:2:1 compact-renamed:1:1; do
  rc=0
  timeout 120 bash -c "$(declare -f gen); tmp='$tmp' KDSTEP='$KDSTEP' tok='$tok' tools='$tools'; gen '$tmp/crash' -x KD_DEBUG_KILL_IN_SEAL=$hook" \
    >"$tmp/kill.log" 2>&1 || rc=$?
  ((rc != 0)) || fail "the run with KD_DEBUG_KILL_IN_SEAL=$hook was not killed"
  [[ ! -f "$tmp/crash/dataset.h5" ]] || fail "a killed run wrote dataset.h5"
  now=$(sealed)
  ((now >= promised)) || fail "after the kill at $hook the journals count $now sealed samples, $promised before"
  echo "killed inside a seal at $hook: journals count $now sealed samples (before: $promised); files: $(ls "$tmp/crash" | grep -c 'seg-[0-9]*\.h5$' || true) segments"
  promised=$now
  # the rerun (with the next kill, or clean at the end) must find every one of them
  if ls "$tmp"/crash/*.corrupt >/dev/null 2>&1; then fail "a sealed file was set aside: $(ls "$tmp"/crash/*.corrupt)"; fi
done
gen "$tmp/crash" 2>"$tmp/resume.log" || { cat "$tmp/resume.log"; exit 1; }
grep -q "moving it to" "$tmp/resume.log" && fail "the rerun moved a sealed file aside: $(grep 'moving it to' "$tmp/resume.log")"
done_n=$(grep -o "resuming .*: [0-9]* prompts already done ([0-9]* samples" "$tmp/resume.log" | grep -o '([0-9]* samples' | grep -o '[0-9]*' || echo 0)
((done_n >= promised)) || fail "the rerun found $done_n sealed samples, the journals promised $promised"
echo "rerun resumed from $done_n sealed samples (journals promised $promised)"
ls "$tmp/crash" | grep -q 'seg-' && fail "segments left after the finished run: $(ls "$tmp/crash")"
/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$tmp/ref" "$tmp/crash"
/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/check_tool_masks.py" "$tmp/crash" "$n" "$tok/tokenizer.json"
