#!/usr/bin/env bash
# Disk full during generation: on a small tmpfs that fills mid-run, `kdstep generate` stops with a
# clear error (exit 1, "disk is full"/ENOSPC naming a file under the folder, no crash), what it had
# sealed stays intact (no shard moved aside as corrupt, every sealed sample still there on resume),
# and after space is freed the rerun on the same --out completes with exactly the samples of an
# uninterrupted run: nothing lost, nothing duplicated (tests/lib/compare_datasets.py).
# Needs root to mount a tmpfs; exits 77 (skipped) where mounting is not permitted.
#   KD_DISKFULL_PROMPTS (default 240) and KD_DISKFULL_KB (default: two thirds of the full dataset) tune it.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tmp=$(mktemp -d)
mnt="$tmp/mnt"
mkdir -p "$mnt"
cleanup() { umount "$mnt" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
kd_tmp_mount_or_skip disk_full "$mnt"
tok=$(kd_student_tokenizer)
tools="$KD_SOURCE_DIR/configs/tools.json"
n=${KD_DISKFULL_PROMPTS:-240}
"$KDSTEP" prompts synth --tools "$tools" -n "$n" --seed 11 -o "$tmp/prompts.jsonl" >/dev/null
gen() { "$KDSTEP" generate --prompts "$tmp/prompts.jsonl" --tokenizer-path "$tok" --tools "$tools" --set generate.seal_every=8 "$@"; }

# the uninterrupted run, and how much room the whole dataset takes
gen --out "$tmp/ref" 2>"$tmp/ref.log" || { cat "$tmp/ref.log"; exit 1; }
full_kb=$(du -sk "$tmp/ref" | cut -f1)
kb=${KD_DISKFULL_KB:-$((full_kb * 2 / 3))}
((kb >= 64)) || kb=64
mount -t tmpfs -o size=${kb}k tmpfs "$mnt"
echo "disk_full: full dataset ${full_kb} KiB, tmpfs ${kb} KiB"

rc=0
gen --out "$mnt/ds" >"$tmp/full.log" 2>&1 || rc=$?
cat "$tmp/full.log" | tail -3
if ((rc == 0)); then echo "FAIL: generate succeeded on a ${kb} KiB filesystem (tune KD_DISKFULL_KB)"; exit 1; fi
if ((rc >= 128)); then echo "FAIL: generate crashed on a full disk (exit $rc)"; exit 1; fi
grep -qE "disk is full|No space left on device" "$tmp/full.log" || { echo "FAIL: the error does not say the disk is full"; exit 1; }
grep -qF "$mnt/ds" "$tmp/full.log" || { echo "FAIL: the error does not name the file"; exit 1; }
grep -qE "free some space|rerun|resume" "$tmp/full.log" || { echo "FAIL: the error does not say what to do"; exit 1; }

# what was sealed before the disk filled (journals are rewritten atomically, so they are whole)
sealed=$(cat "$mnt"/ds/shard-*.journal 2>/dev/null | /usr/bin/python3 -c "import sys,json; print(sum(json.loads(l)['samples'] for l in sys.stdin if l.strip()))")
echo "disk_full: exit $rc with $sealed samples sealed"

# free space, rerun on the same folder
mount -o remount,size=64m "$mnt"
gen --out "$mnt/ds" >"$tmp/resume.log" 2>&1 || { echo "FAIL: rerun after freeing space"; cat "$tmp/resume.log"; exit 1; }
if ls "$mnt"/ds/*.corrupt >/dev/null 2>&1; then echo "FAIL: a sealed shard was damaged: $(ls "$mnt"/ds/*.corrupt)"; cat "$tmp/resume.log"; exit 1; fi
if ((sealed > 0)); then
  grep -qE "resuming .*: [0-9]+ prompts already done" "$tmp/resume.log" || { echo "FAIL: rerun did not resume"; cat "$tmp/resume.log"; exit 1; }
fi
/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$mnt/ds" "$tmp/ref"
/usr/bin/python3 - "$mnt/ds" "$tmp/ref" "$sealed" <<'EOF'
import sys, json, h5py
a, b, sealed = sys.argv[1], sys.argv[2], int(sys.argv[3])
ids = lambda d: sorted(int(x) for x in h5py.File(d + "/dataset.h5", "r")["samples/prompt_id"][:])
fails = lambda d: sorted(json.loads(l)["prompt_index"] for l in open(d + "/failures.jsonl") if l.strip())
ia, ib = ids(a), ids(b)
assert ia == ib, f"samples differ: {len(ia)} vs {len(ib)}"
assert len(set(ia)) == len(ia), "duplicated samples"
fa, fb = fails(a), fails(b)
assert sorted(set(fa)) == fb, f"failures differ: {fa} vs {fb}"
assert len(set(fa)) == len(fa), f"failures duplicated: {fa}"
assert sealed <= len(ia)
print(f"disk_full: {len(ia)} samples + {len(fb)} failures after resume, same as the uninterrupted run; 0 lost, 0 duplicated")
EOF
