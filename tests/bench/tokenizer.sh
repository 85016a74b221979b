#!/usr/bin/env bash
# Tokenizer speed: kdstep vs Hugging Face tokenizers (official node binding), one thread each
# (RAYON_NUM_THREADS=1), encoding the same >= 5 MB corpus with offsets, for Qwen3, Llama 3 and GPT-2;
# plus the time to load Qwen3's tokenizer.json in each. Prints the figures, then one JSON line.
set -euo pipefail
src="${KD_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
build="${KD_BUILD_DIR:-$src/build}"
bench="$build/tests/bench_tokenizer"
cache="$(bash "$src/tests/fetch-tokenizers.sh" 2>/dev/null)" || { echo "bench tokenizer: SKIP: cannot fetch tokenizers"; exit 77; }
nm="$cache/node/node_modules"
command -v node >/dev/null && [[ -f "$nm/tokenizers/package.json" ]] || { echo "bench tokenizer: SKIP: node/tokenizers missing"; exit 77; }
work="$build/tokenizer-bench"
mkdir -p "$work"
/usr/bin/python3 "$src/tests/reference/make_corpus.py" "$work/corpus.jsonl"
export RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1
field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
json="{"
sep=""
for t in qwen3 llama3 gpt2; do
  kd="$("$bench" "$cache/tokenizers/$t" "$work/corpus.jsonl")"
  hf="$(BENCH=1 node "$src/tests/reference/hf_encode.js" "$nm" "$cache/tokenizers/$t/tokenizer.json" "$work/corpus.jsonl" 0)"
  r="$(/usr/bin/python3 - "$kd" "$hf" <<'PY'
import json, sys
k, h = json.loads(sys.argv[1]), json.loads(sys.argv[2])
kd, hf = k["mb"] / k["seconds"], h["mb"] / h["seconds"]
kdc, hfc = k["mb"] / k["cpu_seconds"], h["mb"] / h["cpu_seconds"]
print(f"{kd:.2f} {hf:.2f} {kd / hf:.2f} {k['load_seconds']:.3f} {h['load_seconds']:.3f} {k['mb']:.2f} "
      f"{kdc:.2f} {hfc:.2f} {kdc / hfc:.2f} {k['load_cpu_seconds']:.3f} {h['load_cpu_seconds']:.3f}")
PY
)"
  read -r kmb hmb ratio kload hload mb kmbc hmbc ratioc kloadc hloadc <<<"$r"
  echo "$t: $mb MB with offsets, one thread: kdstep $kmb MB/s, HF $hmb MB/s, ratio ${ratio}x (wall);" \
       "kdstep $kmbc MB/s, HF $hmbc MB/s, ratio ${ratioc}x (CPU time); load kdstep ${kload} s, HF ${hload} s" \
       "(wall), kdstep ${kloadc} s, HF ${hloadc} s (CPU)"
  json+="$sep\"${t}_kdstep_mb_s\": $kmb, \"${t}_hf_mb_s\": $hmb, \"${t}_ratio\": $ratio, \"${t}_cpu_ratio\": $ratioc"
  if [[ $t == qwen3 ]]; then
    json+=", \"qwen3_load_kdstep_s\": $kload, \"qwen3_load_hf_s\": $hload"
    json+=", \"qwen3_load_kdstep_cpu_s\": $kloadc, \"qwen3_load_hf_cpu_s\": $hloadc"
  fi
  sep=", "
done
echo "$json}"
