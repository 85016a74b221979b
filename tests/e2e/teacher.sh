#!/usr/bin/env bash
# kdstep teacher serve: a real server process on loopback, queried with curl; usage errors; counts logged.
set -euo pipefail
KDSTEP=${KDSTEP:-build/kdstep}
SRC=${KD_SOURCE_DIR:-.}
command -v curl >/dev/null || { echo "teacher e2e: curl missing" >&2; exit 77; }
tmp=$(mktemp -d)
srv=""
cleanup() { [[ -n "$srv" ]] && kill "$srv" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "teacher e2e: $*" >&2; exit 1; }

"$KDSTEP" teacher serve --help | grep -q '^usage: kdstep teacher serve' || fail "--help"
set +e
"$KDSTEP" teacher serve --bogus 2>"$tmp/err"; rc=$?
[[ $rc == 2 ]] && grep -q "unknown or incomplete flag '--bogus'" "$tmp/err" || fail "unknown flag: rc $rc"
"$KDSTEP" teacher serve --fail-rate 1.5 2>"$tmp/err"; rc=$?
[[ $rc == 2 ]] && grep -q -- "--fail-rate wants a rate between 0 and 1, got '1.5'" "$tmp/err" || fail "bad rate: rc $rc"
"$KDSTEP" teacher serve --tools "$SRC/configs/tools.json" --port 0 --fail-rate 0.6 --drop-rate 0.6 2>"$tmp/err"; rc=$?
[[ $rc == 1 ]] && grep -q "fault rates add up to 1.200; their sum must be at most 1" "$tmp/err" || fail "rate sum: rc $rc"
"$KDSTEP" teacher serve --tools "$SRC/configs/tools.json" --port 0 --host example 2>"$tmp/err"; rc=$?
[[ $rc == 1 ]] && grep -q "is not an IPv4 address" "$tmp/err" || fail "bad host: rc $rc"
"$KDSTEP" teacher frobnicate 2>"$tmp/err"; rc=$?
[[ $rc == 2 ]] && grep -q "unknown subcommand 'frobnicate' (known: serve)" "$tmp/err" || fail "unknown subcommand: rc $rc"
set -e

"$KDSTEP" teacher serve --port 0 --tools "$SRC/configs/tools.json" --fail-rate 0.5 >"$tmp/out" 2>"$tmp/log" &
srv=$!
for _ in $(seq 100); do grep -q listening "$tmp/out" 2>/dev/null && break; sleep 0.05; done
grep -q 'listening on http://127.0.0.1:' "$tmp/out" || fail "no listening line (loopback by default)"
port=$(grep -o '[0-9]*$' "$tmp/out")
url="http://127.0.0.1:$port"
ok=0; five=0
for i in $(seq 20); do
  code=$(curl -s -o "$tmp/resp.$i" -w '%{http_code}' "$url/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"stub-teacher","messages":[{"role":"user","content":"What is the weather in Paris?"}],"logprobs":true,"top_logprobs":3}')
  if [[ $code == 200 ]]; then
    ok=$((ok+1))
    /usr/bin/python3 - "$tmp/resp.$i" <<'PY' || fail "bad 200 body"
import json, math, sys
r = json.load(open(sys.argv[1]))
m = r["choices"][0]["message"]
assert m["tool_calls"][0]["function"]["name"] == "get_weather", m
assert json.loads(m["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
assert r["choices"][0]["finish_reason"] == "tool_calls"
assert r["usage"]["completion_tokens"] == len(r["choices"][0]["logprobs"]["content"])
for t in r["choices"][0]["logprobs"]["content"]:
    assert len(t["top_logprobs"]) == 3 and t["top_logprobs"][0]["logprob"] >= t["top_logprobs"][1]["logprob"]
    assert sum(math.exp(x["logprob"]) for x in t["top_logprobs"]) <= 1.0 + 1e-6
PY
  elif [[ $code == 500 ]]; then five=$((five+1)); else fail "unexpected HTTP $code"; fi
done
[[ $ok -gt 0 && $five -gt 0 ]] || fail "fail-rate 0.5 gave ok=$ok 500s=$five"
# vLLM-style teacher-forced scoring
curl -s "$url/v1/completions" -d '{"prompt":"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello","prompt_logprobs":2,"max_tokens":1}' >"$tmp/score" || true
# (the 50% fault may hit it; retry until a 200)
for _ in $(seq 10); do
  code=$(curl -s -o "$tmp/score" -w '%{http_code}' "$url/v1/completions" -d '{"prompt":"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello","prompt_logprobs":2,"max_tokens":1}')
  [[ $code == 200 ]] && break
done
/usr/bin/python3 - "$tmp/score" <<'PY' || fail "bad /v1/completions body"
import json, sys
r = json.load(open(sys.argv[1]))
c = r["choices"][0]
assert c["prompt_logprobs"][0] is None and len(c["prompt_logprobs"]) == len(c["prompt_token_ids"])
assert all(len(e) >= 2 for e in c["prompt_logprobs"][1:])
PY
curl -s "$url/stats" | grep -q '"fail":' || fail "/stats"
code=$(curl -s -o /dev/null -w '%{http_code}' "$url/nope"); [[ $code == 404 ]] || fail "404 expected, got $code"
kill -TERM "$srv"; wait "$srv" || true; srv=""
grep -q "teacher serve: stopped; requests=" "$tmp/log" || fail "no counts at exit"
grep -q " fail=" "$tmp/log" || fail "no fail count"
echo "teacher e2e: ok ($ok answered, $five injected 500s)"
