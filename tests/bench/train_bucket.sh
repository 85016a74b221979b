#!/usr/bin/env bash
# Length bucketing (train.length_buckets) on prompts with their own tools and full context: the
# same dataset, model and steps trained with rows padded to seq_len (length_buckets 0) and with
# length-bucketed steps whose micro-batches run at their longest row (length_buckets 8), alternated
# ROUNDS times so both see the same machine. Prints the real (unpadded) tokens/s of each, their
# ratio, and the padded share of each mode's rows; ends with one JSON line.
#   PRESET (default small), STEPS (12), B (8), N (400 prompts), ROUNDS (2), NP (1)
set -euo pipefail
source "$KD_SOURCE_DIR/tests/mpi/train_lib.bash"
PRESET=${PRESET:-small} STEPS=${STEPS:-12} B=${B:-8} N=${N:-400} ROUNDS=${ROUNDS:-2} NP=${NP:-1}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pool="$KD_SOURCE_DIR/configs/tool_pool.train.json"
"$KDSTEP" prompts synth --tools "$pool" --tools-per-prompt 2-4 -n "$N" --seed 5 -o "$tmp/prompts.jsonl" >/dev/null
cat "$tmp/prompts.jsonl" "$pool" >"$tmp/corpus.txt"
"$KDSTEP" tokenizer train --vocab-size 8192 --quiet -o "$tmp/tok" "$tmp/corpus.txt" >/dev/null
"$KDSTEP" generate --prompts "$tmp/prompts.jsonl" --tools "$pool" --teacher stub --out "$tmp/ds" \
  --tokenizer-path "$tmp/tok" --config "$KD_SOURCE_DIR/configs/process_supervision.yaml" >"$tmp/gen.log" 2>&1 ||
  { cat "$tmp/gen.log"; exit 1; }
seq=$("$KDSTEP" inspect "$tmp/ds" | sed -n 's/.*train.seq_len \([0-9]*\) fits 99%.*/\1/p')
: "${seq:?kdstep inspect printed no fitting seq_len}"
for r in $(seq 1 "$ROUNDS"); do
  for lb in 0 8; do
    mpirun --oversubscribe -np "$NP" "$KDSTEP" train --config "$KD_SOURCE_DIR/configs/process_supervision.yaml" \
      --train-data "$tmp/ds" --tokenizer-path "$tmp/tok" --out "$tmp/r$r-lb$lb" --set model.preset="$PRESET" \
      --set train.seq_len="$seq" --set train.micro_batch="$B" --set train.steps="$STEPS" --set train.eval_every=0 \
      --set train.checkpoint_every=0 --set train.length_buckets=$lb 2>"$tmp/r$r-lb$lb.log" ||
      { cat "$tmp/r$r-lb$lb.log"; exit 1; }
  done
done
"$PY" - "$tmp" "$ROUNDS" "$seq" "$PRESET" "$B" "$NP" <<'PY'
import json, statistics, sys
t, rounds, seq, preset, B, NP = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
tps = {0: [], 8: []}
for r in range(1, rounds + 1):
    for lb in (0, 8):
        rows = [json.loads(l) for l in open(f"{t}/r{r}-lb{lb}/metrics.jsonl")][1:]
        tok = sum(x["tokens"] for x in rows) if "tokens" in rows[0] else None
        secs = sum(x["step_s"] for x in rows)
        tps[lb].append(tok / secs if tok is not None else statistics.median(x["tokens_per_s"] for x in rows))
a, b = statistics.median(tps[0]), statistics.median(tps[8])
print(f"seq_len {seq} (p99), {preset}, micro_batch {B}, {NP} rank(s), {rounds} alternated rounds")
print(f"padded to seq_len:  {a:.0f} real tokens/s")
print(f"length-bucketed:    {b:.0f} real tokens/s  ({b / a:.2f}x)")
print(json.dumps({"preset": preset, "seq_len": seq, "micro_batch": B, "ranks": NP,
                  "padded_tokens_per_s": round(a, 1), "bucketed_tokens_per_s": round(b, 1), "speedup": round(b / a, 3)}))
PY
