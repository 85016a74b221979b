#!/usr/bin/env bash
# The fault matrix: every fault kdstep claims to survive, injected into a real run, one row each:
# fault | rate or moment | what it hit | lost | duplicated | check. A row passes when the finished
# dataset holds exactly the prompts of an uninterrupted run with the same settings (as sets keyed by
# prompt id, every array and text identical: tests/lib/compare_datasets.py), none twice.
# Teacher faults go through `kdstep teacher serve` (the stub as an OpenAI server) and
# `kdstep generate --teacher http://127.0.0.1:PORT`; kills use mpirun -np 2 and a rerun on the
# same --out. Not part of the default test run (about 3-5 minutes on 2 cores).
#   tests/reliability/fault_matrix.sh [--markdown FILE]   (build first: tests/run.sh or jobs/setup.sh)
# Exits 1 when any row lost or duplicated a prompt, or a check failed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export KD_SOURCE_DIR="${KD_SOURCE_DIR:-$root}" KD_BUILD_DIR="${KD_BUILD_DIR:-$root/build}"
export KDSTEP="${KDSTEP:-$KD_BUILD_DIR/kdstep}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
md=""
[[ "${1:-}" == --markdown ]] && md=$2
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tools="$KD_SOURCE_DIR/configs/tools.json"
tmp=$(mktemp -d)
SPID=""
cleanup() { [[ -n "$SPID" ]] && kill "$SPID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
n=${KD_FAULT_PROMPTS:-80}
"$KDSTEP" prompts synth --tools "$tools" -n "$n" --seed 21 -o "$tmp/prompts.jsonl" >/dev/null
# The same client settings in every run (they are part of the dataset's config hash): quick retries,
# a 3 s timeout so stalls are cut, small seals so a kill lands between seals.
SETS=(--set teacher.max_retries=12 --set teacher.backoff_base_s=0.02 --set teacher.timeout_s=3 --set generate.seal_every=4
      --set generate.chunk_size=4)
gen() { "$KDSTEP" generate --prompts "$tmp/prompts.jsonl" --tokenizer-path "$tok" --tools "$tools" "${SETS[@]}" "$@"; }

serve() { # fault flags... -> PORT, SPID
  "$KDSTEP" teacher serve --port 0 --tokenizer "$tok" --tools "$tools" "$@" >"$tmp/srv.out" 2>"$tmp/srv.err" &
  SPID=$!
  for _ in $(seq 100); do grep -q listening "$tmp/srv.out" 2>/dev/null && break; sleep 0.1; done
  PORT=$(grep -o '127.0.0.1:[0-9]*' "$tmp/srv.out" | head -1 | cut -d: -f2)
  [[ -n "$PORT" ]] || { echo "fault_matrix: teacher serve did not start"; cat "$tmp/srv.err"; exit 1; }
}
server_stat() { curl -s "127.0.0.1:$PORT/stats" | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
unserve() { kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; SPID=""; }

# lost/duplicated of DIR against the reference; prints "lost dup ok|FAIL"
judge() {
  /usr/bin/python3 - "$1" "$tmp/ref" "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" <<'EOF'
import sys, json, h5py, subprocess
d, ref, cmp = sys.argv[1:4]
def ids(x):
    s = [int(i) for i in h5py.File(x + "/dataset.h5", "r")["samples/prompt_id"][:]]
    f = [json.loads(l)["prompt_index"] for l in open(x + "/failures.jsonl") if l.strip()]
    return s, f
s, f = ids(d)
rs, rf = ids(ref)
done = s + f
lost = len(set(rs + rf) - set(done))
dup = len(done) - len(set(done))
same = subprocess.run([sys.executable, cmp, d, ref], capture_output=True).returncode == 0
print(lost, dup, "ok" if same and lost == 0 and dup == 0 and sorted(set(f)) == sorted(rf) else "FAIL")
EOF
}

rows=() fails=0
row() { # fault, rate/moment, hit, dir
  read -r lost dup verdict < <(judge "$4")
  [[ "$verdict" == ok ]] || fails=$((fails + 1))
  rows+=("| $1 | $2 | $3 | $lost | $dup | $verdict |")
  echo "fault_matrix: $1 | $2 | $3 | lost $lost | dup $dup | $verdict" >&2
}

# ---- reference: the same prompts through the fault-free server ------------------------------------
serve
gen --teacher "http://127.0.0.1:$PORT" --out "$tmp/ref" 2>"$tmp/ref.log" || { cat "$tmp/ref.log"; exit 1; }
unserve

# ---- teacher faults ---------------------------------------------------------------------------------
teacher_row() { # name flag rate counter
  serve "$2" "$3" ${5:-}
  gen --teacher "http://127.0.0.1:$PORT" --out "$tmp/$1" 2>"$tmp/$1.log" || { cat "$tmp/$1.log" >&2; }
  local hit
  hit=$(server_stat "$4")
  unserve
  local retries
  retries=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('retries','?'))" "$tmp/$1/stats.json" 2>/dev/null || echo "?")
  row "teacher $1" "$3 of requests" "$hit requests ($retries retries)" "$tmp/$1"
}
if [[ "${KD_FAULT_SKIP_TEACHER:-0}" != 1 ]]; then
  teacher_row "HTTP 500" --fail-rate 0.2 fail
  teacher_row "HTTP 429 (Retry-After 1 s)" --rate-limit 0.2 rate_limited "--retry-after 1"
  teacher_row "stall (no answer)" --stall-rate 0.05 stalled
  teacher_row "dropped connection" --drop-rate 0.2 dropped
  teacher_row "truncated body" --truncate-rate 0.2 truncated
  teacher_row "malformed JSON body" --malformed-rate 0.2 malformed
fi

# ---- SIGKILL of a rank mid-run (mpirun -np 2), then a rerun on the same --out ------------------------
rank_pid() { # out folder, rank -> pid of that rank (its command line names the folder)
  local p
  for p in $(pgrep -f -- "--out $1\$"); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return; }
  done
}
sealed_in() { cat "$1"/shard-*.journal 2>/dev/null | grep -o '"samples": [0-9]*' | awk '{s+=$2} END {print s+0}' || true; }
kill_row() { # name rank
  local out="$tmp/kill$2"
  serve --latency-ms 40
  kd_mpirun 2 "$KDSTEP" generate --prompts "$tmp/prompts.jsonl" --tokenizer-path "$tok" --tools "$tools" "${SETS[@]}" \
    --teacher "http://127.0.0.1:$PORT" --out "$out" >"$tmp/kill.log" 2>&1 &
  local mp=$! sealed=0
  for _ in $(seq 600); do
    sealed=$(sealed_in "$out")
    ((sealed >= 8)) && break
    sleep 0.05
  done
  local pid
  pid=$(rank_pid "$out" "$2" || true)
  [[ -n "$pid" ]] || { echo "fault_matrix: rank $2 not found" >&2; }
  [[ -n "$pid" ]] && kill -9 "$pid"
  local rc=0
  timeout 120 bash -c "while kill -0 $mp 2>/dev/null; do sleep 0.2; done" || kill -9 "$mp" 2>/dev/null || true
  wait "$mp" 2>/dev/null || rc=$?
  local at
  at=$(sealed_in "$out")
  kd_mpirun 2 "$KDSTEP" generate --prompts "$tmp/prompts.jsonl" --tokenizer-path "$tok" --tools "$tools" "${SETS[@]}" \
    --teacher "http://127.0.0.1:$PORT" --out "$out" >"$tmp/rerun.log" 2>&1 || cat "$tmp/rerun.log" >&2
  unserve
  local redone
  redone=$(grep -o "resuming .*: [0-9]* prompts already done" "$tmp/rerun.log" | grep -o '[0-9]* prompts' | head -1 || true)
  row "SIGKILL of $3 (rank $2 of 2)" "after $sealed samples sealed" "job exited $rc; rerun found ${redone:-0 prompts} done, redid the rest" "$out"
}
kill_row worker 1 "a worker"
kill_row rank0 0 "rank 0 (coordinator)"

