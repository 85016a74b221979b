#!/usr/bin/env bash
# Training-step scaling over the threads of one rank, in one run: tokens/s and MFU at 1 and 2 threads
# (products as row blocks of single-threaded sgemm per OpenMP thread, the default), 2 threads with
# OpenBLAS's own threads for the products instead (KDSTEP_SGEMM=blas), and the 1-thread step's time
# per kernel (m->profile) as shares of the step: what runs outside sgemm. The Amdahl extrapolation
# to 16 and 64 threads takes the serial share s two ways: from the measured 2-thread speedup S2
# (s = 2/S2 - 1, clamped to [0, 1]; meaningless when other jobs hold the cores), and from the
# 1-thread profile (s = the step time outside every timed kernel: each timed kernel runs on the
# OpenMP threads). Prints figures, then one JSON line.
#   env: PRESET (small) B (8) T (256) STEPS (5: best step of STEPS after one warm-up)
set -euo pipefail
PRESET=${PRESET:-small} B=${B:-8} T=${T:-256} STEPS=${STEPS:-5}
SRC=${KD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BLD=${KD_BUILD_DIR:-$SRC/build}
BIN="$BLD/tests/bench_train_step"
[[ -x "$BIN" ]] || { echo "train_threads: $BIN is missing (build the project first)" >&2; exit 1; }
cpus=$(nproc)
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) ; $cpus CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
run() { # THREADS SGEMM-MODE PROFILE -> the bench's last two lines (kernels JSON when profiling, then the result)
  env OMP_NUM_THREADS="$1" KDSTEP_SGEMM="$2" KD_BENCH_PROFILE="$3" "$BIN" "$PRESET" "$B" "$T" "$STEPS" | tee /dev/stderr | grep '^ *{' | sed 's/^ *//'
}
p1=$(run 1 rows 1)
r2=$(run 2 rows 0)
b2=$(run 2 blas 0)
/usr/bin/python3 - "$p1" "$r2" "$b2" "$PRESET" "$B" "$T" <<'PYEOF'
import json, sys
p1 = [json.loads(l) for l in sys.argv[1].splitlines()]
k1, one = p1[0], p1[1]
two, blas = json.loads(sys.argv[2].splitlines()[-1]), json.loads(sys.argv[3].splitlines()[-1])
step = k1["step_mean_s"]
# outside sgemm: every kernel but the products; attention counts only its softmax (its per-head
# products are sgemm); "other" is what no timer covers (zero_grad, the trainer-free glue)
outside = {k: k1[k] for k in ("attn_softmax", "rmsnorm", "qk_norm_rope", "swiglu", "embedding", "residual", "loss", "adamw")}
covered = k1["sgemm"] + k1["attention"] + sum(v for k, v in outside.items() if k != "attn_softmax")
outside["other"] = max(0.0, step - covered)
share = {k: round(v / step, 4) for k, v in outside.items()}
out_share = round(sum(outside.values()) / step, 4)
s2 = two["kdstep_tok_s"] / one["kdstep_tok_s"]
serial = min(1.0, max(0.0, 2.0 / s2 - 1.0))
amdahl = lambda n, s=serial: 1.0 / (s + (1.0 - s) / n)
structural = outside["other"] / step
print(f"1 thread {one['kdstep_tok_s']:.0f} tok/s (MFU {100*one['mfu']:.0f}%), 2 threads {two['kdstep_tok_s']:.0f} tok/s "
      f"(MFU {100*two['mfu']:.0f}% of the 2-thread sgemm), x{s2:.2f} (goal >= 1.8: {'met' if s2 >= 1.8 else 'NOT met'}); "
      f"with OpenBLAS threads x{blas['kdstep_tok_s']/one['kdstep_tok_s']:.2f}")
print(f"outside sgemm: {100*out_share:.1f}% of a 1-thread step (goal <= 5%: {'met' if out_share <= 0.05 else 'NOT met'}): "
      + ", ".join(f"{k} {100*v:.1f}%" for k, v in share.items()))
print(f"Amdahl from the measured 2-thread speedup: serial share {serial:.3f}: x{amdahl(16):.1f} at 16 threads, x{amdahl(64):.1f} at 64; "
      f"from the profile's untimed share {structural:.4f}: x{amdahl(16, structural):.1f} at 16, x{amdahl(64, structural):.1f} at 64")
print(json.dumps({"preset": sys.argv[4], "B": int(sys.argv[5]), "T": int(sys.argv[6]),
                  "tok_s_1t": one["kdstep_tok_s"], "tok_s_2t": two["kdstep_tok_s"], "tok_s_2t_openblas_threads": blas["kdstep_tok_s"],
                  "speedup_2t": round(s2, 3), "speedup_2t_openblas_threads": round(blas["kdstep_tok_s"] / one["kdstep_tok_s"], 3),
                  "mfu_1t": one["mfu"], "mfu_2t": two["mfu"], "sgemm_gflops_1t": one["sgemm_gflops"], "sgemm_gflops_2t": two["sgemm_gflops"],
                  "outside_sgemm_share_1t": out_share, "outside_sgemm_by_kernel_1t": share, "serial_share": round(serial, 4),
                  "amdahl_speedup_16t": round(amdahl(16), 2), "amdahl_speedup_64t": round(amdahl(64), 2),
                  "serial_share_profile": round(structural, 4), "amdahl_profile_16t": round(amdahl(16, structural), 2),
                  "amdahl_profile_64t": round(amdahl(64, structural), 2), "clock": one["clock"], "load": open("/proc/loadavg").read().split()[:3]}))
PYEOF
