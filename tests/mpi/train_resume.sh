#!/usr/bin/env bash
# Resume is exact: a -np 2 run is SIGKILLed at a random step and resumed with --resume; its final
# weights are bitwise identical to an uninterrupted run. A SIGUSR1 writes a checkpoint and exits
# cleanly (status 75, a complete checkpoint named by `latest`), and --resume finishes that run too.
source "$(dirname "$0")/train_lib.bash"
tmp=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
make_data "$tmp" 120
steps=200  # long enough that a kill lands mid-run on a fast, quiet machine
common=($(tiny_flags) --train-data "$tmp/ds" --tokenizer-path "$tmp/tok" --set train.steps=$steps
        --set train.eval_every=6 --set train.checkpoint_every=4 --set train.micro_batch=2)
run() { mpirun --oversubscribe -np 2 "$KDSTEP" train "${common[@]}" "$@"; }

run --out "$tmp/ref" 2>"$tmp/ref.log" || { cat "$tmp/ref.log"; exit 1; }

# wait until the run has done `k` steps (metrics lines), then act on its rank processes by pid
wait_steps() { # metrics k mpirun-pid
  for _ in $(seq 1 600); do
    [[ -f "$1" ]] && (( $(wc -l <"$1") >= $2 )) && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# a resumed run DIR ends with the reference's weights, and its metrics continue the killed run's:
# one line per step, the same losses as the reference
same_as_ref() {
  cmp "$tmp/ref/final/model.safetensors" "$tmp/$1/final/model.safetensors"
  /usr/bin/python3 - "$tmp/ref/metrics.jsonl" "$tmp/$1/metrics.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]; b = [json.loads(l) for l in open(sys.argv[2])]
assert [x["step"] for x in b] == list(range(1, len(a) + 1)), [x["step"] for x in b]
assert all(x["loss"] == y["loss"] for x, y in zip(a, b)), "losses differ after resume"
PY
}

# --- SIGKILL at a random step, then resume
k=$(( (RANDOM % (steps / 2)) + 3 ))
echo "killing at step >= $k"
mpirun --oversubscribe -np 2 "$KDSTEP" train "${common[@]}" --out "$tmp/killed" 2>"$tmp/killed.log" &  # mpirun itself is $!
mp=$!; pids+=("$mp")
wait_steps "$tmp/killed/metrics.jsonl" "$k" "$mp" || { cat "$tmp/killed.log"; echo "run ended before step $k"; exit 1; }
ranks=$(pgrep -P "$mp" || true)
[[ -n "$ranks" ]] || { echo "no rank processes under mpirun $mp"; exit 1; }
for r in $ranks; do kill -9 "$r" 2>/dev/null || true; done
wait "$mp" 2>/dev/null || true
[[ ! -d "$tmp/killed/final" ]] || { echo "the killed run finished before the kill"; exit 1; }
echo "killed after $(wc -l <"$tmp/killed/metrics.jsonl") steps; latest = $(cat "$tmp/killed/checkpoints/latest"); steps logged: $(/usr/bin/python3 -c "import json,sys; print([json.loads(l)[\"step\"] for l in open(sys.argv[1])])" "$tmp/killed/metrics.jsonl")"
run --out "$tmp/killed" --resume 2>"$tmp/resume.log" || { cat "$tmp/resume.log"; exit 1; }
grep -q "resuming from" "$tmp/resume.log" || { cat "$tmp/resume.log"; echo "did not resume"; exit 1; }
same_as_ref killed
cmp "$tmp/ref/checkpoints/$(cat "$tmp/ref/checkpoints/latest")/optimizer.bin" "$tmp/killed/checkpoints/$(cat "$tmp/killed/checkpoints/latest")/optimizer.bin"
echo "SIGKILL + resume: bitwise identical"

# --- SIGKILL right after a checkpoint is committed (a test hook in the trainer): the step's metrics
# line must already be written, so the resumed run's metrics have every step exactly once
KD_DEBUG_KILL_AFTER_CHECKPOINT=12 mpirun --oversubscribe -np 2 "$KDSTEP" train "${common[@]}" --out "$tmp/ckill" 2>"$tmp/ckill.log" && {
  echo "the run was not killed after checkpoint 12"; exit 1; }
[[ "$(cat "$tmp/ckill/checkpoints/latest")" == step-000012 ]] || { cat "$tmp/ckill.log"; echo "latest is not step-000012"; exit 1; }
run --out "$tmp/ckill" --resume 2>"$tmp/ckill-resume.log" || { cat "$tmp/ckill-resume.log"; exit 1; }
same_as_ref ckill
echo "SIGKILL right after checkpoint 12: resumed, every step's metrics line once, bitwise identical"

# --- SIGUSR1: checkpoint at the next step boundary, exit 75
k=$(( (RANDOM % (steps / 2)) + 2 ))
mpirun --oversubscribe -np 2 "$KDSTEP" train "${common[@]}" --out "$tmp/usr1" 2>"$tmp/usr1.log" &
mp=$!; pids+=("$mp")
wait_steps "$tmp/usr1/metrics.jsonl" "$k" "$mp" || { cat "$tmp/usr1.log"; exit 1; }
r1=$(pgrep -P "$mp" | head -n 1)
[[ -n "$r1" ]] || { echo "no rank processes under mpirun $mp"; exit 1; }
kill -USR1 "$r1"
set +e; wait "$mp"; rc=$?; set -e
grep -q "stopped by signal 10" "$tmp/usr1.log" || { cat "$tmp/usr1.log"; echo "no clean stop message"; exit 1; }
(( rc == 75 )) || { cat "$tmp/usr1.log"; echo "exit status $rc, expected 75"; exit 1; }
latest=$(cat "$tmp/usr1/checkpoints/latest")
n=$(wc -l <"$tmp/usr1/metrics.jsonl")
[[ "$latest" == "$(printf 'step-%06d' "$n")" ]] || { echo "latest=$latest after $n steps"; exit 1; }
for f in model.safetensors config.json tokenizer.json trainer_state.json optimizer.bin; do
  [[ -s "$tmp/usr1/checkpoints/$latest/$f" ]] || { echo "missing $f"; exit 1; }
done
! ls "$tmp/usr1/checkpoints" | grep -q tmp || { echo "a temporary checkpoint folder was left"; exit 1; }
run --out "$tmp/usr1" --resume 2>"$tmp/usr1-resume.log" || { cat "$tmp/usr1-resume.log"; exit 1; }
cmp "$tmp/ref/final/model.safetensors" "$tmp/usr1/final/model.safetensors"
echo "SIGUSR1 at step $n: checkpoint $latest, exit 75, resume bitwise identical"
echo "train_resume: OK"
