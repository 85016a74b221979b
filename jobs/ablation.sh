#!/usr/bin/env bash
# The loss ablation: jobs/ablation.yaml -> docs/results.md + docs/results-curves.png.
#   jobs/ablation.sh [JOB.yaml]        (env: KDSTEP=path/to/kdstep, PARALLEL=2 runs at a time)
# Steps: tokenizer (if missing) -> synthesized train + held-out prompts -> ONE stub-teacher dataset
# -> 4 losses x 3 seeds of `kdstep train` -> `kdstep eval` of each final checkpoint on the held-out
# set -> jobs/ablation_report.py. Finished steps are skipped, so a rerun resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
JOB=${1:-jobs/ablation.yaml}
K=${KDSTEP:-build/kdstep}
PARALLEL=${PARALLEL:-2}
export KDSTEP_THREADS=${KDSTEP_THREADS:-1} KDSTEP_PROGRESS_INTERVAL=${KDSTEP_PROGRESS_INTERVAL:-60}
[[ -x "$K" ]] || { echo "ablation: no kdstep binary at $K (build first, or set KDSTEP)" >&2; exit 1; }

# the job file's values, as shell variables
eval "$(/usr/bin/python3 - "$JOB" <<'PY'
import shlex, sys, yaml
j = yaml.safe_load(open(sys.argv[1]))
v = {"WORK": j["job"]["workdir"], "TOOLS": j["tools"], "TOK": j["tokenizer"], "CONFIG": j["config"],
     "VOCAB": j["tokenizer_train"]["vocab_size"], "N_TRAIN": j["prompts"]["synth_count"],
     "SEED_TRAIN": j["prompts"]["synth_seed"], "N_HELD": j["prompts"]["heldout_count"],
     "SEED_HELD": j["prompts"]["heldout_seed"],
     "TPP": j["prompts"].get("tools_per_prompt", ""), "HELD_TOOLS": j["prompts"].get("heldout_tools", ""),
     "N_HELD_TOOLS": j["prompts"].get("heldout_tools_count", 200)}
for k, x in v.items(): print(f"{k}={shlex.quote(str(x))}")
print("OVERRIDES=(" + " ".join(shlex.quote("--set=" + o) for o in j.get("overrides", [])) + ")")
PY
)"
SEEDS=(1 2 3)
VARIANTS=${VARIANTS:-}
declare -A VARIANT=(
  [ce]="--set=kd.weight=0 --set=process_supervision.loss_tool_select_weight=0 --set=process_supervision.loss_json_validity_weight=0 --set=process_supervision.json_grammar=false"
  [ps]="--set=kd.weight=0 --set=process_supervision.loss_tool_select_weight=0.7 --set=process_supervision.loss_json_validity_weight=0.3 --set=process_supervision.json_grammar=false"
  [ps_kd]="--set=kd.weight=1 --set=process_supervision.loss_tool_select_weight=0.7 --set=process_supervision.loss_json_validity_weight=0.3 --set=process_supervision.json_grammar=false"
  [ps_kd_gr]="--set=kd.weight=1 --set=process_supervision.loss_tool_select_weight=0.7 --set=process_supervision.loss_json_validity_weight=0.3 --set=process_supervision.json_grammar=true"
)
ORDER=(ce ps ps_kd ps_kd_gr)
[[ -n "$VARIANTS" ]] && read -r -a ORDER <<<"$VARIANTS"   # e.g. VARIANTS="ce ps_kd_gr"
mkdir -p "$WORK"

if [[ ! -s "$TOK/tokenizer.json" ]]; then
  "$K" tokenizer corpus --tools "$TOOLS" --mb 2 -o "$WORK/tokenizer-corpus.txt"
  "$K" tokenizer train --vocab-size "$VOCAB" --quiet -o "$TOK" "$WORK/tokenizer-corpus.txt"
fi
# Per-prompt tool sets (prompts.tools_per_prompt) and split (b): the runs are evaluated on prompts over
# prompts.heldout_tools, tools no training prompt offers.
SYNTH=()
[[ -n "$TPP" ]] && SYNTH=(--tools-per-prompt "$TPP")
[[ -s "$WORK/prompts.jsonl" ]] || "$K" prompts synth --tools "$TOOLS" -n "$N_TRAIN" --seed "$SEED_TRAIN" "${SYNTH[@]}" -o "$WORK/prompts.jsonl"
if [[ -n "$HELD_TOOLS" ]]; then
  [[ -s "$WORK/heldout.jsonl" ]] || "$K" prompts synth --tools "$HELD_TOOLS" -n "$N_HELD_TOOLS" --seed "$((SEED_HELD + 1))" \
    "${SYNTH[@]}" -o "$WORK/heldout.jsonl"
else
  [[ -s "$WORK/heldout.jsonl" ]] || "$K" prompts synth --tools "$TOOLS" -n "$N_HELD" --seed "$SEED_HELD" "${SYNTH[@]}" -o "$WORK/heldout.jsonl"
fi
# the prompt sets and the dataset are remade when the job's data settings change
stamp="$TOOLS $VOCAB $N_TRAIN $SEED_TRAIN $N_HELD $SEED_HELD $TPP $HELD_TOOLS $N_HELD_TOOLS ${OVERRIDES[*]}"
if [[ -e "$WORK/data.settings" && "$(cat "$WORK/data.settings")" != "$stamp" ]]; then
  echo "ablation: the job's settings changed; starting over in $WORK" >&2
  rm -rf "$WORK/prompts.jsonl" "$WORK/heldout.jsonl" "$WORK/dataset" "$WORK/runs" "$WORK/teacher"
