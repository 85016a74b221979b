#!/usr/bin/env bash
# Nothing lost on crash: a generation run on 2 ranks is SIGKILLed twice at random moments, once in a
# worker and once in rank 0, then resumed on the same folder. The final dataset equals an
# uninterrupted run's (as sets keyed by prompt id), with every prompt exactly once.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=${KD_TEST_PROMPTS:-400}
[[ -n "${KD_TEST_QUICK:-}" ]] && n=120
seed=${KD_TEST_SEED:-$RANDOM}
echo "random seed $seed (rerun with KD_TEST_SEED=$seed)"
RANDOM=$seed
"$KDSTEP" prompts synth --tools "$KD_SOURCE_DIR/configs/tools.json" -n "$n" --seed 11 -o "$tmp/prompts.jsonl" >/dev/null
gen() { # out-dir [extra args]
  local out=$1; shift
  kd_mpirun 2 "$KDSTEP" generate --prompts "$tmp/prompts.jsonl" --out "$out" --tokenizer-path "$tok" \
    --tools "$KD_SOURCE_DIR/configs/tools.json" --set generate.seal_every=8 --set teacher.max_in_flight=2 \
    --set generate.chunk_size=2 "$@"
}
gen "$tmp/ref" 2>"$tmp/ref.log" || { cat "$tmp/ref.log"; exit 1; }

rank_pid() { # the pid of the kdstep process with this MPI rank, or nothing
  for p in $(pgrep -f "kdstep generate --prompts $tmp/prompts.jsonl --out $tmp/crash" || true); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then echo "$p"; return; fi
  done
}
kill_run() { # rank-to-kill
  gen "$tmp/crash" >"$tmp/crash-$1.log" 2>&1 &
  local mpirun_pid=$! pid=""
  # wait until some samples are sealed, then a random extra moment
  # (a journal exists from the shard's open with 0 samples: wait for a seal, which under the
  # sanitizers can take seconds)
  for _ in $(seq 1200); do
    cat "$tmp"/crash/shard-*.journal 2>/dev/null | grep -q '"samples": [1-9]' && break
    sleep 0.05
  done
  sleep "0.$((RANDOM % 9 + 1))"
  pid=$(rank_pid "$1")
  if [[ -z "$pid" ]]; then
    # the run finished before the kill (a fast machine, few prompts left): nothing to kill this time
    wait "$mpirun_pid" || { echo "rank $1 is gone but the run failed:"; cat "$tmp/crash-$1.log"; exit 1; }
    echo "rank $1: the run finished before the kill moment"
    finished=1
    return
  fi
  kill -9 "$pid"
  # mpirun normally aborts the job at once; it can hang after a rank dies (PMIx "UNREACHABLE"),
  # so give it 60 s and then end it by pid
  for _ in $(seq 600); do kill -0 "$mpirun_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$mpirun_pid" 2>/dev/null || true
  wait "$mpirun_pid" && { echo "the run survived SIGKILL of rank $1?"; exit 1; } || true
  echo "killed rank $1 (pid $pid): $(cat "$tmp"/crash/shard-*.journal 2>/dev/null | tr '\n' ' ')"
}
finished=0
kill_run 1
[[ $finished -eq 0 ]] && kill_run 0
[[ $finished -eq 1 || ! -f "$tmp/crash/dataset.h5" ]] || { echo "an interrupted run must not have finalized"; exit 1; }
gen "$tmp/crash" 2>"$tmp/resume.log" || { cat "$tmp/resume.log"; exit 1; }
# What the rerun kept: every sealed sample comes back. Sealed files are never written again (a seal
# writes a new segment and renames it into place), so a kill, even inside a seal, sets nothing aside.
grep -o "resuming .*" "$tmp/resume.log" || echo "(the kills left nothing sealed)"
if grep -q "moving it to" "$tmp/resume.log"; then echo "a sealed file was set aside: $(grep 'moving it to' "$tmp/resume.log")"; exit 1; fi
/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$tmp/ref" "$tmp/crash"
/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/check_tool_masks.py" "$tmp/crash" "$n" "$tok/tokenizer.json"