# ---- disk full (tests/e2e/disk_full.sh: tmpfs that fills, then room is made and the rerun resumes) --
if out=$(KD_BUILD_DIR="$KD_BUILD_DIR" bash "$KD_SOURCE_DIR/tests/e2e/disk_full.sh" 2>&1); then
  sealed=$(echo "$out" | grep -o 'exit 1 with [0-9]* samples sealed' | grep -o '[0-9]* samples' || true)
  size=$(echo "$out" | grep -o 'tmpfs [0-9]* KiB' || true)
  rows+=("| disk full | $size, 2/3 of the dataset | stopped with 'the disk is full' after $sealed sealed (intact); rerun after freeing space | 0 | 0 | ok |")
elif [[ $? -eq 77 ]]; then
  rows+=("| disk full | - | skipped: mounting a tmpfs needs root | - | - | skipped |")
else
  echo "$out" >&2; fails=$((fails + 1))
  rows+=("| disk full | tmpfs | $(echo "$out" | grep FAIL | head -1) | ? | ? | FAIL |")
fi

# ---- a corrupt shard tail: garbage past the sealed data, and a damaged sealed tail -----------------
serve
cp -r "$tmp/ref" "$tmp/tail1"; rm -f "$tmp/tail1/dataset.h5"
head -c 65536 /dev/urandom >>"$tmp/tail1/shard-00000.h5"
gen --teacher "http://127.0.0.1:$PORT" --out "$tmp/tail1" >"$tmp/tail1.log" 2>&1 || cat "$tmp/tail1.log" >&2
row "corrupt shard tail (torn write past the seal)" "64 KiB of garbage appended" "rerun: $(grep -c corrupt "$tmp/tail1.log" || true) shards set aside" "$tmp/tail1"
cp -r "$tmp/ref" "$tmp/tail2"; rm -f "$tmp/tail2/dataset.h5"
sz=$(stat -c %s "$tmp/tail2/shard-00000.h5")
dd if=/dev/urandom of="$tmp/tail2/shard-00000.h5" bs=1 seek=$((sz - 4096)) count=4096 conv=notrunc status=none
gen --teacher "http://127.0.0.1:$PORT" --out "$tmp/tail2" >"$tmp/tail2.log" 2>&1 || cat "$tmp/tail2.log" >&2
moved=$(grep -o "its [0-9]* sealed samples will be generated again" "$tmp/tail2.log" | grep -o '[0-9]*' | head -1 || true)
row "corrupt shard tail (sealed bytes overwritten)" "last 4 KiB of the shard" "shard set aside, ${moved:-0} samples generated again" "$tmp/tail2"
unserve

