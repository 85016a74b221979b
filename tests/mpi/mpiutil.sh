#!/usr/bin/env bash
# The MPI helpers (agree on a status, broadcast an error, local ranks) at 2 and 3 ranks: the CUnit program
# tests/unit/test_mpiutil.c, whose assertions hold at any world size, under mpirun.
set -u
B="${KD_BUILD_DIR:?}"
command -v mpirun >/dev/null || { echo "mpirun missing"; exit 77; }
prog="$B/tests/test_mpiutil"
[[ -x "$prog" ]] || { echo "FAIL $prog is not built"; exit 1; }
log=$(mktemp); trap 'rm -f "$log"' EXIT
for np in 2 3; do
  if timeout 300 mpirun --allow-run-as-root --oversubscribe -np "$np" "$prog" >"$log" 2>&1; then
    echo "ok   test_mpiutil at -np $np"
  else
    cat "$log"
    echo "FAIL test_mpiutil at -np $np"; exit 1
  fi
done
