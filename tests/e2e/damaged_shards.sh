#!/usr/bin/env bash
# Finding A of issue 21: a damaged shard never trains as zeros. On the old main an emptied or
# truncated shard-00000.h5 let `inspect`, `export` and `train` exit 0 (HDF5's virtual datasets read a
# source they cannot open as zeros; only a missing shard was checked) and train ran at loss 0.
# Now every reader checks each mapped shard first (sealed, the right length, its rows hashing to the
# SHA-256 recorded when it was sealed) and refuses a damaged one, naming it and how to redo it;
# `generate --merge` refuses a slice whose shard was changed; and rerunning generate into the folder
# redoes the damaged shard's prompts, giving the same dataset as before.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tools="$KD_SOURCE_DIR/configs/tools.json"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nfail=0
problem() { echo "FAIL: $*" >&2; nfail=$((nfail + 1)); }
"$KDSTEP" prompts synth --tools "$tools" -n 6 --seed 3 -o "$tmp/p.jsonl" >/dev/null
gen() { "$KDSTEP" generate --prompts "$tmp/p.jsonl" --tokenizer-path "$tok" --tools "$tools" "$@"; }
gen --out "$tmp/ref" >/dev/null 2>&1 || { echo "FAIL: generate"; exit 1; }
TRAIN=("$KDSTEP" train --config "$KD_SOURCE_DIR/configs/process_supervision.yaml" --set model.preset=tiny
       --set train.seq_len=128 --set train.steps=2 --set train.micro_batch=2 --set train.warmup_steps=1 --tokenizer-path "$tok")

# refused NAME DS: inspect, export and train all exit 1 naming the shard and how to redo it; train
# runs no step
refused() {
  local name=$1 ds=$2
  local re="damaged shard: .*$name/shard-00000.h5: $3.*Redo it: rerun .kdstep generate. with the same inputs into"
  local rc=0
  "$KDSTEP" inspect "$ds" >"$tmp/$name.inspect" 2>&1 || rc=$?
  [[ $rc == 1 ]] && grep -qE "$re" "$tmp/$name.inspect" || { problem "$name: inspect exit $rc: $(tail -2 "$tmp/$name.inspect")"; }
  rc=0
  "$KDSTEP" export "$ds" -o "$tmp/$name.jsonl" >"$tmp/$name.export" 2>&1 || rc=$?
  [[ $rc == 1 ]] && grep -qE "$re" "$tmp/$name.export" || { problem "$name: export exit $rc: $(tail -2 "$tmp/$name.export")"; }
  rc=0
  "${TRAIN[@]}" --train-data "$ds" --out "$tmp/$name.run" >"$tmp/$name.train" 2>&1 || rc=$?
  [[ $rc == 1 ]] && grep -qE "$re" "$tmp/$name.train" || { problem "$name: train exit $rc: $(tail -2 "$tmp/$name.train")"; }
  [[ ! -s "$tmp/$name.run/metrics.jsonl" ]] || problem "$name: train ran steps on a damaged shard"
}

# 1. emptied
cp -r "$tmp/ref" "$tmp/empty"; : >"$tmp/empty/shard-00000.h5"
refused empty "$tmp/empty" "cannot be opened as HDF5"
# 2. truncated
cp -r "$tmp/ref" "$tmp/trunc"; truncate -s $(($(stat -c %s "$tmp/ref/shard-00000.h5") / 2)) "$tmp/trunc/shard-00000.h5"
refused trunc "$tmp/trunc" "cannot be opened as HDF5"
# 3. a value changed in place: still valid HDF5 of the right length; only the checksum tells
cp -r "$tmp/ref" "$tmp/edited"
/usr/bin/python3 -c "
import h5py, sys
with h5py.File(sys.argv[1], 'r+') as f:
    d = f['tokens/input_ids']; d[3] = d[3] + 1" "$tmp/edited/shard-00000.h5"
refused edited "$tmp/edited" "its rows do not match the checksum recorded when it was sealed"
# 4. another dataset's (valid, sealed) shard put in its place
gen --out "$tmp/other" --set teacher.seed=9 >/dev/null 2>&1 || problem "generate (other) failed"
cp -r "$tmp/ref" "$tmp/swapped"; cp "$tmp/other/shard-00000.h5" "$tmp/swapped/shard-00000.h5"
refused swapped "$tmp/swapped" "(is not the shard this dataset was made from|holds [0-9]+ tokens, [0-9]+ were sealed)"

# 5. merge: a slice whose shard was changed is refused, naming the slice
mkdir -p "$tmp/slice"; cp "$tmp/edited/meta.json" "$tmp/edited/shard-00000.journal" "$tmp/edited/shard-00000.h5" "$tmp/slice/"
rc=0; "$KDSTEP" generate --merge --out "$tmp/merged" "$tmp/slice" >"$tmp/merge.out" 2>&1 || rc=$?
[[ $rc == 1 ]] && grep -q "do not match the checksum" "$tmp/merge.out" && grep -q "slice .*slice: 6 of its 6 sealed samples are in damaged shards" "$tmp/merge.out" ||
  problem "merge of a changed slice: exit $rc: $(tail -3 "$tmp/merge.out")"

# 6. redo: generate into the same folder moves the damaged shard aside and makes its samples again
for name in empty edited; do
  gen --out "$tmp/$name" >"$tmp/$name.redo" 2>&1 || { problem "$name: rerun of generate failed"; tail -3 "$tmp/$name.redo" >&2; continue; }
  grep -q "moving it to .*shard-00000.h5.corrupt" "$tmp/$name.redo" || problem "$name: the rerun did not move the damaged shard aside"
  "$KDSTEP" inspect "$tmp/$name" >/dev/null 2>&1 || problem "$name: inspect still refuses after the rerun"
  /usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$tmp/$name" "$tmp/ref" >/dev/null || problem "$name: the redone dataset differs"
done
# a healthy dataset still reads (positive control)
"$KDSTEP" inspect "$tmp/ref" >/dev/null 2>&1 || problem "the reference dataset is refused"

echo "damaged_shards: $nfail problems"
((nfail == 0))
