#!/usr/bin/env bash
# Teacher client throughput: the stub server at 100 ms latency, 64 requests in flight on one rank.
# Goal: >= 90% of the ideal 640 req/s, and < 100 us of client CPU per request (parsing included).
# Two modes: plain chat completions (tool calls, usage), and top_logprobs=8 (every response token).
# Each mode runs KD_BENCH_TEACHER_RUNS times (default 5); the goal is checked on the median, and the
# spread (min-max) is printed, since a shared machine moves these figures by tens of percent.
# The server stands in for a remote endpoint, so on a machine with two or more CPUs it runs on the
# last CPU and the client on the first (taskset): otherwise the server's threads preempt the client
# and their scheduling lands in the client's system time. KD_BENCH_TEACHER_PIN=0 turns this off.
# Also times the parser alone on one saved logprobs answer (bench_teacher --parse).
# The scoring pass (issue 16): a second server with the student tokenizer scores whole conversations
# (system turn with the 16 tools, a call, its result, the answer: ~2,000 tokens, prompt_logprobs 8, about
# 1 MB of JSON each); goals: the prompt_logprobs parser alone >= 1 GB/s on one saved answer
# (bench_teacher --parse-prompt), and client CPU per scored conversation < 150 us plus its parse.
set -euo pipefail
KDSTEP=${KDSTEP:-build/kdstep}
BUILD=${KD_BUILD_DIR:-build}
SRC=${KD_SOURCE_DIR:-.}
N=${KD_BENCH_TEACHER_N:-3000}
RUNS=${KD_BENCH_TEACHER_RUNS:-5}
bench="$BUILD/tests/bench_teacher"
[[ -x "$bench" ]] || { echo "teacher bench: $bench not built" >&2; exit 1; }
tmp=$(mktemp -d)
cleanup() { [[ -n "${srv:-}" ]] && kill "$srv" 2>/dev/null; [[ -n "${srv2:-}" ]] && kill "$srv2" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
pin_server=() pin_client=()
ncpu=$(nproc 2>/dev/null || echo 1)
if [[ "${KD_BENCH_TEACHER_PIN:-1}" == 1 && "$ncpu" -ge 2 ]] && command -v taskset >/dev/null; then
  pin_server=(taskset -c $((ncpu - 1))) pin_client=(taskset -c 0)
  echo "teacher bench: server on CPU $((ncpu - 1)), client on CPU 0"
fi
"${pin_server[@]}" "$KDSTEP" teacher serve --port 0 --latency-ms 100 --tools "$SRC/configs/tools.json" >"$tmp/serve.out" 2>"$tmp/serve.err" &
srv=$!
for _ in $(seq 100); do grep -q listening "$tmp/serve.out" 2>/dev/null && break; sleep 0.05; done
port=$(grep -o '[0-9]*$' "$tmp/serve.out")
[[ -n "$port" ]] || { echo "teacher bench: server did not start" >&2; cat "$tmp/serve.err" >&2; exit 1; }
url="http://127.0.0.1:$port"
source "$SRC/tests/lib/fixtures.sh"
tok=$(KD_BUILD_DIR="$BUILD" KD_SOURCE_DIR="$SRC" KDSTEP="$KDSTEP" kd_student_tokenizer)
"${pin_server[@]}" "$KDSTEP" teacher serve --port 0 --latency-ms 100 --tokenizer "$tok" --tools "$SRC/configs/tools.json" \
  >"$tmp/serve2.out" 2>"$tmp/serve2.err" &
srv2=$!
for _ in $(seq 100); do grep -q listening "$tmp/serve2.out" 2>/dev/null && break; sleep 0.05; done
port2=$(grep -o '[0-9]*$' "$tmp/serve2.out")
[[ -n "$port2" ]] || { echo "teacher bench: scoring server did not start" >&2; cat "$tmp/serve2.err" >&2; exit 1; }
for k in 0 8; do
  for r in $(seq "$RUNS"); do
    "${pin_client[@]}" "$bench" --url "$url" --n "$N" --in-flight 64 --latency-ms 100 --top-logprobs "$k" | tee "$tmp/out.$k.$r"
  done
done
# one logprobs answer as the client gets it, for the parser alone
/usr/bin/python3 - "$url" "$tmp/answer.json" <<'PY'
import json, sys, urllib.request
body = json.dumps({"model": "stub-teacher", "messages": [{"role": "system", "content": "You are a helpful assistant with tools."},
                   {"role": "user", "content": "Read the file config.json"}], "logprobs": True, "top_logprobs": 8}).encode()
req = urllib.request.Request(sys.argv[1] + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
open(sys.argv[2], "wb").write(urllib.request.urlopen(req, timeout=30).read())
PY
"${pin_client[@]}" "$bench" --parse "$tmp/answer.json" --n 2000 | tee "$tmp/parse.out"
# the scoring pass: whole conversations, 16 in flight (each answer is ~1 MB), then one answer parsed alone
SN=${KD_BENCH_TEACHER_SCORE_N:-300}
for r in $(seq "$RUNS"); do
  "${pin_client[@]}" "$bench" --url "http://127.0.0.1:$port2" --score --tools "$SRC/configs/tools.json" --n "$SN" \
    --in-flight 16 --latency-ms 100 --top-logprobs 8 | tee "$tmp/score.$r"
done
/usr/bin/python3 - "http://127.0.0.1:$port2" "$SRC/configs/tools.json" "$tmp/score.json" <<'PY'
import json, sys, urllib.request
tools = [t if "function" in t else {"type": "function", "function": t} for t in json.load(open(sys.argv[2]))]
conv = [{"role": "system", "content": "You are a helpful assistant with tools."}, {"role": "user", "content": "What's the weather like?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_0", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "name": "get_weather", "content": "{\"city\": \"Paris\", \"temperature\": 21}"},
        {"role": "assistant", "content": "Here is what I found. According to get_weather, temperature is 21 in Paris."}]
body = json.dumps({"model": "stub-teacher", "messages": conv, "tools": tools, "max_tokens": 1, "prompt_logprobs": 8,
                   "add_generation_prompt": False}).encode()
req = urllib.request.Request(sys.argv[1] + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
open(sys.argv[3], "wb").write(urllib.request.urlopen(req, timeout=60).read())
PY
"${pin_client[@]}" "$bench" --parse-prompt "$tmp/score.json" --n 200 --top-logprobs 8 | tee "$tmp/pparse.out"
/usr/bin/python3 - "$tmp" "$RUNS" <<'PY'
import json, statistics, sys
tmp, runs = sys.argv[1], int(sys.argv[2])
def last(path): return json.loads(open(path).read().strip().splitlines()[-1])
out, ok = {}, True
for k, prefix in ((0, ""), (8, "logprobs_")):
    rs = [last(f"{tmp}/out.{k}.{r}") for r in range(1, runs + 1)]
    rps = statistics.median(x["req_per_s"] for x in rs)
    pct = statistics.median(x["pct_of_ideal"] for x in rs)
    us = statistics.median(x["client_cpu_us_per_req"] for x in rs)
    user = statistics.median(x["user_us_per_req"] for x in rs)
    parse = statistics.median(x["parse_us_per_req"] for x in rs)
    lo_pct, hi_pct = min(x["pct_of_ideal"] for x in rs), max(x["pct_of_ideal"] for x in rs)
    lo_us, hi_us = min(x["client_cpu_us_per_req"] for x in rs), max(x["client_cpu_us_per_req"] for x in rs)
    print(f"top_logprobs {k}: median of {runs}: {rps:.1f} req/s, {pct:.1f}% of ideal ({lo_pct:.1f}-{hi_pct:.1f}), "
          f"{us:.1f} us client CPU/request ({lo_us:.1f}-{hi_us:.1f}; user {user:.1f}, parsing {parse:.1f})")
    if not (pct >= 90 and us < 100):
        print(f"teacher bench (top_logprobs {k}): goal missed: {pct:.1f}% of ideal, {us:.1f} us/request (medians)", file=sys.stderr)
        ok = False
    if k == 0: out["ideal_req_per_s"] = rs[0]["ideal_req_per_s"]
    out.update({prefix + "req_per_s": rps, prefix + "pct_of_ideal": pct, prefix + "client_cpu_us_per_req": us,
                prefix + "pct_of_ideal_range": [lo_pct, hi_pct], prefix + "client_cpu_us_range": [lo_us, hi_us],
                prefix + "user_us_per_req": user, prefix + "parse_us_per_req": parse})
rs = [last(f"{tmp}/score.{r}") for r in range(1, runs + 1)]
sc_us = statistics.median(x["client_cpu_us_per_req"] for x in rs)
sc_parse = statistics.median(x["parse_us_per_req"] for x in rs)
sc_rows = rs[0]["rows_per_req"]
pp = last(f"{tmp}/pparse.out")
gbs = pp["prompt_parse_mb_s"] / 1000.0
print(f"scoring: median of {runs}: {sc_us:.1f} us client CPU per conversation ({sc_rows:.0f} rows), of which parsing "
      f"{sc_parse:.1f} us: {sc_us - sc_parse:.1f} us besides the parse; parser alone {gbs:.2f} GB/s on "
      f"{pp['prompt_parse_bytes']} bytes (jansson reference {pp['prompt_parse_bytes'] / pp['prompt_ref_parse_us'] / 1000:.3f} GB/s)")
if gbs < 1.0 or sc_us - sc_parse >= 150:
    print(f"teacher bench (scoring): goal missed: parser {gbs:.2f} GB/s (goal 1), {sc_us - sc_parse:.1f} us/conversation "
          "besides the parse (goal < 150)", file=sys.stderr)
    ok = False
out.update({"score_client_cpu_us_per_conv": sc_us, "score_parse_us_per_conv": sc_parse,
            "score_cpu_us_besides_parse": sc_us - sc_parse, "score_rows_per_conv": sc_rows,
            "prompt_parse_gb_s": gbs, "prompt_parse_bytes": pp["prompt_parse_bytes"]})
p = last(f"{tmp}/parse.out")
if not ok:  # the machine's speed at the time: the parser alone on one fixed answer, in a tight loop
    print(f"teacher bench: the parser alone took {p['parse_us']:.1f} us on the {p['parse_bytes']} byte answer in this run "
          "(about 16 us on this project's 2-core VM at its usual speed); a much slower figure means the machine "
          "was slowed down by something else: rerun", file=sys.stderr)
out.update({"runs": runs, "logprobs_answer_bytes": p["parse_bytes"], "logprobs_parse_us": p["parse_us"],
            "logprobs_parse_ref_us": p["ref_parse_us"]})
print(json.dumps(out))
sys.exit(0 if ok else 1)
PY
