#!/usr/bin/env bash
# Build with ASan+UBSan into build-asan and run the unit tests (leak checking on) and the MPI tests
# (leak checking off: Open MPI's own allocations at exit are not ours). Unit suites that start MPI
# themselves (they call MPI_Init) run with leak checking off for the same reason.
# About 10 minutes on 2 cores after the build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KD_BUILD_DIR="$root/build-asan" KD_WITH_TEST_DEPS=1
KD_CMAKE_ARGS="-DKD_SANITIZE=ON -DKD_WERROR=ON -DCMAKE_BUILD_TYPE=Debug" "$root/jobs/setup.sh"
bash "$root/tests/fetch-tokenizers.sh" >/dev/null 2>&1 || echo "sanitize: could not fetch reference tokenizers (tests that need them skip)" >&2
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cd "$KD_BUILD_DIR"
mpi_units=$(grep -l "MPI_Init" "$root"/tests/unit/test_*.c | xargs -r -n1 basename | sed 's/\.c$//' | paste -sd'|' -)
fail=0
if [[ -n "$mpi_units" ]]; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 ctest -j2 --output-on-failure -L unit -E "unit/($mpi_units)\$" || fail=1
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 ctest --output-on-failure -L unit -R "unit/($mpi_units)\$" || fail=1
else
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 ctest -j2 --output-on-failure -L unit || fail=1
fi
# OpenBLAS/OpenMP threads and MPI's shared memory make ASan slow: keep the MPI tests on the small sizes.
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 KD_TEST_QUICK=1 ctest --output-on-failure -L mpi || fail=1
exit $fail
