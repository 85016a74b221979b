#!/usr/bin/env bash
# The test command: install what is missing, build with warnings as errors, run the default labels
# (unit, mpi, e2e, ref, slurm, cluster; bench is separate: tests/bench/run.sh).
#   tests/run.sh                  everything in the default run
#   tests/run.sh -L unit          only some labels (extra args go to ctest)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KD_WITH_TEST_DEPS=1 KD_WITH_SLURM=1
export KD_BUILD_DIR="${KD_BUILD_DIR:-$root/build}"
KD_CMAKE_ARGS="${KD_CMAKE_ARGS:--DKD_WERROR=ON}" "$root/jobs/setup.sh"
bash "$root/tests/fetch-tokenizers.sh" >/dev/null 2>&1 || echo "run: could not fetch reference tokenizers (tests that need them skip)" >&2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cd "$KD_BUILD_DIR"
if (($#)); then
  ctest --output-on-failure "$@"
else
  ctest --output-on-failure -LE bench
fi
