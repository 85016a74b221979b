#!/usr/bin/env bash
# Portable build vs today's x86-64-v3 flags vs -march=native, in ONE run (issue #24; docs/install.md
# "Portable or native" quotes it): the kdstep side of the train-step bench (bench_train_step: forward +
# CE + backward + AdamW, one thread) and of the tokenizer bench (bench_tokenizer on qwen3, one thread),
# for three builds of the same tree:
#   portable  the default flags (-O3, no -march; the hot row kernels dispatch at run time)
#   v3        what Release builds hard-coded before: -O3 -march=x86-64-v3 -mtune=native
#   native    -DKD_NATIVE=ON (-march=native)
# Rounds are interleaved (portable, v3, native, portable, ...) and each figure is the best round, by
# process CPU time: the machine may be shared, so compare the RATIOS of one run, not figures across runs.
#   env: ROUNDS (3) PRESET (small) B (8) T (256) STEPS (3)
# Prints the figures, then one JSON line. Builds go to $KD_BUILD_DIR/flags-bench/<name> (bench targets only).
set -euo pipefail
SRC=${KD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BLD=${KD_BUILD_DIR:-$SRC/build}
ROUNDS=${ROUNDS:-3} PRESET=${PRESET:-small} B=${B:-8} T=${T:-256} STEPS=${STEPS:-3}
[[ "$(uname -m)" == x86_64 ]] || { echo "bench portable: SKIP: x86-64 only (the v3 build)"; exit 77; }
cache="$(bash "$SRC/tests/fetch-tokenizers.sh" 2>/dev/null)" || { echo "bench portable: SKIP: cannot fetch tokenizers"; exit 77; }
work="$BLD/flags-bench"
mkdir -p "$work"
/usr/bin/python3 "$SRC/tests/reference/make_corpus.py" "$work/corpus.jsonl"
names=(portable v3 native)
declare -A args=([portable]="" [v3]="-DCMAKE_C_FLAGS=-march=x86-64-v3 -mtune=native -DKD_NO_CLONES" [native]="-DKD_NATIVE=ON")
for n in "${names[@]}"; do
  cmake -S "$SRC" -B "$work/$n" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${args[$n]:+"${args[$n]}"} >"$work/$n.configure.log"
  cmake --build "$work/$n" -j"$(nproc)" --target bench_train_step bench_tokenizer -- --no-print-directory >"$work/$n.build.log"
done
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) ; load: $(cut -d' ' -f1-3 /proc/loadavg) ; clock: process CPU time"
rm -f "$work"/*.train.jsonl "$work"/*.tok.jsonl
export OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 KD_BENCH_CPUTIME=1
for ((r = 1; r <= ROUNDS; r++)); do
  for n in "${names[@]}"; do
    "$work/$n/tests/bench_train_step" "$PRESET" "$B" "$T" "$STEPS" | tail -1 >>"$work/$n.train.jsonl"
    "$work/$n/tests/bench_tokenizer" "$cache/tokenizers/qwen3" "$work/corpus.jsonl" | tail -1 >>"$work/$n.tok.jsonl"
  done
done
/usr/bin/python3 - "$work" "$ROUNDS" <<'PY'
import json, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def last(path):
    return [json.loads(l) for l in open(path).read().splitlines()[-rounds:]]
out = {}
for n in ("portable", "v3", "native"):
    tr = last(f"{work}/{n}.train.jsonl"); tk = last(f"{work}/{n}.tok.jsonl")
    out[f"train_tok_s_{n}"] = round(max(x["kdstep_tok_s"] for x in tr), 1)
    out[f"tokenizer_mb_s_{n}"] = round(max(x["mb"] / x["cpu_seconds"] for x in tk), 2)
    out[f"blas_{n}"] = tr[0]["blas_core"]
for n in ("portable", "native"):
    out[f"train_{n}_over_v3"] = round(out[f"train_tok_s_{n}"] / out["train_tok_s_v3"], 3)
    out[f"tokenizer_{n}_over_v3"] = round(out[f"tokenizer_mb_s_{n}"] / out["tokenizer_mb_s_v3"], 3)
out["rounds"] = rounds
out["clock"] = "cpu"
for n in ("portable", "v3", "native"):
    print(f"{n:9s} train {out[f'train_tok_s_{n}']:8.1f} tok/s   tokenizer {out[f'tokenizer_mb_s_{n}']:6.2f} MB/s   (BLAS kernels {out[f'blas_{n}']})")
print(f"portable/v3: train {out['train_portable_over_v3']:.3f}, tokenizer {out['tokenizer_portable_over_v3']:.3f}; "
      f"native/v3: train {out['train_native_over_v3']:.3f}, tokenizer {out['tokenizer_native_over_v3']:.3f} (goal: portable >= 0.95)")
print(json.dumps(out))
PY
