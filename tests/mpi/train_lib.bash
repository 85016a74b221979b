# Shared helpers for the trainer's MPI tests (sourced; not a .sh, so ctest does not run it).
# make_data DIR N [extra bench_traindata args]: a BPE tokenizer trained on the synthesized prompts
# and a stub-teacher dataset of N samples, in DIR/tok and DIR/ds.
set -euo pipefail
: "${KDSTEP:?}" "${KD_SOURCE_DIR:?}" "${KD_BUILD_DIR:?}"
export OMP_NUM_THREADS=1 KDSTEP_THREADS=1 KDSTEP_PROGRESS_INTERVAL=1000
MAKEDATA="$KD_BUILD_DIR/tests/bench_traindata"
PY=/usr/bin/python3
command -v mpirun >/dev/null || { echo "mpirun missing"; exit 77; }

make_data() { # DIR N [args...]
  local dir="$1" n="$2"; shift 2
  mkdir -p "$dir"
  "$KDSTEP" prompts synth --tools "$KD_SOURCE_DIR/configs/tools.json" -n 2000 -o "$dir/prompts.jsonl" >/dev/null
  cat "$dir/prompts.jsonl" "$KD_SOURCE_DIR/configs/tools.json" >"$dir/corpus.txt"
  "$KDSTEP" tokenizer train --vocab-size 1024 --quiet -o "$dir/tok" "$dir/corpus.txt" >/dev/null
  "$MAKEDATA" "$dir/tok" "$KD_SOURCE_DIR/configs/tools.json" "$n" "$dir/ds" "$@" >/dev/null
}

# Common flags of a tiny, short run.
tiny_flags() {
  echo --config "$KD_SOURCE_DIR/configs/process_supervision.yaml" --set model.preset=tiny --set train.seq_len=128 \
       --set train.warmup_steps=5 --set train.eval_fraction=0.1
}

# max |a - b| over every tensor of two safetensors files (F32)
st_maxdiff() {
  "$PY" - "$1" "$2" <<'PY'
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); base = 8 + n
    return {k: np.frombuffer(b[base+v['data_offsets'][0]:base+v['data_offsets'][1]], dtype=np.float32)
            for k, v in h.items() if k != '__metadata__'}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys(), (a.keys() ^ b.keys())
print(max(float(np.max(np.abs(a[k] - b[k]))) for k in a))
PY
}
