#!/usr/bin/env bash
# kdstep on a real (local) Slurm:
#  1. slurm/submit.sh JOB.yaml runs generate -> train -> eval chained with afterok, all COMPLETED in
#     order, and the eval report exists;
#  2. preemption: a train job gets `scancel --signal=USR1`, checkpoints, requeues itself, resumes, and
#     ends with the same final weights (bitwise) as an uninterrupted run on the same rank count;
#  3. a job array: generation as a 3-element array, then merged, equals a single generate run;
#  4. a chain whose first stage fails (its tools file is missing) leaves no job pending: train and eval
#     are cancelled (--kill-on-invalid-dep=yes), not left waiting on DependencyNeverSatisfied;
#  5. a job with an `onpolicy:` section: submit.sh chains generate -> train -> onpolicy -> eval, the
#     round's dataset has student-written samples, and eval reads the round's model.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="${KD_SOURCE_DIR:?}"
source "$src/tests/lib/fixtures.sh"
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
# paths with spaces must work in the scripts (slurm.conf itself cannot hold one, so its folder has none)
tmp=$(mktemp -d "/tmp/kd slurm pipeline.XXXXXX")
sdir=$(mktemp -d /tmp/kd-slurm.XXXXXX)
trap '"$here/lib/slurm-down.sh" "$sdir/slurm" >/dev/null 2>&1; rm -rf "$tmp" "$sdir"' EXIT
"$here/lib/slurm-up.sh" "$sdir/slurm"; rc=$?
[[ $rc -eq 77 ]] && { echo "skip: no Slurm here"; exit 77; }
[[ $rc -ne 0 ]] && { echo "FAIL slurm-up.sh exited $rc"; exit 1; }
source "$sdir/slurm/env"
export KDSTEP KDSTEP_WORKDIR="$tmp"
tok=$(kd_student_tokenizer)

wait_job() { # id [timeout_s] -> prints the final state
  local id=$1 t=${2:-600} st=""
  for ((i = 0; i < t * 2; i++)); do
    st=$(scontrol show job "$id" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)
    case "$st" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) echo "$st"; return;; esac
    sleep 0.5
  done
  echo "TIMEOUT($st)"
}
job_file() { # name, extra override lines
  cat >"$tmp/$1.yaml" <<YAML
job:
  name: $1
  workdir: $tmp/$1 out
  ranks: 2
prompts:
  synth_count: ${KD_TEST_PROMPTS:-60}
  synth_seed: 3
  heldout_count: 10
  heldout_seed: 4
tools: $src/configs/tools.json
tokenizer: $tok
config: $src/configs/process_supervision.yaml
overrides:
  - model.preset=tiny
  - train.micro_batch=2
  - train.seq_len=128
  - train.eval_fraction=0.1
  - eval.max_new_tokens=24
$2
YAML
}

# 1. the chained submission
job_file demo "  - train.steps=6
  - train.checkpoint_every=3
  - train.eval_every=3"
