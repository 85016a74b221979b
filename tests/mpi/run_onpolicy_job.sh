#!/usr/bin/env bash
# The on-policy job (jobs/onpolicy.yaml's shape, tiny sizes): `kdstep run` with onpolicy.rounds 1 trains,
# regenerates the prompt set with generate.policy mixed (the student being train/final) into
# onpolicy-1/dataset, trains from those weights into onpolicy-1/train and evaluates that final/.
# Killed (SIGKILL, 2 ranks) while the round's generation is under way and rerun, it ends with the same
# round dataset (compare_datasets.py) and the same final weights, byte for byte, as an uninterrupted run.
set -euo pipefail
[[ "${KD_TEST_QUICK:-0}" == 1 ]] && { echo "skip: KD_TEST_QUICK=1"; exit 77; }
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
command -v mpirun >/dev/null || { echo "skip: mpirun missing"; exit 77; }
export OMP_NUM_THREADS=1 KDSTEP_THREADS=1 KDSTEP_PROGRESS_INTERVAL=1000
tok=$(kd_student_tokenizer)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
job_file() { # NAME
  cat >"$tmp/$1.yaml" <<YAML
job:
  name: $1
  workdir: $tmp/$1
  ranks: 2
prompts:
  synth_count: 40
  synth_seed: 3
  heldout_count: 6
  heldout_seed: 4
tools: $KD_SOURCE_DIR/configs/tools.json
tokenizer: $tok
config: $KD_SOURCE_DIR/configs/process_supervision.yaml
onpolicy:
  rounds: 1
  steps: 3
overrides:
  - model.preset=tiny
  - train.micro_batch=2
  - train.seq_len=192
  - train.prompt_window=96
  - train.steps=4
  - train.warmup_steps=1
  - train.eval_every=0
  - train.checkpoint_every=2
  - generate.seal_every=4
  - generate.chunk_size=2
  - teacher.max_in_flight=2
  - generate.student_share=0.5
  - generate.student_max_tokens=48
  - eval.max_new_tokens=16
YAML
}
job_file ref
kd_mpirun 2 "$KDSTEP" run "$tmp/ref.yaml" >"$tmp/ref.log" 2>&1 || { tail -30 "$tmp/ref.log"; exit 1; }
for f in train/final/model.safetensors onpolicy-1/dataset/dataset.h5 onpolicy-1/train/final/model.safetensors eval/report.json; do
  [[ -s "$tmp/ref/$f" ]] || { echo "FAIL: the job wrote no $f"; exit 1; }
done
grep -q "on-policy round 1: generate with $tmp/ref/train/final" "$tmp/ref.log" || { echo "FAIL: the round did not use train/final"; exit 1; }
st=$(/usr/bin/python3 -c "import h5py,sys; print(int(h5py.File(sys.argv[1])['samples/policy'][:].sum()))" "$tmp/ref/onpolicy-1/dataset/dataset.h5")
[[ $st -gt 0 && $st -lt 40 ]] || { echo "FAIL: $st student-written samples in the round's dataset"; exit 1; }
echo "ok   the job ran: train, the on-policy round ($st of 40 samples student-written), eval of onpolicy-1/train/final"
cmp -s "$tmp/ref/train/final/model.safetensors" "$tmp/ref/onpolicy-1/train/final/model.safetensors" && { echo "FAIL: the round did not train"; exit 1; }

job_file crash
kd_mpirun 2 "$KDSTEP" run "$tmp/crash.yaml" >"$tmp/crash1.log" 2>&1 &
pid=$!
for _ in $(seq 3000); do
  cat "$tmp"/crash/onpolicy-1/dataset/shard-*.journal 2>/dev/null | grep -q '"samples": [1-9]' && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
if kill -0 "$pid" 2>/dev/null; then
  for p in $(pgrep -f "kdstep run $tmp/crash.yaml" || true); do [[ $p != "$pid" ]] && kill -9 "$p" 2>/dev/null || true; done
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null && { echo "FAIL: the run survived SIGKILL"; exit 1; } || true
  [[ ! -e "$tmp/crash/onpolicy-1/dataset/COMPLETE" ]] || { echo "FAIL: the killed round was marked complete"; exit 1; }
  echo "ok   killed during the round's generation: $(cat "$tmp"/crash/onpolicy-1/dataset/shard-*.journal | tr '\n' ' ')"
else
  wait "$pid" || { tail -30 "$tmp/crash1.log"; exit 1; }
  echo "(the job finished before the kill: the rerun below finds everything done)"
fi
kd_mpirun 2 "$KDSTEP" run "$tmp/crash.yaml" >"$tmp/crash2.log" 2>&1 || { tail -30 "$tmp/crash2.log"; exit 1; }
/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$tmp/ref/onpolicy-1/dataset" "$tmp/crash/onpolicy-1/dataset"
cmp "$tmp/ref/train/final/model.safetensors" "$tmp/crash/train/final/model.safetensors"
cmp "$tmp/ref/onpolicy-1/train/final/model.safetensors" "$tmp/crash/onpolicy-1/train/final/model.safetensors" \
  || { echo "FAIL: the resumed job's final weights differ"; exit 1; }
echo "ok   the resumed job's round dataset and final weights equal the uninterrupted run's"