fi
printf '%s' "$stamp" >"$WORK/data.settings"
if [[ ! -e "$WORK/dataset/COMPLETE" ]]; then
  "$K" generate --prompts "$WORK/prompts.jsonl" --out "$WORK/dataset" --tools "$TOOLS" --tokenizer-path "$TOK" \
    --config "$CONFIG" "${OVERRIDES[@]}"
  touch "$WORK/dataset/COMPLETE"
fi

# train.seq_len=0 (full context): the length that fits 99% of the samples (kdstep inspect), for every run
if printf '%s\n' "${OVERRIDES[@]}" | grep -q -- '--set=train.seq_len=0$'; then
  T=$("$K" inspect "$WORK/dataset" | sed -n 's/.*full context: train.seq_len \([0-9]*\) fits.*/\1/p')
  [[ -n "$T" ]] || { echo "ablation: cannot read the fitting seq_len from kdstep inspect" >&2; exit 1; }
  echo "ablation: train.seq_len 0: $T (the p99 sample length)"
  OVERRIDES+=("--set=train.seq_len=$T")
fi

# The ceiling: the stub teacher's own answers to the held-out prompts, scored by the same rules
if [[ -n "$TPP" && ! -s "$WORK/teacher/report.json" ]]; then
  rm -rf "$WORK/teacher"; mkdir -p "$WORK/teacher"
  "$K" teacher answer --prompts "$WORK/heldout.jsonl" -o "$WORK/teacher/predictions.jsonl"
  "$K" score --predictions "$WORK/teacher/predictions.jsonl" --answers "$WORK/heldout.jsonl" --tools "$WORK/heldout.jsonl" \
    >"$WORK/teacher/report.json.tmp"
  mv "$WORK/teacher/report.json.tmp" "$WORK/teacher/report.json"
fi
if [[ ! -s "$WORK/teacher/report.json" ]]; then
  rm -rf "$WORK/teacher"; mkdir -p "$WORK/teacher"
  "$K" generate --prompts "$WORK/heldout.jsonl" --out "$WORK/teacher/dataset" --tools "$TOOLS" --tokenizer-path "$TOK" \
    --config "$CONFIG" "${OVERRIDES[@]}" >/dev/null
  "$K" export "$WORK/teacher/dataset" --format jsonl -o "$WORK/teacher/export.jsonl"
  jq -c '{id, text: .teacher_text}' "$WORK/teacher/export.jsonl" >"$WORK/teacher/predictions.jsonl"
  "$K" score --predictions "$WORK/teacher/predictions.jsonl" --answers "$WORK/heldout.jsonl" --tools "$TOOLS" \
    >"$WORK/teacher/report.json.tmp"
  mv "$WORK/teacher/report.json.tmp" "$WORK/teacher/report.json"
fi
echo "ablation: teacher: $(jq -c '{tool_name_accuracy, json_validity, ast_accuracy, no_call_accuracy}' "$WORK/teacher/report.json")"

one_run() { # VARIANT SEED
  local v=$1 s=$2 dir="$WORK/runs/$1-seed$2"
  # a run made with other settings (e.g. after train.steps changed in the job file) is redone
  local settings="${OVERRIDES[*]} ${VARIANT[$v]} --set=train.seed=$s"
  if [[ -e "$dir.settings" && "$(cat "$dir.settings")" != "$settings" ]]; then rm -rf "$dir" "$dir.settings"; fi
  if [[ ! -s "$dir/final/model.safetensors" ]]; then
    rm -rf "$dir"; mkdir -p "$WORK/runs"
    printf '%s' "$settings" >"$dir.settings"
    # shellcheck disable=SC2086
    "$K" train --config "$CONFIG" --train-data "$WORK/dataset" --out "$dir" --tokenizer-path "$TOK" \
      "${OVERRIDES[@]}" ${VARIANT[$v]} --set=train.seed="$s" >"$dir.train.log" 2>&1 || { cat "$dir.train.log" >&2; return 1; }
  fi
  if [[ ! -s "$dir/eval/report.json" ]]; then
    local evtools=(--tools "$TOOLS")
    [[ -n "$TPP" ]] && evtools=()   # prompts with their own tools: scored against them
    "$K" eval --model "$dir/final" --prompts "$WORK/heldout.jsonl" "${evtools[@]}" --out "$dir/eval" \
      --config "$CONFIG" "${OVERRIDES[@]}" >/dev/null 2>"$dir.eval.log" || { cat "$dir.eval.log" >&2; return 1; }
  fi
  echo "ablation: $v seed $s: $(jq -c '{tool_name_accuracy, json_validity, ast_accuracy, no_call_accuracy}' "$dir/eval/report.json")"
}
pids=()
# seed-major order: if it is stopped early, every loss has the same seeds done
for s in "${SEEDS[@]}"; do
  for v in "${ORDER[@]}"; do
    while (( $(jobs -rp | wc -l) >= PARALLEL )); do wait -n; done
    one_run "$v" "$s" &
    pids+=($!)
  done
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
(( rc == 0 )) || { echo "ablation: a run failed (see $WORK/runs/*.log)" >&2; exit 1; }

/usr/bin/python3 jobs/ablation_report.py "$WORK" docs/results.md docs/results-curves.png "${ORDER[@]}"
