#!/usr/bin/env bash
# Disk full during training: the run folder is on a small tmpfs that fills while checkpoints are
# written. `kdstep train` stops with a clear error (no crash), `checkpoints/latest` names a complete
# checkpoint (every file present and loadable, no half-written folder under a real name), and after
# space is freed `--resume` finishes with final weights bitwise identical to an uninterrupted run.
# Needs root to mount a tmpfs; exits 77 (skipped) where mounting is not permitted.
source "$KD_SOURCE_DIR/tests/mpi/train_lib.bash"
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tmp=$(mktemp -d)
mnt="$tmp/mnt"
mkdir -p "$mnt"
cleanup() { umount "$mnt" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
kd_tmp_mount_or_skip disk_full_train "$mnt"
make_data "$tmp" 60
common=($(tiny_flags) --train-data "$tmp/ds" --tokenizer-path "$tmp/tok" --set train.steps=12 --set train.checkpoint_every=2
        --set train.micro_batch=2 --set train.eval_every=4)
"$KDSTEP" train "${common[@]}" --out "$tmp/ref" 2>"$tmp/ref.log" || { cat "$tmp/ref.log"; exit 1; }
ckpt_kb=$(du -sk "$tmp/ref/checkpoints/step-000002" | cut -f1)
kb=$((ckpt_kb * 5 / 2))   # room for two checkpoints and the metrics, not a third
mount -t tmpfs -o size=${kb}k tmpfs "$mnt"
echo "disk_full_train: a checkpoint is ${ckpt_kb} KiB, tmpfs ${kb} KiB"

set +e
"$KDSTEP" train "${common[@]}" --out "$mnt/run" >"$tmp/full.log" 2>&1
rc=$?
set -e
tail -3 "$tmp/full.log"
((rc != 0)) || { echo "FAIL: training succeeded on a ${kb} KiB filesystem"; exit 1; }
((rc < 128)) || { echo "FAIL: training crashed on a full disk (exit $rc)"; exit 1; }
grep -qE "disk is full|No space left on device" "$tmp/full.log" || { echo "FAIL: the error does not say the disk is full"; exit 1; }
grep -qF "$mnt/run" "$tmp/full.log" || { echo "FAIL: the error does not name the path"; exit 1; }
latest=$(cat "$mnt/run/checkpoints/latest")
for f in model.safetensors config.json tokenizer.json trainer_state.json optimizer.bin; do
  [[ -s "$mnt/run/checkpoints/$latest/$f" ]] || { echo "FAIL: latest ($latest) lacks $f"; exit 1; }
done
cmp "$mnt/run/checkpoints/$latest/model.safetensors" "$tmp/ref/checkpoints/$latest/model.safetensors" ||
  { echo "FAIL: the last good checkpoint $latest differs from the reference's"; exit 1; }
for d in "$mnt"/run/checkpoints/step-*; do
  [[ -s "$d/model.safetensors" && -s "$d/trainer_state.json" ]] || { echo "FAIL: incomplete checkpoint under a real name: $d"; exit 1; }
done
echo "disk_full_train: exit $rc, latest = $latest (complete, identical to the reference's)"

mount -o remount,size=64m "$mnt"
"$KDSTEP" train "${common[@]}" --out "$mnt/run" --resume >"$tmp/resume.log" 2>&1 || { echo "FAIL: resume"; cat "$tmp/resume.log"; exit 1; }
cmp "$tmp/ref/final/model.safetensors" "$mnt/run/final/model.safetensors"
/usr/bin/python3 - "$tmp/ref/metrics.jsonl" "$mnt/run/metrics.jsonl" <<'PY'
import json, sys
a = [json.loads(l)["step"] for l in open(sys.argv[1])]; b = [json.loads(l)["step"] for l in open(sys.argv[2])]
assert a == b, f"steps after resume {b} != {a}"
PY
echo "disk_full_train: resumed from $latest after freeing space; final weights bitwise identical, every step logged once"
