#!/usr/bin/env bash
# Trainer throughput: tokens/s at -np 1 and -np 2 (one thread per rank, same micro-batch per rank,
# so -np 2 does twice the work per step), the scaling efficiency tps(np2) / (2 tps(np1)), the share
# of step time in allreduce (counts, bucketed gradient Iallreduce waits, loss sums), and the grammar
# term's cost per step. Medians over steps 4..N (the first steps fill the grammar cache).
#   PRESET (default small), STEPS (20), B (8), SEQ (128)
set -euo pipefail
source "$KD_SOURCE_DIR/tests/mpi/train_lib.bash"
PRESET=${PRESET:-small} STEPS=${STEPS:-20} B=${B:-8} SEQ=${SEQ:-128}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_data "$tmp" 400
for np in 1 2; do
  mpirun --oversubscribe -np $np "$KDSTEP" train --config "$KD_SOURCE_DIR/configs/process_supervision.yaml" \
    --train-data "$tmp/ds" --tokenizer-path "$tmp/tok" --out "$tmp/np$np" --set model.preset=$PRESET \
    --set train.seq_len=$SEQ --set train.micro_batch=$B --set train.steps=$STEPS --set train.eval_every=0 \
    --set train.checkpoint_every=0 2>"$tmp/np$np.log" || { cat "$tmp/np$np.log"; exit 1; }
done
"$PY" - "$tmp" "$PRESET" "$B" "$SEQ" <<'PY'
import json, statistics, sys
t, preset, B, seq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
res = {}
for np in (1, 2):
    rows = [json.loads(l) for l in open(f"{t}/np{np}/metrics.jsonl")][3:]
    med = lambda k: statistics.median(r[k] for r in rows)
    res[np] = dict(tps=med("tokens_per_s"), share=med("allreduce_share"), grammar_s=med("grammar_s"),
                   step_s=med("step_s"), mfu=med("mfu"))
    print(f"np{np}: {res[np]['tps']:.0f} tokens/s, step {res[np]['step_s']*1e3:.0f} ms, allreduce share "
          f"{100*res[np]['share']:.1f}%, grammar term {res[np]['grammar_s']*1e3:.1f} ms/step "
          f"({100*res[np]['grammar_s']/res[np]['step_s']:.1f}% of the step), MFU {100*res[np]['mfu']:.1f}%")
eff = res[2]["tps"] / (2 * res[1]["tps"])
print(f"scaling efficiency np1 -> np2: {100*eff:.0f}%  ({preset}, micro_batch {B}, seq_len {seq}, 1 thread per rank)")
print(json.dumps({"preset": preset, "np1_tokens_per_s": round(res[1]["tps"], 1), "np2_tokens_per_s": round(res[2]["tps"], 1),
                  "scaling_efficiency": round(eff, 3), "np2_allreduce_share": round(res[2]["share"], 4),
                  "grammar_ms_per_step": round(res[1]["grammar_s"] * 1e3, 2),
                  "grammar_share": round(res[1]["grammar_s"] / res[1]["step_s"], 4)}))
PY
