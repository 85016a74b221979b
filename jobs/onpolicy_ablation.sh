#!/usr/bin/env bash
# Issue #23's ablation: off-policy against mixed on-policy (lmbda 0.5) at equal compute, on the
# unseen-tools regime of jobs/unseen.yaml, over 3 seeds -> docs/results.md (its on-policy section).
#   jobs/onpolicy_ablation.sh   (env: BASE, WORK, NPROMPTS, STEPS, LR, SEEDS, RESULTS, EVAL_TOKENS,
#                                STUDENT_TOKENS, KDSTEP, NP; tests/e2e/onpolicy_ablation.sh runs it tiny)
#
# Both arms continue ONE base student (jobs/unseen.yaml trained 600 steps: BASE, made here when
# missing) for STEPS more optimizer steps from its weights (model.init pretrained, a fresh optimizer
# and warmup, as an `onpolicy:` round of `kdstep run` does), on a dataset regenerated over the first
# NPROMPTS training prompts:
#   off    the teacher writes every answer (generate.policy teacher);
#   mixed  the base student writes each prompt with probability 0.5 (generate.policy mixed,
#          sampled at temperature 1, the teacher scoring it; reverse KL and the teacher's argmax on
#          student-written rows), the teacher the rest.
# Equal compute: the same steps, micro-batches, sequence length and sample count in both arms
# (the student's decoding in `mixed` is the extra cost, reported apart). Seed s sets train.seed
# (data order) and teacher.seed (which prompts the student writes, and its sampling).
# Each run is evaluated greedily on split (a) held-out prompts over the train tools and split (b)
# prompts over tools no training prompt offers; jobs/onpolicy_ablation_report.py writes the table
# with Welch's t-test. Finished steps are skipped, so a rerun resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
K=${KDSTEP:-build/kdstep}
NP=${NP:-2}
BASE=${BASE:-runs/onpolicy-ablation/base}
WORK=${WORK:-runs/onpolicy-ablation}
NPROMPTS=${NPROMPTS:-800}
STEPS=${STEPS:-100}
LR=${LR:-0.001}   # the base ended its cosine at 0.0003; a restart at its peak 0.003 undoes part of it
read -r -a SEEDS <<<"${SEEDS:-1 2 3}"
export KDSTEP_PROGRESS_INTERVAL=${KDSTEP_PROGRESS_INTERVAL:-60}
[[ -x "$K" ]] || { echo "onpolicy_ablation: no kdstep binary at $K (build first, or set KDSTEP)" >&2; exit 1; }
MPI=(mpirun -np "$NP")
[[ "$(id -u)" == 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
TOOLS=configs/tool_pool.train.json
TOK=$BASE/train/final          # the base student's own tokenizer.json
RESULTS=${RESULTS:-docs/results.md}
EVAL_TOKENS=${EVAL_TOKENS:-80}
STUDENT_TOKENS=${STUDENT_TOKENS:-160}
CONFIG=configs/process_supervision.yaml
mkdir -p "$WORK"
t0=$SECONDS
stage() { echo "onpolicy_ablation: [$(( (SECONDS - t0) / 60 ))m$(( (SECONDS - t0) % 60 ))s] $*"; }

# --- the base student: jobs/unseen.yaml with 600 training steps ---
if [[ ! -e "$BASE/train/COMPLETE" ]]; then
  stage "base: jobs/unseen.yaml at 600 steps into $BASE"
  sed -e "s|^\(  workdir: \)runs/unseen |\1$BASE |" -e 's/train.steps=150/train.steps=600/' \
    -e 's/eval_every=50/eval_every=100/' -e 's/checkpoint_every=50/checkpoint_every=100/' jobs/unseen.yaml >"$WORK/base.yaml"
  grep -q "workdir: $BASE " "$WORK/base.yaml" && grep -q 'train.steps=600' "$WORK/base.yaml" \
    || { echo "onpolicy_ablation: jobs/unseen.yaml changed shape; cannot derive $WORK/base.yaml" >&2; exit 1; }
  "${MPI[@]}" "$K" run "$WORK/base.yaml" --stage generate
  "${MPI[@]}" "$K" run "$WORK/base.yaml" --stage train
fi
[[ -s "$BASE/heldout_tools.jsonl" && -s "$BASE/heldout.jsonl" ]] \
  || { echo "onpolicy_ablation: $BASE has no heldout.jsonl / heldout_tools.jsonl (run its eval stage once)" >&2; exit 1; }
SEQ=$("$K" inspect "$BASE/dataset" | sed -n 's/.*full context: train.seq_len \([0-9]*\) fits.*/\1/p')
[[ -n "$SEQ" ]] || { echo "onpolicy_ablation: cannot read the base's seq_len from kdstep inspect" >&2; exit 1; }
# jobs/unseen.yaml's training settings, the base's fixed sequence length, STEPS steps from the base's weights
TRAIN=(--set=teacher.url=stub --set=model.preset=small --set=train.seq_len="$SEQ" --set=train.length_buckets=8
       --set=train.micro_batch=4 --set=train.steps="$STEPS" --set=train.warmup_steps=10 --set=train.lr="$LR"
       --set=train.eval_every=50 --set=train.checkpoint_every=50 --set=model.init=pretrained
       --set=model.path="$BASE/train/final" --set=kd.onpolicy_divergence=reverse_kl)
stage "base $BASE, seq_len $SEQ, $NPROMPTS prompts, $STEPS steps at lr $LR, seeds ${SEEDS[*]}"

gen() { # LABEL OUT SEED POLICY...
  local out=$2 s=$3
  [[ -e "$out/COMPLETE" ]] && return 0
  stage "$1: generate"
  shift 3
  "${MPI[@]}" "$K" generate --prompts "$BASE/prompts.jsonl" --total "$NPROMPTS" --out "$out" --tools "$TOOLS" \
    --tokenizer-path "$TOK" --config "$CONFIG" --set=teacher.url=stub --set=teacher.seed="$s" "$@" >"$out.log" 2>&1 \
    || { tail -n 30 "$out.log" >&2; return 1; }
  touch "$out/COMPLETE"
}
run() { # ARM SEED DATASET
  local dir="$WORK/$1-seed$2"
  if [[ ! -e "$dir/train/COMPLETE" ]]; then
    stage "$1 seed $2: train $STEPS steps"
    "${MPI[@]}" "$K" train --config "$CONFIG" --train-data "$3" --out "$dir/train" --tokenizer-path "$TOK" \
      "${TRAIN[@]}" --set=train.seed="$2" >"$dir.train.log" 2>&1 || { tail -n 30 "$dir.train.log" >&2; return 1; }
    touch "$dir/train/COMPLETE"
  fi
  local split prompts
  for split in a b; do
    prompts=$BASE/heldout.jsonl
    [[ $split == b ]] && prompts=$BASE/heldout_tools.jsonl
    [[ -s "$dir/eval-$split/report.json" ]] && continue
    stage "$1 seed $2: eval split ($split)"
    "${MPI[@]}" "$K" eval --model "$dir/train/final" --prompts "$prompts" --out "$dir/eval-$split" --config "$CONFIG" \
      --set=eval.max_new_tokens="$EVAL_TOKENS" >/dev/null 2>"$dir.eval-$split.log" || { tail -n 30 "$dir.eval-$split.log" >&2; return 1; }
  done
  stage "$1 seed $2: (b) $(jq -c '{tool_name_accuracy, json_validity, ast_accuracy, no_call_accuracy}' "$dir/eval-b/report.json")"
}

# the off-policy dataset does not depend on the seed (the stub teacher is deterministic): made once
mkdir -p "$WORK/data"
gen "off (the teacher writes all)" "$WORK/data/off" 0 --policy teacher
for s in "${SEEDS[@]}"; do
  mkdir -p "$WORK/off-seed$s" "$WORK/mixed-seed$s"
  run off "$s" "$WORK/data/off"
  gen "mixed seed $s (the student writes a share of 0.5)" "$WORK/data/mixed-seed$s" "$s" --policy mixed --student "$BASE/train/final" --set=generate.student_share=0.5 \
    --set=generate.student_temperature=1.0 --set=generate.student_max_tokens="$STUDENT_TOKENS"
  run mixed "$s" "$WORK/data/mixed-seed$s"
done
stage "report"
/usr/bin/python3 jobs/onpolicy_ablation_report.py "$WORK" "$BASE" "$RESULTS"
stage "done"
