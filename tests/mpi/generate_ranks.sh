#!/usr/bin/env bash
# The same 500 synthesized prompts with the stub teacher at -np 1, 2 and 4: as sets keyed by prompt id
# the datasets are identical, every prompt is there exactly once, and the tool-name masks decode to
# the tool names the teacher called.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=${KD_TEST_PROMPTS:-500}
[[ -n "${KD_TEST_QUICK:-}" ]] && n=60
"$KDSTEP" prompts synth --tools "$KD_SOURCE_DIR/configs/tools.json" -n "$n" --seed 7 -o "$tmp/prompts.jsonl" >/dev/null
for np in 1 2 4; do
  kd_mpirun "$np" "$KDSTEP" generate --prompts "$tmp/prompts.jsonl" --out "$tmp/ds$np" --tokenizer-path "$tok" \
    --tools "$KD_SOURCE_DIR/configs/tools.json" 2>"$tmp/log$np" || { cat "$tmp/log$np"; exit 1; }
done
/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$tmp/ds1" "$tmp/ds2" "$tmp/ds4"
/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/check_tool_masks.py" "$tmp/ds2" "$n" "$tok/tokenizer.json"
