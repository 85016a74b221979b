# Shared test fixtures, sourced by test scripts (not a test itself).
#   kd_student_tokenizer   -> prints the path of a small student tokenizer (trained once, cached in the build dir)
#   kd_mpirun N args...    -> mpirun with the flags a root container needs
#   kd_tmp_mount_or_skip NAME DIR -> exits 77 (skipped) unless this process may mount a tmpfs on DIR
kd_student_tokenizer() {
  local dir="${KD_BUILD_DIR:?}/test-fixtures/student-tokenizer"
  if [[ ! -s "$dir/tokenizer.json" ]]; then
    mkdir -p "$dir.tmp"
    "$KDSTEP" tokenizer corpus --tools "$KD_SOURCE_DIR/configs/tools.json" --mb 2 -o "$dir.tmp/corpus.txt" >/dev/null
    "$KDSTEP" tokenizer train --vocab-size 2048 --quiet -o "$dir.tmp/out" "$dir.tmp/corpus.txt" >/dev/null
    rm -rf "$dir"; mkdir -p "$(dirname "$dir")"; mv "$dir.tmp/out" "$dir"; rm -rf "$dir.tmp"
  fi
  echo "$dir"
}
kd_mpirun() {
  local n=$1; shift
  mpirun --allow-run-as-root --oversubscribe -np "$n" "$@"
}
kd_tmp_mount_or_skip() {
  local name=$1 mnt=$2
  if [[ $(id -u) -ne 0 ]] || ! mount -t tmpfs -o size=64m tmpfs "$mnt" 2>/dev/null; then
    echo "$name: skipped (mounting a tmpfs needs root / CAP_SYS_ADMIN)"; exit 77
  fi
  umount "$mnt"
}
