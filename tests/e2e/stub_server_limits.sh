#!/usr/bin/env bash
# Finding G of issue 21: the stub server (`kdstep teacher serve`).
#   - limits on the body (413), the tool count, max_tokens, n, top_logprobs / prompt_logprobs and the
#     scored prompt's length, each a 4xx naming the limit (the old main answered a 500 KB
#     prompt_logprobs request with 606 MB, and reset the connection on a 100 MB body);
#   - no SO_REUSEPORT: a second server on the same port fails to start instead of sharing it;
#   - a non-loopback --host needs --api-key or --insecure; with --api-key, requests without it get
#     401 and requests with it are answered.
# (Linear tool matching: tests/unit/test_teacher_stub.c, "stub: tool matching is linear".)
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tools="$KD_SOURCE_DIR/configs/tools.json"
tmp=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
nfail=0
problem() { echo "FAIL: $*" >&2; nfail=$((nfail + 1)); }

# serve NAME ARGS...: start a server, wait for its address line; sets $port
serve() {
  local name=$1; shift
  "$KDSTEP" teacher serve --tokenizer "$tok" --tools "$tools" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  PIDS+=($!)
  for _ in $(seq 150); do grep -q listening "$tmp/$name.out" 2>/dev/null && break; sleep 0.1; done
  port=$(grep -o ':[0-9]*$' "$tmp/$name.out" | head -1 | tr -d :)
  [[ -n "$port" ]] || { echo "FAIL: $name did not start: $(cat "$tmp/$name.err")"; exit 1; }
}
# post NAME PATH BODYFILE [curl args]: HTTP code in NAME.code, body in NAME.body
post() {
  local name=$1 path=$2 body=$3; shift 3
  curl -s -o "$tmp/$name.body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "@$body" \
    "$@" "http://127.0.0.1:$port$path" >"$tmp/$name.code" 2>/dev/null || echo 000 >"$tmp/$name.code"
}
# limit NAME WANTCODE REGEX PATH JSON: a request over one limit gets WANTCODE and a message naming it
limit() {
  local name=$1 want=$2 re=$3 path=$4
  printf '%s' "$5" >"$tmp/$name.req"
  post "$name" "$path" "$tmp/$name.req"
  local code; code=$(cat "$tmp/$name.code")
  [[ "$code" == "$want" ]] || { problem "$name: HTTP $code, expected $want: $(head -c 300 "$tmp/$name.body")"; return; }
  grep -qE -- "$re" "$tmp/$name.body" || problem "$name: the answer does not name the limit: $(head -c 300 "$tmp/$name.body")"
}

