#!/usr/bin/env bash
# Ranks per node against threads per rank on this machine's 2 CPUs (docs/slurm.md, "Ranks per node or
# threads per rank?"): the same training (PRESET small, STEPS 12, SEQ 128, global batch 8) as 2 ranks
# x 1 thread (mpirun --bind-to core, micro_batch 4) and as 1 rank x 2 threads (micro_batch 8), each
# thread count chosen by kdstep itself from the affinity mask, ROUNDS (2) rounds interleaved.
# Prints one JSON line: the wall seconds of each and their ratio per round.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/mpi/train_lib.bash"
PRESET=${PRESET:-small} STEPS=${STEPS:-12} SEQ=${SEQ:-128} ROUNDS=${ROUNDS:-2}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_data "$tmp" 64
unset KDSTEP_THREADS OMP_NUM_THREADS
run() { # out np bind micro_batch -> wall seconds
  local t0 t1
  t0=$(date +%s.%N)
  mpirun --oversubscribe --bind-to "$3" -np "$2" "$KDSTEP" train --config "$KD_SOURCE_DIR/configs/process_supervision.yaml" \
    --train-data "$tmp/ds" --tokenizer-path "$tmp/tok" --out "$tmp/$1" --set model.preset=$PRESET --set train.seq_len=$SEQ \
    --set train.micro_batch=$4 --set train.steps=$STEPS --set train.eval_every=0 --set train.checkpoint_every=0 \
    --set train.warmup_steps=2 2>"$tmp/$1.log" || { cat "$tmp/$1.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  grep -q "1 thread (CPU affinity" "$tmp/$1.log" || [[ "$2" == 1 ]] || { echo "ranks_threads: 2 ranks did not run 1 thread each" >&2; exit 1; }
  echo "$t1 - $t0" | bc
}
rounds=()
for r in $(seq "$ROUNDS"); do
  a=$(run "r$r-ranks" 2 core 4); rm -rf "$tmp/r$r-ranks"
  b=$(run "r$r-threads" 1 none 8); rm -rf "$tmp/r$r-threads"
  rounds+=("{\"ranks2_threads1_s\": $a, \"ranks1_threads2_s\": $b, \"ratio\": $(echo "scale=2; $b / $a" | bc)}")
done
echo "{\"bench\": \"ranks_threads\", \"preset\": \"$PRESET\", \"steps\": $STEPS, \"rounds\": [$(IFS=,; echo "${rounds[*]}")]}"
