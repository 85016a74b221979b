#!/usr/bin/env bash
# Resume rules of `kdstep generate`: rerunning a finished folder does nothing twice; a folder made with
# another tokenizer, registry or config is refused with a message naming the field and the fix;
# --force starts over; --no-process-supervision writes only loss_mask; a bad prompt line is recorded
# in failures.jsonl with its line number (and is fatal with --strict).
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
tools="$KD_SOURCE_DIR/configs/tools.json"
"$KDSTEP" prompts synth --tools "$tools" -n 30 --seed 3 -o "$tmp/p.jsonl" >/dev/null
g() { "$KDSTEP" generate --prompts "$tmp/p.jsonl" --tokenizer-path "$tok" --tools "$tools" "$@"; }
g --out "$tmp/ds" 2>"$tmp/1.log"
grep -q "30 samples and 0 failures" "$tmp/1.log" || { cat "$tmp/1.log"; exit 1; }
g --out "$tmp/ds" 2>"$tmp/2.log"
grep -q "0 samples and 0 failures in .* (30 prompts were already done)" "$tmp/2.log" || { echo "rerun redid work"; cat "$tmp/2.log"; exit 1; }
echo "ok   a finished folder is not redone"
if g --out "$tmp/ds" --set teacher.seed=99 2>"$tmp/3.log"; then echo "FAIL: a config change was accepted"; exit 1; fi
grep -q "cannot resume into $tmp/ds: .*config.*(use a new --out folder, or --force to start over)" "$tmp/3.log" || { cat "$tmp/3.log"; exit 1; }
echo "ok   another config is refused: $(grep -o 'cannot resume.*' "$tmp/3.log" | head -c 160)"
"$KDSTEP" tokenizer train --vocab-size 600 --quiet -o "$tmp/tok2" "$KD_SOURCE_DIR/README.md" >/dev/null
if "$KDSTEP" generate --prompts "$tmp/p.jsonl" --tokenizer-path "$tmp/tok2" --tools "$tools" --out "$tmp/ds" 2>"$tmp/4.log"; then
  echo "FAIL: another tokenizer was accepted"; exit 1; fi
grep -q "cannot resume into $tmp/ds: .*tokenizer" "$tmp/4.log" || { cat "$tmp/4.log"; exit 1; }
echo "ok   another tokenizer is refused"
g --out "$tmp/ds" --set teacher.seed=99 --force 2>"$tmp/5.log"
grep -q "30 samples and 0 failures" "$tmp/5.log" || { cat "$tmp/5.log"; exit 1; }
echo "ok   --force starts over"
g --out "$tmp/nops" --no-process-supervision 2>/dev/null
/usr/bin/python3 - "$tmp/nops" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1] + "/dataset.h5", "r") as f:
    assert f.attrs["process_supervision"] == 0
    assert f["tokens/loss_mask"][:].sum() > 0
    for m in ("tool_name_mask", "json_mask", "integration_mask"):
        assert f["tokens/" + m][:].sum() == 0, m
print("ok   --no-process-supervision writes only loss_mask")
PY
{ head -n 5 "$tmp/p.jsonl"; echo '{"id": "broken", "prompt": '; tail -n +6 "$tmp/p.jsonl"; } >"$tmp/bad.jsonl"
"$KDSTEP" generate --prompts "$tmp/bad.jsonl" --tokenizer-path "$tok" --tools "$tools" --out "$tmp/bad" 2>"$tmp/6.log"
grep -q '"line":6' "$tmp/bad/failures.jsonl" || { cat "$tmp/bad/failures.jsonl"; exit 1; }
grep -q "30 samples and 1 failures" "$tmp/6.log" || { cat "$tmp/6.log"; exit 1; }
echo "ok   a broken line is recorded with its line number: $(head -c 200 "$tmp/bad/failures.jsonl")"
if "$KDSTEP" generate --prompts "$tmp/bad.jsonl" --tokenizer-path "$tok" --tools "$tools" --out "$tmp/strict" --strict 2>"$tmp/7.log"; then
  echo "FAIL: --strict accepted a broken line"; exit 1; fi
grep -q "bad.jsonl:6: .*--strict" "$tmp/7.log" || { cat "$tmp/7.log"; exit 1; }
echo "ok   --strict makes it fatal"
