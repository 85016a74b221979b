#!/usr/bin/env bash
# The default build is portable (issue #24, docs/install.md "Portable or native"): run under an
# emulated baseline x86-64 CPU (qemu-user's qemu64 model: SSE2/SSE3, no AVX), the kdstep binary does
# `--version`, `tokenize` and a one-step `train` without an illegal instruction.
# A control first: a program built with -march=x86-64-v3 (what Release builds used to hard-code) must
# die with SIGILL under the same emulator, or the emulator proves nothing.
# Skips (77) off x86-64, without qemu-x86_64 (jobs/setup.sh installs qemu-user with the test deps),
# and for a -DKD_NATIVE=ON build, which is not meant to run on other CPUs.
source "$KD_SOURCE_DIR/tests/mpi/train_lib.bash"
[[ "$(uname -m)" == x86_64 ]] || { echo "portable_cpu: SKIP: not x86-64"; exit 77; }
command -v qemu-x86_64 >/dev/null || { echo "portable_cpu: SKIP: qemu-x86_64 missing (apt install qemu-user)"; exit 77; }
grep -q "^KD_NATIVE:BOOL=ON" "$KD_BUILD_DIR/CMakeCache.txt" && { echo "portable_cpu: SKIP: KD_NATIVE=ON build"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# OpenBLAS's kernels are OpenBLAS's choice, not part of our build: qemu64 identifies as an AMD
# Opteron, for which OpenBLAS's run-time detection picks kernels with 3DNow! (femms), which qemu does
# not emulate (SIGILL inside libopenblas). So the BLAS is pinned to its SSE3 baseline family here.
Q=(env -u KDSTEP_BLAS_CORETYPE OPENBLAS_CORETYPE=Prescott qemu-x86_64 -cpu qemu64)
ran() { # name rc: 132 = SIGILL
  (( $2 == 0 )) && return 0
  (( $2 == 132 )) && fail "$1: illegal instruction under qemu64 (a non-baseline instruction in the default build)"
  cat "$tmp/out"; fail "$1: exit $2 under qemu64"
}

# control: an AVX2 loop dies under qemu64
cat >"$tmp/avx2.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    int n = 1024 + argc; float *a = malloc(n * sizeof *a), s = 0;
    for (int i = 0; i < n; i++) a[i] = (float)i * 0.5f;
    for (int i = 0; i < n; i++) s += a[i] * a[i];
    printf("%g\n", s); return 0;
}
C
"${CC:-cc}" -O3 -ffast-math -march=x86-64-v3 "$tmp/avx2.c" -o "$tmp/avx2"
grep -q -m1 -E "ymm" <(objdump -d "$tmp/avx2" 2>/dev/null) || fail "control program has no AVX code"
set +e; "${Q[@]}" "$tmp/avx2" >/dev/null 2>&1; rc=$?; set -e
(( rc == 132 )) || fail "control: an AVX2 program exited $rc under qemu64 (expected 132, SIGILL): the emulator does not enforce the baseline"

set +e
"${Q[@]}" "$KDSTEP" --version >"$tmp/out" 2>&1; ran "kdstep --version" $?
grep -q "^kdstep " "$tmp/out" || { cat "$tmp/out"; fail "--version output"; }
printf 'hello  world<|im_end|>\n' | "${Q[@]}" "$KDSTEP" tokenize --offsets \
  --tokenizer "$KD_SOURCE_DIR/tests/fuzz/corpus/tokenizer_load/qwen_style.json" >"$tmp/tok.json" 2>"$tmp/out"
ran "kdstep tokenize" $?
set -e
# the same tokens as the native run
printf 'hello  world<|im_end|>\n' | "$KDSTEP" tokenize --offsets \
  --tokenizer "$KD_SOURCE_DIR/tests/fuzz/corpus/tokenizer_load/qwen_style.json" >"$tmp/tok.native.json"
cmp -s "$tmp/tok.json" "$tmp/tok.native.json" || fail "tokenize under qemu64 differs from the native run"

# a one-step train (data made natively, for speed)
make_data "$tmp" 8
set +e
"${Q[@]}" "$KDSTEP" train $(tiny_flags) --tokenizer-path "$tmp/tok" --train-data "$tmp/ds" --out "$tmp/run" \
  --set train.seq_len=64 --set train.steps=1 --set train.micro_batch=2 --set train.eval_fraction=0 >"$tmp/out" 2>&1
ran "kdstep train (one step)" $?
set -e
grep -q '"step": *1' "$tmp/run/metrics.jsonl" || { cat "$tmp/out"; fail "no metrics line for step 1"; }
[[ -s "$tmp/run/final/model.safetensors" ]] || fail "no final weights"
echo "portable_cpu: --version, tokenize and a train step ran under qemu-x86_64 -cpu qemu64; an AVX2 control died with SIGILL"
