#!/usr/bin/env bash
# On-policy generation resumes to the same dataset: `kdstep generate --policy mixed` (half the prompts
# written by a student checkpoint, sampled at temperature 1, the other half by the stub teacher) on 2
# ranks is SIGKILLed in a worker after its first seal and rerun on the same folder; the result equals
# an uninterrupted run's sample for sample (tests/lib/compare_datasets.py: every token array, mask,
# teacher array and text), because which prompts the student writes and what it samples are seeded by
# (teacher.seed, prompt index, turn), not by rank, order or timing.
set -euo pipefail
[[ "${KD_TEST_QUICK:-0}" == 1 ]] && { echo "skip: KD_TEST_QUICK=1 (the fixture's training takes minutes under the sanitizers)"; exit 77; }
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
source "$KD_SOURCE_DIR/tests/lib/serve_lib.bash"
command -v mpirun >/dev/null && command -v jq >/dev/null || { echo "skip: mpirun and jq are needed"; exit 77; }
export OMP_NUM_THREADS=1 KDSTEP_THREADS=1 KDSTEP_PROGRESS_INTERVAL=1000
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
serve_trained_student FX || { echo "FAIL: could not train the fixture student"; exit 1; }
n=48
"$KDSTEP" prompts synth --tools "$FX/tools.json" -n "$n" --seed 41 -o "$tmp/prompts.jsonl" >/dev/null 2>&1
gen() { # out-dir [extra args]
  local out=$1; shift
  kd_mpirun 2 "$KDSTEP" generate --prompts "$tmp/prompts.jsonl" --out "$out" --tokenizer-path "$FX/tok" \
    --tools "$FX/tools.json" --policy mixed --student "$FX/run/final" --set generate.student_share=0.5 \
    --set generate.student_max_tokens=96 --set generate.max_turns=3 --set generate.seal_every=4 \
    --set teacher.max_in_flight=2 --set generate.chunk_size=2 "$@"
}
gen "$tmp/ref" 2>"$tmp/ref.log" || { cat "$tmp/ref.log"; exit 1; }
jq -c '{samples, failures, student}' "$tmp/ref/stats.json"
st=$(jq '.student.samples_this_run' "$tmp/ref/stats.json")
[[ $st -ge $((n / 4)) && $st -le $((3 * n / 4)) ]] || { echo "FAIL: the student wrote $st of $n samples at share 0.5"; exit 1; }
echo "ok   mixed: the student wrote $st of $n samples, the teacher the rest"

rank_pid() { # the pid of the kdstep process with this MPI rank, or nothing
  for p in $(pgrep -f "kdstep generate --prompts $tmp/prompts.jsonl --out $tmp/crash" || true); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then echo "$p"; return; fi
  done
}
gen "$tmp/crash" >"$tmp/crash.log" 2>&1 &
mpirun_pid=$!
for _ in $(seq 1200); do
  cat "$tmp"/crash/shard-*.journal 2>/dev/null | grep -q '"samples": [1-9]' && break
  sleep 0.05
done
pid=$(rank_pid 1)
if [[ -n "$pid" ]]; then
  kill -9 "$pid"
  for _ in $(seq 600); do kill -0 "$mpirun_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$mpirun_pid" 2>/dev/null || true
  wait "$mpirun_pid" && { echo "FAIL: the run survived SIGKILL of rank 1"; exit 1; } || true
  [[ ! -f "$tmp/crash/dataset.h5" ]] || { echo "FAIL: an interrupted run finalized"; exit 1; }
  echo "ok   killed rank 1 (pid $pid) after its first seal: $(cat "$tmp"/crash/shard-*.journal | tr '\n' ' ')"
else
  wait "$mpirun_pid" || { cat "$tmp/crash.log"; exit 1; }
  echo "(the run finished before the kill: the rerun below finds everything done)"
fi
gen "$tmp/crash" 2>"$tmp/resume.log" || { cat "$tmp/resume.log"; exit 1; }
grep -o "generate: .* prompts were already done.*" "$tmp/resume.log" | head -1
/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$tmp/ref" "$tmp/crash"
/usr/bin/python3 - "$tmp/ref/dataset.h5" "$tmp/crash/dataset.h5" "$st" <<'PY'
import sys, h5py
def pol(p):
    with h5py.File(p, "r") as f:
        return dict(zip(f["samples/prompt_id"][:].tolist(), f["samples/policy"][:].tolist()))
a, b = pol(sys.argv[1]), pol(sys.argv[2])
assert a == b, "/samples/policy differs between the runs"
assert sum(a.values()) == int(sys.argv[3]), (sum(a.values()), sys.argv[3])
print(f"ok   /samples/policy: {sum(a.values())} student-written samples, the same prompts in both runs")
PY
echo "ok   the resumed on-policy dataset equals the uninterrupted one"
