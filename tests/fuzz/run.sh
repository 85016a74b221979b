#!/usr/bin/env bash
# Build every tests/fuzz/fuzz_<name>.c with clang + libFuzzer + ASan/UBSan and run each for a bounded
# time on its seed corpus (tests/fuzz/corpus/<name>/). A crash fails the run; the crashing input is
# written to tests/fuzz/crashes/ so it can be added to the corpus (a test case forever).
#   tests/fuzz/run.sh [seconds-per-target]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
secs="${1:-30}"
shopt -s nullglob
targets=("$root"/tests/fuzz/fuzz_*.c)
if ((${#targets[@]} == 0)); then echo "fuzz: no targets"; exit 0; fi
export KD_WITH_TEST_DEPS=1 KD_BUILD_DIR="$root/build-fuzz" CC=clang
KD_CMAKE_ARGS="-DKD_FUZZ=ON -DKD_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang" "$root/jobs/setup.sh"
mkdir -p "$root/tests/fuzz/crashes"
fail=0
for t in "${targets[@]}"; do
  name=$(basename "$t" .c)
  corpus="$root/tests/fuzz/corpus/${name#fuzz_}"
  work=$(mktemp -d)
  [[ -d "$corpus" ]] && cp -r "$corpus"/. "$work"/ 2>/dev/null || true
  if "$KD_BUILD_DIR/tests/$name" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
       -artifact_prefix="$root/tests/fuzz/crashes/$name-" "$work" >"$work.log" 2>&1; then
    echo "fuzz: $name ok ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work.log" | grep -o '[0-9]*$' || echo "?") runs in ${secs}s)"
  else
    echo "fuzz: $name FAILED"; tail -30 "$work.log"; fail=1
  fi
  rm -rf "$work" "$work.log"
done
exit $fail
