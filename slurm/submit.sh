#!/usr/bin/env bash
# Submit a whole job to Slurm: generate -> train -> eval, chained with --dependency=afterok.
#   slurm/submit.sh JOB.yaml [sbatch options...]
#   KDSTEP_GEN_ARRAY=3 slurm/submit.sh JOB.yaml    # generation as a 3-element array + a merge step
# Prints the job ids, one per line: "generate <id>", ["merge <id>",] "train <id>", "eval <id>".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
job="${1:?usage: slurm/submit.sh JOB.yaml [sbatch options...]}"
shift
[[ -f "$job" ]] || { echo "submit: job file '$job' not found" >&2; exit 2; }
opts=("$@")
submit() { sbatch --parsable "${opts[@]}" "$@" | cut -d';' -f1; }

if [[ -n "${KDSTEP_GEN_ARRAY:-}" ]]; then
  gen=$(submit --array="0-$((KDSTEP_GEN_ARRAY - 1))" "$here/generate.sbatch" "$job")
  echo "generate $gen"
  merge=$(submit --dependency="afterok:$gen" "$here/merge.sbatch" "$job")
  echo "merge $merge"
  last=$merge
else
  gen=$(submit "$here/generate.sbatch" "$job")
  echo "generate $gen"
  last=$gen
fi
train=$(submit --dependency="afterok:$last" "$here/train.sbatch" "$job")
echo "train $train"
ev=$(submit --dependency="afterok:$train" "$here/eval.sbatch" "$job")
echo "eval $ev"
