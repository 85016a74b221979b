#!/usr/bin/env bash
# Submit a whole job to Slurm: generate -> train [-> onpolicy] -> eval, chained with --dependency=afterok and
# --kill-on-invalid-dep=yes (a stage that fails cancels the stages after it: nothing stays pending).
#   slurm/submit.sh JOB.yaml [sbatch options...]
#   KDSTEP_GEN_ARRAY=3 slurm/submit.sh JOB.yaml    # generation as a 3-element array + a merge step
# The shape of generate, train and eval (nodes, tasks, CPUs per task) is the job file's (job.ranks,
# job.nodes, job.tasks_per_node, job.cpus_per_task; see `kdstep run JOB.yaml --sbatch-shape`) unless
# the options given here set it: any of -N/--nodes, -n/--ntasks, --ntasks-per-node replaces the job's
# nodes and tasks, -c/--cpus-per-task its CPUs per task. Every other option goes to every sbatch call.
# A job with an `onpolicy:` section (rounds > 0) gets its on-policy rounds as a stage between train and
# eval (slurm/train.sbatch JOB onpolicy).
# Prints one line per stage, "STAGE ID log FILE": generate, [merge,] train, [onpolicy,] eval.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
job="${1:?usage: slurm/submit.sh JOB.yaml [sbatch options...]}"
shift
[[ -f "$job" ]] || { echo "submit: job file '$job' not found" >&2; exit 2; }
kdstep="${KDSTEP:-$PWD/build/kdstep}"
[[ -x "$kdstep" ]] || kdstep="$here/../build/kdstep"
[[ -x "$kdstep" ]] || { echo "submit: no kdstep at ${KDSTEP:-$PWD/build/kdstep} (build it: cmake --build build; or set KDSTEP)" >&2; exit 2; }

# The user's options: the shape ones replace the job file's; the rest go everywhere as given.
other=() ushape=() user_tasks=0 user_cpus=0 out_pat="" chdir="$PWD" name=""
while (($#)); do
  a=$1; shift; unit=("$a"); val=""
  case "$a" in
    --nodes|--ntasks|--ntasks-per-node|--cpus-per-task|--output|--chdir|--job-name|-N|-n|-c|-o|-D|-J)
      val=${1:-}; unit+=("$val"); (($#)) && shift ;;
    --*=*) val=${a#*=} ;;
    -[NncoDJ]?*) val=${a:2} ;;
  esac
  case "$a" in
    --nodes*|--ntasks*|-N*|-n*) user_tasks=1; ushape+=("${unit[@]}") ;;
    --cpus-per-task*|-c*) user_cpus=1; ushape+=("${unit[@]}") ;;
    *) other+=("${unit[@]}")
      case "$a" in --output*|-o*) out_pat=$val ;; --chdir*|-D*) chdir=$val ;; --job-name*|-J*) name=$val ;; esac ;;
  esac
done
jshape=()
while IFS= read -r o; do
  case "$o" in
    --nodes=*|--ntasks=*|--ntasks-per-node=*) ((user_tasks)) || jshape+=("$o") ;;
    --cpus-per-task=*) ((user_cpus)) || jshape+=("$o") ;;
  esac
done < <(cd "${KDSTEP_WORKDIR:-.}" && "$kdstep" run "$(realpath "$job")" --sbatch-shape)
[[ ${#jshape[@]} -gt 0 || $user_tasks -eq 1 ]] || { echo "submit: kdstep run $job --sbatch-shape failed" >&2; exit 2; }

# The file Slurm writes a stage's output to: --output (yours, or the script's #SBATCH line) expanded.
log_of() { # script id array(0/1)
  local pat=$out_pat nm=$name
  [[ -n "$pat" ]] || pat=$(sed -n 's/^#SBATCH --output=//p' "$1" | head -n 1)
  [[ -n "$nm" ]] || nm=$(sed -n 's/^#SBATCH --job-name=//p' "$1" | head -n 1)
  local a=4294967294 # what Slurm writes for %a outside an array
  (($3)) && a='*'
  pat=${pat//%j/$2}; pat=${pat//%A/$2}; pat=${pat//%a/$a}; pat=${pat//%x/$nm}; pat=${pat//%u/$(id -un)}
  [[ "$pat" == /* ]] || pat="$chdir/$pat"
  echo "$pat"
}
submit() { sbatch --parsable "$@" | cut -d';' -f1; }
stage=("${jshape[@]}" "${ushape[@]}" "${other[@]}")
dep=(--kill-on-invalid-dep=yes)

if [[ -n "${KDSTEP_GEN_ARRAY:-}" ]]; then
  gen=$(submit "${stage[@]}" --array="0-$((KDSTEP_GEN_ARRAY - 1))" "$here/generate.sbatch" "$job")
  echo "generate $gen log $(log_of "$here/generate.sbatch" "$gen" 1)"
  merge=$(submit "${other[@]}" --ntasks=1 "${dep[@]}" --dependency="afterok:$gen" "$here/merge.sbatch" "$job")
  echo "merge $merge log $(log_of "$here/merge.sbatch" "$merge" 0)"
  last=$merge
else
  gen=$(submit "${stage[@]}" "$here/generate.sbatch" "$job")
  echo "generate $gen log $(log_of "$here/generate.sbatch" "$gen" 0)"
  last=$gen
fi
train=$(submit "${stage[@]}" "${dep[@]}" --dependency="afterok:$last" "$here/train.sbatch" "$job")
echo "train $train log $(log_of "$here/train.sbatch" "$train" 0)"
last=$train
# The job's on-policy rounds (an `onpolicy:` section with rounds > 0) run between train and eval.
rounds=$(sed -n '/^onpolicy:/,/^[^ #]/s/^ *rounds: *\([0-9]*\).*/\1/p' "$job" | head -n 1)
if [[ "${rounds:-0}" -gt 0 ]]; then
  # train.sbatch again, under its own name unless you gave one (log_of reads $name for %x)
  onp=$(submit "${stage[@]}" "${dep[@]}" --dependency="afterok:$last" --job-name="${name:-kdstep-onpolicy}" \
    "$here/train.sbatch" "$job" onpolicy)
  echo "onpolicy $onp log $(name=${name:-kdstep-onpolicy} log_of "$here/train.sbatch" "$onp" 0)"
  last=$onp
fi
ev=$(submit "${stage[@]}" "${dep[@]}" --dependency="afterok:$last" "$here/eval.sbatch" "$job")
echo "eval $ev log $(log_of "$here/eval.sbatch" "$ev" 0)"
