#!/usr/bin/env bash
# One-rank smoke run of a (cross-built) kdstep through a launcher, e.g. qemu-user:
#   tests/cross/smoke.sh KDSTEP [LAUNCHER ARGS...]      (tests/cross/aarch64.sh calls it)
# prompts synth -> tokenizer train -> generate (built-in stub teacher) -> train (tiny student, a few
# steps) -> eval, each a separate command run through the launcher as an MPI singleton (no mpirun),
# and checks what each stage leaves behind. Prints one line per stage.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
kd="$1"; shift
K=("$@" "$kd")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 KDSTEP_THREADS=1 KDSTEP_PROGRESS_INTERVAL=1000
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "smoke: FAIL: $*" >&2; [[ -f "$tmp/log" ]] && tail -30 "$tmp/log" >&2; exit 1; }
stage() { # name command...
  local name=$1 t0=$SECONDS; shift
  "$@" >"$tmp/log" 2>&1 || fail "$name exited $?"
  echo "smoke: $name ok ($((SECONDS - t0)) s)"
}
tools="$root/configs/tools.json"
stage "prompts synth" "${K[@]}" prompts synth --tools "$tools" -n 400 --seed 1 -o "$tmp/prompts.jsonl"
stage "prompts synth (held-out)" "${K[@]}" prompts synth --tools "$tools" -n 6 --seed 2 -o "$tmp/heldout.jsonl"
cat "$tmp/prompts.jsonl" "$tools" >"$tmp/corpus.txt"
stage "tokenizer train" "${K[@]}" tokenizer train --vocab-size 1024 --quiet -o "$tmp/tok" "$tmp/corpus.txt"
[[ -s "$tmp/tok/tokenizer.json" ]] || fail "no tokenizer.json"
cfg=(--config "$root/configs/process_supervision.yaml" --set model.preset=tiny --set train.seq_len=128)
stage "generate" "${K[@]}" generate "${cfg[@]}" --tools "$tools" --prompts "$tmp/prompts.jsonl" --tokenizer-path "$tmp/tok" \
  --teacher stub --total 24 --out "$tmp/ds"
stage "train" "${K[@]}" train "${cfg[@]}" --tokenizer-path "$tmp/tok" --train-data "$tmp/ds" --out "$tmp/run" \
  --set train.steps=3 --set train.micro_batch=2 --set train.eval_fraction=0 --set train.warmup_steps=1
[[ -s "$tmp/run/final/model.safetensors" ]] || fail "train left no final/model.safetensors"
grep -q '"step": *3' "$tmp/run/metrics.jsonl" || fail "no metrics line for step 3"
stage "eval" "${K[@]}" eval "${cfg[@]}" --model "$tmp/run/final" --prompts "$tmp/heldout.jsonl" --tools "$tools" \
  --max-new-tokens 8 --out "$tmp/eval"
[[ -s "$tmp/eval/report.md" ]] || fail "eval left no report.md"
echo "smoke: generate -> train -> eval passed: $(grep -m1 '^| \*\*all\*\*' "$tmp/eval/report.md" || echo 'report written')"