# ---- damaged shards after the run: every reader refuses them, a rerun redoes their prompts ----------
dmg_row() { # name what damage-command
  cp -r "$tmp/ref" "$tmp/$1"
  eval "$3"
  local refused=no
  if ! "$KDSTEP" inspect "$tmp/$1" >"$tmp/$1.inspect" 2>&1 && grep -q "damaged shard" "$tmp/$1.inspect"; then refused=yes; fi
  serve
  gen --teacher "http://127.0.0.1:$PORT" --out "$tmp/$1" >"$tmp/$1.log" 2>&1 || cat "$tmp/$1.log" >&2
  unserve
  local moved
  moved=$(grep -o "its [0-9]* sealed samples will be generated again" "$tmp/$1.log" | grep -o '[0-9]*' | head -1 || true)
  [[ $refused == yes ]] || fails=$((fails + 1))
  row "damaged shard ($2)" "after the run" "inspect refused it: $refused; rerun: set aside, ${moved:-0} samples generated again" "$tmp/$1"
}
dmg_row dmg_empty "emptied" ': >"$tmp/dmg_empty/shard-00000.h5"'
dmg_row dmg_edit "one sealed value changed, still valid HDF5" \
  '/usr/bin/python3 -c "import h5py,sys; f=h5py.File(sys.argv[1],\"r+\"); d=f[\"tokens/input_ids\"]; d[5]=d[5]+1; f.close()" "$tmp/dmg_edit/shard-00000.h5"'

# ---- a hostile teacher: each request gets the next attack (invalid UTF-8 bodies, NUL, Retry-After
# 100000, a 200 MB gzip bomb, a 1 GB chunked body, a 50 MB answer) or a good answer. Nothing lost:
# every prompt is a sample or a failure record with its reason, none twice, and the counts add up.
/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/hostile_teacher.py" "$tmp/hport" 2>"$tmp/hostile.err" &
HPID=$!
for _ in $(seq 300); do [[ -s "$tmp/hport" ]] && break; sleep 0.1; done
gen --teacher "http://127.0.0.1:$(cat "$tmp/hport")/mix/v1" --out "$tmp/hostile" --set teacher.timeout_s=5 --set teacher.scoring=none >"$tmp/hostile.log" 2>&1 ||
  cat "$tmp/hostile.log" >&2
kill "$HPID" 2>/dev/null || true; wait "$HPID" 2>/dev/null || true
read -r lost dup verdict hit < <(/usr/bin/python3 - "$tmp/hostile" "$n" <<'PYEOF'
import sys, json, h5py
d, n = sys.argv[1], int(sys.argv[2])
s = [int(i) for i in h5py.File(d + "/dataset.h5", "r")["samples/prompt_id"][:]]
f = [json.loads(l)["prompt_index"] for l in open(d + "/failures.jsonl") if l.strip()]
st = json.load(open(d + "/stats.json"))
done = s + f
lost, dup = n - len(set(done)), len(done) - len(set(done))
adds = st["samples"] + st["failures"] + st.get("filtered", 0) == n
print(lost, dup, "ok" if lost == 0 and dup == 0 and adds else "FAIL", "%d_samples,_%d_failures_recorded" % (len(s), len(f)))
PYEOF
)
[[ "$verdict" == ok ]] || fails=$((fails + 1))
rows+=("| hostile teacher (bad UTF-8, NUL, Retry-After 100000, gzip bomb, 1 GB body, 50 MB answer) | 7 of 8 requests | ${hit//_/ } | $lost | $dup | $verdict |")
echo "fault_matrix: hostile teacher | ${hit//_/ } | lost $lost | dup $dup | $verdict" >&2

# ---- training faults (need the trainer) --------------------------------------------------------------
if "$KDSTEP" train --help >/dev/null 2>&1; then
  if [[ -f "$KD_SOURCE_DIR/tests/reliability/train_faults.sh" ]]; then
    while IFS= read -r l; do rows+=("$l"); [[ "$l" == *"| FAIL |"* ]] && fails=$((fails + 1)); done < <(bash "$KD_SOURCE_DIR/tests/reliability/train_faults.sh")
  fi
else
  rows+=("| SIGKILL of a training rank | - | pending: the trainer is not in this build | - | - | pending |")
  rows+=("| SIGUSR1 preemption (trainer) | - | pending: the trainer is not in this build | - | - | pending |")
fi

{
  echo "| fault | rate or moment | hit | lost | duplicated | result |"
  echo "| --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
} | tee "${md:-/dev/null}"
echo "fault_matrix: $n prompts per run; $fails rows failed"
((fails == 0))
