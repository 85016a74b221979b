#!/usr/bin/env bash
# The main job, on a fresh Debian 12 machine: install what is missing, build, make the student
# tokenizer if it is missing, run the whole pipeline of a job file (default jobs/unseen.yaml: prompts
# that each carry their own tools, the built-in stub teacher, the `small` student on the whole prompt,
# eval on unseen tools with guided tool calls) on local MPI ranks, and print the eval tables.
#   jobs/quickstart.sh [JOB.yaml]          (KDSTEP_RANKS overrides the job's rank count)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
job="${1:-jobs/unseen.yaml}"
"$root/jobs/setup.sh"
kdstep="${KD_BUILD_DIR:-$root/build}/kdstep"
export KDSTEP="$kdstep"
# The job file names the tokenizer folder and its vocabulary size; make it when missing.
tok=$(sed -n 's/^tokenizer: *\([^ #]*\).*/\1/p' "$job" | head -n 1)
vocab=$(sed -n '/^tokenizer_train:/,/^[^ ]/s/^ *vocab_size: *\([0-9]*\).*/\1/p' "$job" | head -n 1)
tools=$(sed -n 's/^tools: *\([^ #]*\).*/\1/p' "$job" | head -n 1)
"$root/jobs/make-student-tokenizer.sh" --out "${tok:-models/student/tokenizer}" --vocab-size "${vocab:-8192}" \
  --tools "${tools:-configs/tools.json}"
ranks=${KDSTEP_RANKS:-$(sed -n '/^job:/,/^[^ ]/s/^ *ranks: *\([0-9]*\).*/\1/p' "$job" | head -n 1)}
workdir=$(sed -n '/^job:/,/^[^ ]/s/^ *workdir: *\([^ #]*\).*/\1/p' "$job" | head -n 1)
mpi=(mpirun -np "${ranks:-2}" --oversubscribe)
[[ $(id -u) -eq 0 ]] && mpi+=(--allow-run-as-root)
echo "quickstart: running $job on ${ranks:-2} MPI ranks (outputs in $workdir)"
start=$(date +%s)
"${mpi[@]}" "$kdstep" run "$job"
echo
echo "== eval: $workdir/eval/report.md"
cat "$workdir/eval/report.md"
if [[ -s "$workdir/eval/splits.md" ]]; then
  echo
  echo "== eval splits: $workdir/eval/splits.md  (a: held-out prompts over train tools, b: held-out tools, c: BFCL)"
  cat "$workdir/eval/splits.md"
fi
echo
echo "training curves: $workdir/train/curves.png"
echo "dataset:         $workdir/dataset (kdstep inspect $workdir/dataset)"
echo "student:         $workdir/train/final (a Hugging Face Qwen3ForCausalLM folder)"
echo "quickstart: done in $(( $(date +%s) - start )) s"
