#!/usr/bin/env bash
# The API key never leaks: a full generate run (2 ranks, debug logging) against the stub server over
# HTTP with a planted key in the variable named by teacher.api_key_env. The server fails 30% of
# requests and echoes the Authorization header it received into the error body (the worst case: a
# proxy or server that reflects credentials), so some prompts end as recorded failures carrying a
# body excerpt. The key (and any 12-character piece of it) must appear nowhere: stdout, stderr,
# metrics.jsonl, stats.json, failures.jsonl, meta.json, every HDF5 file (raw bytes and h5dump's
# attributes) and checkpoints once training exists. Positive control: the echo arrives redacted.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tools="$KD_SOURCE_DIR/configs/tools.json"
tmp=$(mktemp -d)
SPID=""
trap '[[ -n "$SPID" ]] && kill $SPID 2>/dev/null; rm -rf "$tmp"' EXIT
KEY="sk-kdstep-$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')"
export KD_TEST_TEACHER_KEY="$KEY"

"$KDSTEP" teacher serve --port 0 --tokenizer "$tok" --tools "$tools" --fail-rate 0.3 --echo-auth-for-tests \
  >"$tmp/srv.out" 2>"$tmp/srv.err" &
SPID=$!
for _ in $(seq 100); do grep -q listening "$tmp/srv.out" 2>/dev/null && break; sleep 0.1; done
port=$(grep -o '127.0.0.1:[0-9]*' "$tmp/srv.out" | head -1 | cut -d: -f2)
[[ -n "$port" ]] || { echo "FAIL: teacher serve did not start"; cat "$tmp/srv.err"; exit 1; }

"$KDSTEP" prompts synth --tools "$tools" -n 40 --seed 9 -o "$tmp/prompts.jsonl" >/dev/null
KDSTEP_LOG=debug kd_mpirun 2 "$KDSTEP" generate --prompts "$tmp/prompts.jsonl" --out "$tmp/ds" --tokenizer-path "$tok" \
  --tools "$tools" --teacher "http://127.0.0.1:$port" --set teacher.api_key_env=KD_TEST_TEACHER_KEY \
  --set teacher.max_retries=1 --set teacher.backoff_base_s=0.01 >"$tmp/stdout" 2>"$tmp/stderr" ||
  { echo "FAIL: generate"; tail -20 "$tmp/stderr"; exit 1; }
kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=""

# positive control: the server echoed the header, the client recorded the failure with it redacted
grep -rqE 'you sent Bearer \*{20,}' "$tmp/ds/failures.jsonl" "$tmp/stderr" ||
  { echo "FAIL: no redacted echo found: the test did not exercise the leak path"; head -3 "$tmp/ds/failures.jsonl"; exit 1; }

# training on that dataset, with the key still in the environment: metrics, checkpoints, final
if "$KDSTEP" train --help >/dev/null 2>&1; then
  KDSTEP_LOG=debug "$KDSTEP" train --config "$KD_SOURCE_DIR/configs/process_supervision.yaml" --set model.preset=tiny \
    --set train.seq_len=128 --set train.steps=2 --set train.micro_batch=2 --set train.warmup_steps=1 \
    --set train.checkpoint_every=1 --set teacher.api_key_env=KD_TEST_TEACHER_KEY \
    --train-data "$tmp/ds" --tokenizer-path "$tok" --out "$tmp/run" >>"$tmp/stdout" 2>>"$tmp/stderr" ||
    { echo "FAIL: train"; tail -5 "$tmp/stderr"; exit 1; }
  [[ -s "$tmp/run/metrics.jsonl" && -d "$tmp/run/final" ]] || { echo "FAIL: train wrote no metrics/final"; exit 1; }
fi
files=("$tmp/stdout" "$tmp/stderr" "$tmp/srv.out")
while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$tmp/ds" "$tmp/run" -type f -print0 2>/dev/null)
for f in "$tmp"/ds/*.h5; do h5dump -A "$f" >"$f.attrs.txt" 2>/dev/null || true; files+=("$f.attrs.txt"); done
leaks=0
for ((i = 0; i + 12 <= ${#KEY}; i += 6)); do
  piece=${KEY:i:12}
  if grep -alF -- "$piece" "${files[@]}" >/dev/null; then
    echo "FAIL: a piece of the API key ('${piece:0:4}...') appears in: $(grep -alF -- "$piece" "${files[@]}" | tr '\n' ' ')"
    leaks=1
  fi
done
((leaks == 0))
echo "secrets: key absent from ${#files[@]} files (stdout, stderr, stats.json, failures.jsonl, meta.json, HDF5 data and attributes, metrics.jsonl, checkpoints); echo arrived redacted"
