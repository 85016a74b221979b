#!/usr/bin/env bash
# The kdstep binary picks OpenBLAS's widest kernels by itself (src/core/runtime.c): it upgrades an
# unset or narrower OPENBLAS_CORETYPE (this environment exports Haswell), keeps an equal or wider
# one, and KDSTEP_BLAS_CORETYPE forces a choice.
set -euo pipefail
K="${KDSTEP:?}"
kern() { env "$@" "$K" --version | sed -n 's/.*(kernels: \(.*\))/\1/p'; }
if grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo; then best=SkylakeX
elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then best=Haswell
else echo "skip: CPU has neither AVX-512 nor AVX2"; exit 77; fi
fail=0
expect() { local want=$1; shift; local got; got=$(kern "$@"); if [ "$got" = "$want" ]; then echo "ok   $* -> $got"; else echo "FAIL $* -> $got (want $want)"; fail=1; fi; }
expect "$best" OPENBLAS_CORETYPE=Prescott
expect "$best" -u OPENBLAS_CORETYPE
[ "$best" = SkylakeX ] && expect SkylakeX OPENBLAS_CORETYPE=Haswell
[ "$best" = SkylakeX ] && expect Cooperlake OPENBLAS_CORETYPE=Cooperlake
expect Haswell OPENBLAS_CORETYPE=SkylakeX KDSTEP_BLAS_CORETYPE=Haswell
exit $fail
