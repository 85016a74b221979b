#!/usr/bin/env bash
# Finding F of issue 21: `generate --force` removes only a folder kdstep made. On the old main
# `generate --force --out .` deleted the whole current folder, then failed.
#   - the current folder (or one above it) is never removed, whatever it holds;
#   - a folder without a dataset's meta.json (or a training run's trainer_state.json) is refused,
#     naming what it holds; a meta.json that is not a dataset's does not count;
#   - a dataset folder is still started over (the point of --force), and an empty one is used.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tools="$KD_SOURCE_DIR/configs/tools.json"
tmp=$(mktemp -d)
trap 'cd /; rm -rf "$tmp"' EXIT
nfail=0
problem() { echo "FAIL: $*" >&2; nfail=$((nfail + 1)); }
"$KDSTEP" prompts synth --tools "$tools" -n 3 --seed 7 -o "$tmp/p.jsonl" >/dev/null
gen() { "$KDSTEP" generate --prompts "$tmp/p.jsonl" --tokenizer-path "$tok" --tools "$tools" "$@"; }

# 1. --out . in a folder of the user's files
mkdir -p "$tmp/work/sub"
echo keep >"$tmp/work/notes.txt"
echo keep >"$tmp/work/sub/more.txt"
(cd "$tmp/work" && gen --force --out . >"$tmp/dot.log" 2>&1) && problem "--force --out .: exit 0"
[[ -f "$tmp/work/notes.txt" && -f "$tmp/work/sub/more.txt" ]] || problem "--force --out .: the user's files are gone"
grep -q "current folder or one above it" "$tmp/dot.log" || { problem "--force --out .: no reason given"; cat "$tmp/dot.log" >&2; }
# a parent of the current folder
(cd "$tmp/work/sub" && gen --force --out .. >"$tmp/dotdot.log" 2>&1) && problem "--force --out ..: exit 0"
[[ -f "$tmp/work/notes.txt" ]] || problem "--force --out ..: the user's files are gone"

# 2. a folder kdstep did not make
gen --force --out "$tmp/work" >"$tmp/other.log" 2>&1 && problem "--force on a foreign folder: exit 0"
[[ -f "$tmp/work/notes.txt" ]] || problem "--force on a foreign folder: its files are gone"
grep -q "work is not a folder kdstep made .*holds" "$tmp/other.log" || { problem "foreign folder: no reason"; cat "$tmp/other.log" >&2; }
mkdir -p "$tmp/fake"; echo '{}' >"$tmp/fake/meta.json"; echo keep >"$tmp/fake/data.csv"
gen --force --out "$tmp/fake" >"$tmp/fake.log" 2>&1 && problem "--force on a folder with a foreign meta.json: exit 0"
[[ -f "$tmp/fake/data.csv" ]] || problem "--force on a folder with a foreign meta.json: its files are gone"

# 3. what --force is for: a dataset folder starts over; an empty folder is used
gen --out "$tmp/ds" >/dev/null 2>&1 || problem "generate into a new folder failed"
gen --force --out "$tmp/ds" >"$tmp/ds.log" 2>&1 || { problem "--force on a dataset folder failed"; cat "$tmp/ds.log" >&2; }
mkdir -p "$tmp/empty"
gen --force --out "$tmp/empty" >/dev/null 2>&1 || problem "--force on an empty folder failed"

echo "force_safety: $nfail problems"
((nfail == 0))