ids=$(cd "$tmp" && "$src/slurm/submit.sh" "$tmp/demo.yaml" --output="$tmp/%x-%j.out") || { echo "FAIL submit.sh"; exit 1; }
echo "$ids"
gen=$(awk '$1 == "generate" {print $2}' <<<"$ids"); train=$(awk '$1 == "train" {print $2}' <<<"$ids"); ev=$(awk '$1 == "eval" {print $2}' <<<"$ids")
check "submit.sh prints three job ids" '[[ -n "$gen" && -n "$train" && -n "$ev" ]]'
check "train depends on generate" 'scontrol show job "$train" | grep -q "Dependency=afterok:$gen\|Dependency=(null)"'
s_ev=$(wait_job "$ev" 900); s_gen=$(wait_job "$gen" 5); s_train=$(wait_job "$train" 5)
check "generate, train and eval COMPLETED ($s_gen $s_train $s_ev)" '[[ "$s_gen $s_train $s_ev" == "COMPLETED COMPLETED COMPLETED" ]]'
end_of() { scontrol show job "$1" | grep -o 'EndTime=[^ ]*' | cut -d= -f2; }
start_of() { scontrol show job "$1" | grep -o 'StartTime=[^ ]*' | cut -d= -f2; }
check "they ran in order" '[[ ! "$(start_of "$train")" < "$(end_of "$gen")" && ! "$(start_of "$ev")" < "$(end_of "$train")" ]]'
check "the eval report exists" '[[ -s "$tmp/demo out/eval/report.json" && -s "$tmp/demo out/eval/report.md" ]]'
[[ $fail -eq 0 ]] || { tail -n 20 "$tmp"/*.out; }

# 2. preemption: USR1 -> checkpoint -> requeue -> resume -> same final weights
job_file pre "  - train.steps=400
  - train.checkpoint_every=20
  - train.eval_every=0"
cp -r "$tmp/demo out/dataset" "$tmp/dataset-copy"
for d in "pre out" "ref out"; do mkdir -p "$tmp/$d"; cp -r "$tmp/dataset-copy" "$tmp/$d/dataset"; done
sed "s|pre out|ref out|" "$tmp/pre.yaml" >"$tmp/ref.yaml"
(cd "$tmp" && kd_mpirun 2 "$KDSTEP" run "$tmp/ref.yaml" --stage train >"$tmp/ref.log" 2>&1) || { echo "FAIL reference run"; tail "$tmp/ref.log"; fail=1; }
jid=$(cd "$tmp" && sbatch --parsable --ntasks=2 --output="$tmp/pre-%j.out" "$src/slurm/train.sbatch" "$tmp/pre.yaml") # the shape is the caller's: 2 ranks, as the reference
for _ in $(seq 600); do [[ -f "$tmp/pre out/train/checkpoints/latest" ]] && break; sleep 0.2; done
sleep 1
scancel --signal=USR1 "$jid"
state=$(wait_job "$jid" 900)
restarts=$(scontrol show job "$jid" | grep -o 'Restarts=[0-9]*' | cut -d= -f2)
check "the preempted job completed after a requeue ($state, restarts $restarts)" '[[ "$state" == COMPLETED && "${restarts:-0}" -ge 1 ]]'
check "it ran 2 ranks, as asked" 'grep -q "2 ranks on" "$tmp"/pre-*.out'
check "it wrote a checkpoint on the signal and resumed from it" 'grep -q "requeueing" "$tmp"/pre-*.out && grep -q "resum" "$tmp"/pre-*.out'
check "final weights equal the uninterrupted run's, bitwise" 'cmp -s "$tmp/pre out/train/final/model.safetensors" "$tmp/ref out/train/final/model.safetensors"'
[[ $fail -eq 0 ]] || tail -n 30 "$tmp"/pre-*.out

# 3. a job array of 3 generation slices, merged, equals one generate run
job_file arr ""
arr=$(cd "$tmp" && sbatch --parsable --array=0-2 --output="$tmp/arr-%A_%a.out" "$src/slurm/generate.sbatch" "$tmp/arr.yaml")
merge=$(cd "$tmp" && sbatch --parsable --dependency="afterok:$arr" --output="$tmp/merge-%j.out" "$src/slurm/merge.sbatch" "$tmp/arr.yaml")
s_merge=$(wait_job "$merge" 900)
check "array + merge COMPLETED ($s_merge)" '[[ "$s_merge" == COMPLETED ]]'
"$KDSTEP" generate --prompts "$tmp/arr out/prompts.jsonl" --out "$tmp/single" --tokenizer-path "$tok" \
  --tools "$src/configs/tools.json" --config "$src/configs/process_supervision.yaml" 2>/dev/null
check "the merged array equals a single generate run" '/usr/bin/python3 "$src/tests/lib/compare_datasets.py" "$tmp/arr out/dataset" "$tmp/single"'
[[ $fail -eq 0 ]] || tail -n 20 "$tmp"/arr-*.out "$tmp"/merge-*.out

# 4. a failing first stage cancels the rest of the chain
job_file bad ""
sed -i "s|^tools: .*|tools: $tmp/no-such-tools.json|" "$tmp/bad.yaml"
ids=$(cd "$tmp" && "$src/slurm/submit.sh" "$tmp/bad.yaml" --output="$tmp/bad-%x-%j.out") || { echo "FAIL submit.sh (bad job)"; exit 1; }
echo "$ids"
gen=$(awk '$1 == "generate" {print $2}' <<<"$ids"); train=$(awk '$1 == "train" {print $2}' <<<"$ids"); ev=$(awk '$1 == "eval" {print $2}' <<<"$ids")
s_gen=$(wait_job "$gen" 300); s_train=$(wait_job "$train" 120); s_ev=$(wait_job "$ev" 120)
check "the failing generate FAILED, and train and eval were CANCELLED ($s_gen $s_train $s_ev)" '[[ "$s_gen $s_train $s_ev" == "FAILED CANCELLED CANCELLED" ]]'
check "no job is left pending" '[[ -z "$(squeue -h -t PENDING -o %i)" ]]'
check "the generate log says why" 'grep -q "no-such-tools.json" "$tmp"/bad-kdstep-generate-"$gen".out'
[[ $fail -eq 0 ]] || { tail -n 20 "$tmp"/bad-*.out; squeue; }

# 5. on-policy rounds chained between train and eval
job_file onp "  - train.steps=4
  - train.prompt_window=64
  - train.checkpoint_every=0
  - train.eval_every=0
  - generate.student_share=0.5
  - generate.student_max_tokens=24"
sed -i 's/^overrides:/onpolicy:\n  rounds: 1\n  steps: 3\noverrides:/' "$tmp/onp.yaml"
ids=$(cd "$tmp" && "$src/slurm/submit.sh" "$tmp/onp.yaml" --output="$tmp/onp-%x-%j.out") || { echo "FAIL submit.sh (onpolicy job)"; exit 1; }
echo "$ids"
gen=$(awk '$1 == "generate" {print $2}' <<<"$ids"); train=$(awk '$1 == "train" {print $2}' <<<"$ids")
onp=$(awk '$1 == "onpolicy" {print $2}' <<<"$ids"); ev=$(awk '$1 == "eval" {print $2}' <<<"$ids")
check "submit.sh prints four job ids, onpolicy among them" '[[ -n "$gen" && -n "$train" && -n "$onp" && -n "$ev" ]]'
s_ev=$(wait_job "$ev" 900); s_gen=$(wait_job "$gen" 5); s_train=$(wait_job "$train" 5); s_onp=$(wait_job "$onp" 5)
check "generate, train, onpolicy and eval COMPLETED ($s_gen $s_train $s_onp $s_ev)" '[[ "$s_gen $s_train $s_onp $s_ev" == "COMPLETED COMPLETED COMPLETED COMPLETED" ]]'
check "onpolicy ran after train and eval after onpolicy" '[[ ! "$(start_of "$onp")" < "$(end_of "$train")" && ! "$(start_of "$ev")" < "$(end_of "$onp")" ]]'
check "the round's dataset has student-written samples" '"$KDSTEP" inspect "$tmp/onp out/onpolicy-1/dataset" | grep -Eq "by the student [1-9]"'
check "the round trained a model and eval reported on it" '[[ -s "$tmp/onp out/onpolicy-1/train/final/model.safetensors" && -s "$tmp/onp out/eval/report.json" ]] && grep -q "onpolicy-1/train/final" "$tmp"/onp-kdstep-eval-"$ev".out'
[[ $fail -eq 0 ]] || { tail -n 30 "$tmp"/onp-*.out; }
exit $fail
