#!/usr/bin/env bash
# Training rows of the fault matrix (called by tests/reliability/fault_matrix.sh; prints Markdown rows):
# SIGKILL of one training rank (mpirun -np 2) and SIGUSR1 preemption, each at a random step, then
# `kdstep train --resume`; and a disk that fills while checkpoints are written (tests/e2e/disk_full_train.sh).
# Lost = steps missing from metrics.jsonl after the resume, duplicated = steps logged twice; the
# check also requires final weights bitwise identical to an uninterrupted run.
source "$KD_SOURCE_DIR/tests/mpi/train_lib.bash"
tmp=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
make_data "$tmp" 120
steps=24
common=($(tiny_flags) --train-data "$tmp/ds" --tokenizer-path "$tmp/tok" --set train.steps=$steps
        --set train.eval_every=6 --set train.checkpoint_every=4 --set train.micro_batch=2)
run() { mpirun --allow-run-as-root --oversubscribe -np 2 "$KDSTEP" train "${common[@]}" "$@"; }
run --out "$tmp/ref" 2>"$tmp/ref.log" || { cat "$tmp/ref.log" >&2; exit 1; }

wait_steps() { # metrics k mpirun-pid
  for _ in $(seq 1 600); do
    [[ -f "$1" ]] && (( $(wc -l <"$1") >= $2 )) && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
rank_pid() { # run folder, rank
  local p
  for p in $(pgrep -f -- "--out $1\$" || true); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return; }
  done
}
judge() { # run folder -> "lost dup ok|FAIL"
  local same=ok
  cmp -s "$tmp/ref/final/model.safetensors" "$1/final/model.safetensors" || same=FAIL
  /usr/bin/python3 - "$1/metrics.jsonl" "$steps" "$same" <<'PY'
import json, sys
s = [json.loads(l)["step"] for l in open(sys.argv[1])]
n = int(sys.argv[2])
lost = len(set(range(1, n + 1)) - set(s)); dup = len(s) - len(set(s))
print(lost, dup, sys.argv[3] if lost == 0 and dup == 0 else "FAIL")
PY
}

# SIGKILL of rank 1 only
k=$(( (RANDOM % (steps - 6)) + 3 ))
out="$tmp/killed"
run --out "$out" 2>"$tmp/killed.log" &
mp=$!; pids+=("$mp")
wait_steps "$out/metrics.jsonl" "$k" "$mp" || { echo "| SIGKILL of a training rank | - | run ended early | ? | ? | FAIL |"; exit 0; }
pid=$(rank_pid "$out" 1)
[[ -n "$pid" ]] && kill -9 "$pid"
rc=0; wait "$mp" 2>/dev/null || rc=$?
at=$(wc -l <"$out/metrics.jsonl"); latest=$(cat "$out/checkpoints/latest")
run --out "$out" --resume 2>"$tmp/resume.log" || cat "$tmp/resume.log" >&2
read -r lost dup verdict < <(judge "$out")
echo "| SIGKILL of a training rank (rank 1 of 2) | step $at of $steps | job exited $rc; resumed from $latest, redid $((at - 10#${latest#step-})) steps; final weights bitwise equal | $lost | $dup | $verdict |"

# SIGUSR1 preemption
k=$(( (RANDOM % (steps - 8)) + 2 ))
out="$tmp/usr1"
run --out "$out" 2>"$tmp/usr1.log" &
mp=$!; pids+=("$mp")
wait_steps "$out/metrics.jsonl" "$k" "$mp" || { echo "| SIGUSR1 preemption (trainer) | - | run ended early | ? | ? | FAIL |"; exit 0; }
pid=$(rank_pid "$out" 0)
[[ -n "$pid" ]] && kill -USR1 "$pid"
rc=0; wait "$mp" 2>/dev/null || rc=$?
at=$(wc -l <"$out/metrics.jsonl"); latest=$(cat "$out/checkpoints/latest")
run --out "$out" --resume 2>"$tmp/usr1-resume.log" || cat "$tmp/usr1-resume.log" >&2
read -r lost dup verdict < <(judge "$out")
((rc == 75)) || verdict=FAIL
echo "| SIGUSR1 preemption (trainer) | step $at of $steps | exit $rc (75 expected) with checkpoint $latest; --resume; final weights bitwise equal | $lost | $dup | $verdict |"

# disk full while checkpointing
if o=$(bash "$KD_SOURCE_DIR/tests/e2e/disk_full_train.sh" 2>&1); then
  l=$(echo "$o" | grep -o 'latest = step-[0-9]*' | head -1 || true)
  sz=$(echo "$o" | grep -o 'tmpfs [0-9]* KiB' | head -1 || true)
  echo "| disk full (trainer checkpoints) | $sz | stopped with 'No space left on device', $l complete; --resume; final weights bitwise equal | 0 | 0 | ok |"
elif [[ $? -eq 77 ]]; then
  echo "| disk full (trainer checkpoints) | - | skipped: mounting a tmpfs needs root | - | - | skipped |"
else
  echo "$o" >&2
  echo "| disk full (trainer checkpoints) | tmpfs | $(echo "$o" | grep FAIL | head -1) | ? | ? | FAIL |"
fi
