#!/usr/bin/env bash
# A flaky teacher over HTTP: the stub server on loopback injects every fault kind at 10% (500, 429 with
# Retry-After, malformed body, truncated body, dropped connection, stall). Generation on 2 ranks
# finishes, and every prompt ends up in the dataset or in failures.jsonl, exactly once. The endpoint's
# top-k log-probabilities (over the student's tokens) reach the dataset where they align.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tmp=$(mktemp -d)
server=""
cleanup() { [[ -n "$server" ]] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
n=${KD_TEST_PROMPTS:-60}
[[ -n "${KD_TEST_QUICK:-}" ]] && n=40
"$KDSTEP" prompts synth --tools "$KD_SOURCE_DIR/configs/tools.json" -n "$n" --seed 5 -o "$tmp/prompts.jsonl" >/dev/null
"$KDSTEP" teacher serve --port 0 --tokenizer "$tok" --tools "$KD_SOURCE_DIR/configs/tools.json" \
  --fail-rate 0.1 --rate-limit 0.1 --retry-after 1 --malformed-rate 0.1 --truncate-rate 0.1 --drop-rate 0.1 \
  --stall-rate 0.1 --duration 600 >"$tmp/port" 2>"$tmp/server.log" &
server=$!
for _ in $(seq 100); do [[ -s "$tmp/port" ]] && break; sleep 0.1; done
port=$(grep -o '[0-9]\+' "$tmp/port" | tail -n 1)
[[ -n "$port" ]] || { echo "server did not start"; cat "$tmp/server.log"; exit 1; }
kd_mpirun 2 "$KDSTEP" generate --prompts "$tmp/prompts.jsonl" --out "$tmp/ds" --tokenizer-path "$tok" \
  --tools "$KD_SOURCE_DIR/configs/tools.json" --teacher "http://127.0.0.1:$port" \
  --set teacher.timeout_s=1 --set teacher.connect_timeout_s=1 --set teacher.max_retries=4 \
  --set teacher.backoff_base_s=0.05 --set teacher.max_in_flight=16 2>"$tmp/gen.log" || { cat "$tmp/gen.log"; exit 1; }
tail -n 2 "$tmp/gen.log"
/usr/bin/python3 - "$tmp/ds" "$n" <<'PY'
import json, sys, h5py, numpy as np
d, n = sys.argv[1], int(sys.argv[2])
fails = [json.loads(l) for l in open(d + "/failures.jsonl")]
stats = json.load(open(d + "/stats.json"))
with h5py.File(d + "/dataset.h5", "r") as f:
    ids = [int(x) for x in f["samples/prompt_id"][:]]
    topk = f["teacher/topk_ids"][:]
    loss = f["tokens/loss_mask"][:].astype(bool)
covered = sorted(ids + [x["prompt_index"] for x in fails])
assert covered == list(range(n)), f"lost or duplicated prompts: {len(covered)} entries for {n}"
assert len(ids) > n // 2, f"too few samples survived the faults: {len(ids)}"
with_teacher = int((topk[:, 0] >= 0).sum())
assert with_teacher > 0, "no endpoint top-k reached the dataset"
print(f"{len(ids)} samples + {len(fails)} failures = {n} prompts; retries {stats['retries']}; "
      f"{with_teacher} positions carry the endpoint's top-k ({with_teacher / max(1, loss.sum()):.0%} of response tokens)")
PY