serve main --port 0
M='"messages":[{"role":"user","content":"What is the weather in Paris?"}]'
limit ok 200 '"choices"' /v1/chat/completions "{\"model\":\"stub-teacher\",$M,\"max_tokens\":64,\"logprobs\":true,\"top_logprobs\":5}"
limit max_tokens 400 'max_tokens must be an integer from 1 to 1048576' /v1/chat/completions "{$M,\"max_tokens\":4611686018427387904}"
limit n 400 'n must be 1' /v1/chat/completions "{$M,\"n\":1000}"
limit top_lp_neg 400 'top_logprobs must be an integer from 0 to 20' /v1/chat/completions "{$M,\"logprobs\":true,\"top_logprobs\":-1}"
limit top_lp_big 400 'top_logprobs must be an integer from 0 to 20' /v1/chat/completions "{$M,\"logprobs\":true,\"top_logprobs\":1000000}"
limit prompt_lp_big 400 'prompt_logprobs must be an integer from 0 to 20' /v1/completions '{"prompt":"hi","prompt_logprobs":1000}'
/usr/bin/python3 - "$tmp/tools.json" <<'EOF'
import json, sys
tools = [{"type": "function", "function": {"name": "tool_%d" % i, "description": "does thing %d" % i,
          "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}} for i in range(5000)]
json.dump({"messages": [{"role": "user", "content": "hi"}], "tools": tools}, open(sys.argv[1], "w"))
EOF
limit tools 400 'tools: 5000 tools is more than this server.s limit of 4096' /v1/chat/completions "$(cat "$tmp/tools.json")"
# a 500 KB prompt scored with prompt_logprobs: refused by its length, not answered with ~600 MB
/usr/bin/python3 -c "import json,sys; json.dump({'prompt': 'word ' * 100000, 'prompt_logprobs': 20}, open(sys.argv[1], 'w'))" "$tmp/long.req"
post long /v1/completions "$tmp/long.req"
[[ $(cat "$tmp/long.code") == 400 ]] && grep -q "limit of 32768 prompt tokens" "$tmp/long.body" ||
  problem "500 KB prompt_logprobs: HTTP $(cat "$tmp/long.code"), $(stat -c %s "$tmp/long.body") bytes: $(head -c 200 "$tmp/long.body")"
# a 100 MB body: 413 naming the limit (the old main reset the connection at 64 MB)
head -c $((100 << 20)) /dev/zero | tr '\0' ' ' >"$tmp/huge.req"
post huge /v1/chat/completions "$tmp/huge.req"
[[ $(cat "$tmp/huge.code") == 413 ]] && grep -q "larger than this server's limit of 16777216 bytes" "$tmp/huge.body" ||
  problem "100 MB body: HTTP $(cat "$tmp/huge.code"): $(head -c 200 "$tmp/huge.body")"
rss=$(awk '/VmHWM/ {print $2}' "/proc/${PIDS[0]}/status")
echo "stub_server_limits: server peak RSS after the oversized requests: $((rss / 1024)) MiB"
((rss < 400 * 1024)) || problem "the server's peak RSS is $((rss / 1024)) MiB"

# ---- a second server on the same port ---------------------------------------------------------------
if "$KDSTEP" teacher serve --tools "$tools" --port "$port" --duration 3 >"$tmp/second.out" 2>&1; then
  problem "a second server bound port $port (SO_REUSEPORT): $(cat "$tmp/second.out")"
fi
grep -q "cannot listen on 127.0.0.1:$port" "$tmp/second.out" || problem "second bind: no clear message: $(cat "$tmp/second.out")"

# ---- a non-loopback host needs a key (or --insecure); the key is checked --------------------------------
"$KDSTEP" teacher serve --tools "$tools" --host 0.0.0.0 --port 0 --duration 3 >"$tmp/open.out" 2>&1 &&
  problem "--host 0.0.0.0 without --api-key or --insecure was accepted"
grep -q -- "--host 0.0.0.0 is reachable from other machines; give --api-key" "$tmp/open.out" ||
  problem "--host 0.0.0.0: no clear refusal: $(cat "$tmp/open.out")"
serve keyed --port 0 --api-key sk-stub-test-key
printf '%s' "{$M}" >"$tmp/plain.req"
post nokey /v1/chat/completions "$tmp/plain.req"
[[ $(cat "$tmp/nokey.code") == 401 ]] || problem "no key: HTTP $(cat "$tmp/nokey.code"), expected 401"
post badkey /v1/chat/completions "$tmp/plain.req" -H "Authorization: Bearer sk-stub-test-kez"
[[ $(cat "$tmp/badkey.code") == 401 ]] || problem "wrong key: HTTP $(cat "$tmp/badkey.code"), expected 401"
post goodkey /v1/chat/completions "$tmp/plain.req" -H "Authorization: Bearer sk-stub-test-key"
[[ $(cat "$tmp/goodkey.code") == 200 ]] || problem "right key: HTTP $(cat "$tmp/goodkey.code"), expected 200"
"$KDSTEP" teacher serve --tools "$tools" --host 0.0.0.0 --port 0 --insecure --duration 1 >"$tmp/insecure.out" 2>&1 ||
  problem "--insecure: refused: $(cat "$tmp/insecure.out")"
grep -q "not loopback" "$tmp/insecure.out" || problem "--insecure: no warning"

echo "stub_server_limits: $nfail problems"
((nfail == 0))
