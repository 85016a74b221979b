#!/usr/bin/env bash
# Training-step throughput (forward + backward + AdamW) of the C student vs the PyTorch reference on
# the same config, both on ONE thread, in one run. PyTorch runs "at its best": OPENBLAS_CORETYPE set
# to the CPU's widest kernel family (kdstep picks its own, src/core/runtime.c).
#   env: PRESET (small) B (8) T (256) STEPS (5: best step of STEPS after one warm-up)
#        KD_BENCH_CPUTIME=1: time both sides by process CPU time instead of wall time (for a shared,
#        overloaded machine: one thread each, so CPU time is each side's own work)
set -euo pipefail
PRESET=${PRESET:-small} B=${B:-8} T=${T:-256} STEPS=${STEPS:-5}
PY=/usr/bin/python3
SRC=${KD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BLD=${KD_BUILD_DIR:-$SRC/build}
CFG="$SRC/configs/models/$PRESET.json"
if grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo; then best=SkylakeX
elif grep -qw avx2 /proc/cpuinfo; then best=Haswell; else best=""; fi
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) ; load: $(cut -d' ' -f1-3 /proc/loadavg)"
export KD_BENCH_CPUTIME=${KD_BENCH_CPUTIME:-0}
echo "# clock: $([ "$KD_BENCH_CPUTIME" = 1 ] && echo 'process CPU time' || echo wall)"
k=$(OMP_NUM_THREADS=1 "$BLD/tests/bench_train_step" "$PRESET" "$B" "$T" "$STEPS" | tee /dev/stderr | tail -1)
t=$(env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ${best:+OPENBLAS_CORETYPE=$best} \
    $PY "$SRC/tests/reference/qwen3_ref.py" bench "$CFG" "$B" "$T" "$STEPS" | tail -1)
echo "torch (OPENBLAS_CORETYPE=${best:-detected}, 1 thread): $t" >&2
$PY - "$k" "$t" "$best" <<'PYEOF'
import json, sys
k, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ratio = k["kdstep_tok_s"] / t["torch_tok_s"]
print(f"kdstep {k['kdstep_tok_s']:.0f} tok/s, torch {t['torch_tok_s']:.0f} tok/s: ratio {ratio:.2f} (goal >= 1.5: {'met' if ratio >= 1.5 else 'NOT met'}); "
      f"MFU {100*k['mfu']:.0f}% of {k['sgemm_gflops']:.0f} GFLOP/s sgemm (goal >= 60%: {'met' if k['mfu'] >= 0.6 else 'NOT met'}); "
      f"peak RSS kdstep {k['kdstep_peak_rss_mb']:.0f} MB, torch {t['torch_peak_rss_mb']:.0f} MB")
out = {"kdstep_tok_s": round(k["kdstep_tok_s"], 1), "torch_tok_s": round(t["torch_tok_s"], 1), "ratio": round(ratio, 2),
       "mfu": round(k["mfu"], 3), "sgemm_gflops": k["sgemm_gflops"], "kdstep_gflops": k["kdstep_gflops"],
       "kdstep_peak_rss_mb": k["kdstep_peak_rss_mb"], "torch_peak_rss_mb": round(t["torch_peak_rss_mb"], 1),
       "kdstep_blas": k["blas_core"], "torch_blas": sys.argv[3] or "detected", "clock": k["clock"]}
assert out["kdstep_tok_s"] > 0 and out["torch_tok_s"] > 0
print(json.dumps(out))
PYEOF
