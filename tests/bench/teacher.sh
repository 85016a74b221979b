#!/usr/bin/env bash
# Teacher client throughput: the stub server at 100 ms latency, 64 requests in flight on one rank.
# Goal: >= 90% of the ideal 640 req/s, and < 100 us of client CPU per request (parsing included).
# Runs twice: plain chat completions (tool calls, usage), and with top_logprobs=8 (every response token).
set -euo pipefail
KDSTEP=${KDSTEP:-build/kdstep}
BUILD=${KD_BUILD_DIR:-build}
SRC=${KD_SOURCE_DIR:-.}
N=${KD_BENCH_TEACHER_N:-3000}
bench="$BUILD/tests/bench_teacher"
[[ -x "$bench" ]] || { echo "teacher bench: $bench not built" >&2; exit 1; }
tmp=$(mktemp -d)
cleanup() { [[ -n "${srv:-}" ]] && kill "$srv" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
"$KDSTEP" teacher serve --port 0 --latency-ms 100 --tools "$SRC/configs/tools.json" >"$tmp/serve.out" 2>"$tmp/serve.err" &
srv=$!
for _ in $(seq 100); do grep -q listening "$tmp/serve.out" 2>/dev/null && break; sleep 0.05; done
port=$(grep -o '[0-9]*$' "$tmp/serve.out")
[[ -n "$port" ]] || { echo "teacher bench: server did not start" >&2; cat "$tmp/serve.err" >&2; exit 1; }
url="http://127.0.0.1:$port"
status=0
for k in 0 8; do
  "$bench" --url "$url" --n "$N" --in-flight 64 --latency-ms 100 --top-logprobs "$k" | tee "$tmp/out.$k"
  line=$(tail -n 1 "$tmp/out.$k")
  pct=$(echo "$line" | /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["pct_of_ideal"])')
  us=$(echo "$line" | /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["client_cpu_us_per_req"])')
  ok=$(/usr/bin/python3 -c "print(int($pct >= 90 and $us < 100))")
  [[ "$ok" == 1 ]] || { echo "teacher bench (top_logprobs $k): goal missed: $pct% of ideal, $us us/request" >&2; status=1; }
done
/usr/bin/python3 - "$tmp/out.0" "$tmp/out.8" <<'PY'
import json, sys
a = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
b = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
print(json.dumps({"req_per_s": a["req_per_s"], "ideal_req_per_s": a["ideal_req_per_s"], "pct_of_ideal": a["pct_of_ideal"],
                  "client_cpu_us_per_req": a["client_cpu_us_per_req"], "logprobs_req_per_s": b["req_per_s"],
                  "logprobs_pct_of_ideal": b["pct_of_ideal"], "logprobs_client_cpu_us_per_req": b["client_cpu_us_per_req"]}))
PY
exit $status
