#!/bin/bash
# BPE trainer speed: `kdstep tokenizer train` on ~50 MB of mixed text (the synthetic tool-use corpus,
# Python standard-library sources and ../shared/data where present), at 16k ids, and against HF
# tokenizers' own BpeTrainer (one thread, RAYON_NUM_THREADS=1) at HF's default 30k ids in the same run.
#   KD_BENCH_MB (default 50)
set -euo pipefail
SRC=${KD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
KDSTEP=${KDSTEP:-$SRC/build/kdstep}
MB=${KD_BENCH_MB:-50}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$KDSTEP" tokenizer corpus --tools "$SRC/configs/tools.json" --mb 10 -o "$T/part0.txt"
{
  cat "$T/part0.txt"
  [ -d "$SRC/../shared/data" ] && find "$SRC/../shared/data" -name '*.json' | LC_ALL=C sort | xargs cat
  find /usr/lib/python3* -name '*.py' 2>/dev/null | LC_ALL=C sort | xargs cat 2>/dev/null || true
} 2>/dev/null | head -c $((MB * 1000000)) > "$T/corpus.txt" || true  # head closing the pipe early is fine
BYTES=$(stat -c %s "$T/corpus.txt")
# wall seconds and CPU seconds (user + sys, via /usr/bin/time from the "time" package): the machine may be shared, CPU time is the steadier figure
timed() { # name cmd...
  local name=$1; shift
  /usr/bin/time -f '%e %U %S' -o "$T/time.$name" "$@"
  read -r W U S < "$T/time.$name"
  eval "${name}_WALL=$W; ${name}_CPU=$(awk "BEGIN{printf \"%.2f\", $U + $S}")"
}
timed K16 "$KDSTEP" tokenizer train --quiet --vocab-size 16000 -o "$T/tok16k" "$T/corpus.txt" 2> "$T/log16k"
timed K30 "$KDSTEP" tokenizer train --quiet --vocab-size 30000 --min-frequency 1 -o "$T/tok30k" "$T/corpus.txt" 2> "$T/log30k"
cat "$T/log16k"
MBF=$(awk "BEGIN{printf \"%.1f\", $BYTES / 1000000}")
echo "corpus $MBF MB; kdstep 16k vocab: ${K16_WALL} s wall, ${K16_CPU} s CPU; 30k vocab: ${K30_WALL} s wall, ${K30_CPU} s CPU"
[ -s "$T/tok16k/tokenizer.json" ] || { echo "FAIL: no tokenizer written"; exit 1; }
HF_WALL=null; HF_CPU=null; RATIO=null
NODE_MODULES=$SRC/tests/.cache/node/node_modules
if [ -d "$NODE_MODULES/@anush008/tokenizers" ] && command -v node >/dev/null; then
  RAYON_NUM_THREADS=1 NODE_PATH=$NODE_MODULES timed HF node "$SRC/tests/bench/bpe_train_hf.js" "$T/tok30k/tokenizer.json" \
    "$T/corpus.txt" "$T/hf.json" > /dev/null 2>&1
  RATIO=$(awk "BEGIN{printf \"%.2f\", $HF_CPU / $K30_CPU}")
  echo "HF tokenizers BpeTrainer 30k vocab, 1 thread: ${HF_WALL} s wall, ${HF_CPU} s CPU (kdstep ${RATIO}x less CPU)"
fi
echo "{\"mb\": $MBF, \"kdstep_16k_wall_s\": $K16_WALL, \"kdstep_16k_cpu_s\": $K16_CPU, \"kdstep_30k_cpu_s\": $K30_CPU, \"hf_30k_wall_s\": $HF_WALL, \"hf_30k_cpu_s\": $HF_CPU, \"ratio\": $RATIO}"
