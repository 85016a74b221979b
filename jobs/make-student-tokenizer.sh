#!/bin/bash
# Make the default student tokenizer when it is missing: a byte-level BPE trained by
# `kdstep tokenizer train` on the deterministic synthetic tool-use corpus of `kdstep tokenizer corpus`
# (conversations over configs/tools.json in Qwen3's chat template, prose, code, JSON, a dozen scripts),
# plus any text files given. Same inputs, same tokenizer.json, byte for byte.
#   jobs/make-student-tokenizer.sh [--vocab-size N] [--mb MB] [--out DIR] [--tools FILE] [--force] [EXTRA_TEXT_FILE...]
# Defaults: 8192 ids, 20 MB of corpus, models/student/tokenizer, configs/tools.json. Takes a few seconds of CPU.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KDSTEP=${KDSTEP:-$root/build/kdstep}
vocab=8192 mb=20 out=$root/models/student/tokenizer force=0 extra=() tools=$root/configs/tools.json
while [ $# -gt 0 ]; do
  case "$1" in
    --vocab-size) vocab=$2; shift 2 ;;
    --mb) mb=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tools) tools=$2; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "make-student-tokenizer: unknown flag $1" >&2; exit 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
if [ -s "$out/tokenizer.json" ] && [ "$force" = 0 ]; then
  echo "make-student-tokenizer: $out/tokenizer.json exists (--force to retrain)"; exit 0
fi
[ -x "$KDSTEP" ] || { echo "make-student-tokenizer: $KDSTEP is not built (cmake --build build)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$KDSTEP" tokenizer corpus --tools "$tools" --mb "$mb" --seed 1 -o "$tmp/corpus.txt"
"$KDSTEP" tokenizer train --quiet --vocab-size "$vocab" -o "$out" "$tmp/corpus.txt" ${extra[@]+"${extra[@]}"}
echo "make-student-tokenizer: wrote $out/tokenizer.json ($(sha256sum "$out/tokenizer.json" | cut -c1-16)...)"
