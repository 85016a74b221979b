#!/usr/bin/env bash
# Regenerate tests/reference/golden/tokenizer-*.hashes: Hugging Face tokenizers (official node
# binding, tests/.cache) encodes the parity corpus and the ../shared/data strings; we keep one short
# hash per document. Slow (HF runs at ~1-2 MB/s); tokenizer_parity.sh compares kdstep against these.
set -euo pipefail
# It lives beside the tests, so ctest finds it; it is a tool, not a test: skip under ctest.
if [[ -n "${KD_BUILD_DIR:-}" && -z "${KDSTEP_REGEN_GOLDENS:-}" ]]; then
  echo "skip: regenerates the goldens (run it directly, or set KDSTEP_REGEN_GOLDENS=1)"; exit 77
fi
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="$(bash "$src/tests/fetch-tokenizers.sh")"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
/usr/bin/python3 "$src/tests/reference/make_corpus.py" "$work/corpus.jsonl"
/usr/bin/python3 "$src/tests/reference/shared_strings.py" "$src/../shared/data" "$work/shared.jsonl"
for t in qwen3 llama3 gpt2; do
  for part in corpus shared; do
    node "$src/tests/reference/hf_encode.js" "$cache/node/node_modules" "$cache/tokenizers/$t/tokenizer.json" \
      "$work/$part.jsonl" 0 >"$work/hf-$t-$part.jsonl"
    /usr/bin/python3 "$src/tests/reference/hash_lines.py" write "$work/hf-$t-$part.jsonl" "$work/$part.jsonl" \
      >"$src/tests/reference/golden/tokenizer-$t-$part.hashes"
  done
done
echo "goldens written to $src/tests/reference/golden (HF outputs in $work)"
