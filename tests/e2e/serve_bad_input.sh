#!/usr/bin/env bash
# kdstep serve under bad input: malformed JSON, unknown model, max_tokens too big, a prompt too long
# for the model, a body over the size limit, a wrong API key, unknown paths and a client that goes
# away mid-stream, requests past the KV cache budget (--max-kv-mb), and guided serving's (--guide) bad level and tool. Each gets an OpenAI-style error object ({"error": {"message", "type", ...}}) with
# the right status, or a clean stop, and the server keeps serving afterwards (checked after each).
set -u
source "$KD_SOURCE_DIR/tests/lib/serve_lib.bash"
command -v curl >/dev/null && command -v jq >/dev/null || { echo "skip: curl and jq are needed"; exit 77; }
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'serve_stop >/dev/null 2>&1; rm -rf "$tmp"' EXIT
jq '.[0:2]' "$S/configs/tools.json" >"$tmp/tools.json"
serve_tokenizer "$tmp/tok" "$tmp/tools.json" || { echo "FAIL tokenizer"; exit 1; }
serve_random_student "$tmp/tok" "$tmp/m" || { echo "FAIL student"; exit 1; }
export KD_TEST_KEY=sk-test-0123456789
serve_start "$tmp/m" --name m --max-tokens 2000 --max-body 200000 --api-key-env KD_TEST_KEY || { echo "FAIL serve did not start"; exit 1; }
U="http://127.0.0.1:$SERVE_PORT"
AUTH=(-H "Authorization: Bearer $KD_TEST_KEY")
post() { # PATH BODY -> status in $tmp/code, body in $tmp/body
  curl -s -o "$tmp/body" -w '%{http_code}' "${AUTH[@]}" -H 'Content-Type: application/json' "$U$1" --data-binary "$2" >"$tmp/code"
}
is_error() { # STATUS WORD: that status, an error object whose message has WORD
  [[ "$(cat "$tmp/code")" == "$1" ]] && jq -e --arg w "$2" '.error.message | type == "string" and contains($w)' "$tmp/body" >/dev/null &&
    jq -e '.error.type | type == "string"' "$tmp/body" >/dev/null || { echo "  got $(cat "$tmp/code"): $(head -c 400 "$tmp/body")"; false; }
}
alive() { post /v1/chat/completions '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"temperature":0}' &&
  [[ "$(cat "$tmp/code")" == 200 ]] && jq -e '.choices[0].finish_reason' "$tmp/body" >/dev/null; }

check "a good request answers" alive
post /v1/chat/completions '{"model":"m","messages":[{"role":"user","content":"hi"}'
check "malformed JSON: 400 naming the JSON error" 'is_error 400 "not valid JSON"'
check "  still serving" alive
post /v1/chat/completions '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
check "unknown model: 404 model_not_found" 'is_error 404 "does not exist" && [[ "$(jq -r .error.code "$tmp/body")" == model_not_found ]]'
post /v1/chat/completions '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":2001}'
check "max_tokens over the limit: 400 naming max_tokens" 'is_error 400 "max_tokens" && [[ "$(jq -r .error.param "$tmp/body")" == max_tokens ]]'
long=$(printf 'word %.0s' $(seq 1 3000))
post /v1/completions "{\"model\":\"m\",\"prompt\":\"$long\",\"max_tokens\":8}"
check "prompt too long for the context: 400 with the context length" 'is_error 400 "maximum context length is 2048 tokens"'
check "  still serving" alive
head -c 300000 /dev/zero | tr '\0' 'a' >"$tmp/big"
code=$(curl -s -o "$tmp/body" -w '%{http_code}' "${AUTH[@]}" "$U/v1/completions" --data-binary @"$tmp/big")
echo "$code" >"$tmp/code"
check "a body over --max-body: 413" 'is_error 413 "larger than"'
code=$(curl -s -o "$tmp/body" -w '%{http_code}' -H "Authorization: Bearer sk-wrong" "$U/v1/models"); echo "$code" >"$tmp/code"
check "a wrong API key: 401" 'is_error 401 "API key"'
code=$(curl -s -o "$tmp/body" -w '%{http_code}' "$U/v1/models"); echo "$code" >"$tmp/code"
check "no API key: 401" 'is_error 401 "API key"'
post /v1/embeddings '{}'
check "unknown path: 404" 'is_error 404 "not found"'
post /v1/chat/completions '{"model":"m","messages":"hi"}'
check "messages not an array: 400 naming messages" 'is_error 400 "messages"'
post /v1/chat/completions '{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}'
check "a bad temperature: 400 naming it" 'is_error 400 "temperature"'
# a client that disconnects mid-stream: read the first event and close the socket. Each stream would
# run 2000 tokens (ignore_eos); the server notices the closed socket at its next writes and drops the
# sequence, which /health counts as cancelled.
"$PY" - "$SERVE_PORT" "$KD_TEST_KEY" <<'PY' >"$tmp/dc.out" 2>&1
import json, socket, sys
port, key = int(sys.argv[1]), sys.argv[2]
for _ in range(3):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    body = json.dumps({"model": "m", "prompt": "hello", "max_tokens": 2000, "ignore_eos": True, "temperature": 0.8, "seed": 1, "stream": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while b"data: " not in got:
        got += s.recv(4096)
    s.close()
print("disconnected 3 streams")
PY
check "clients that disconnect mid-stream" 'grep -q "disconnected 3 streams" "$tmp/dc.out" || { cat "$tmp/dc.out"; false; }'
cancelled() { curl -s "${AUTH[@]}" "$U/health" | jq -e '.cancelled >= 3 and .running == 0' >/dev/null; }
for _ in $(seq 1 600); do cancelled && break; sleep 0.1; done
check "  their generations were cancelled, nothing left running" 'cancelled || curl -s "${AUTH[@]}" "$U/health"'
check "  still serving" alive
# the full stream of the same kind still completes ([DONE]) after those
curl -sN "${AUTH[@]}" "$U/v1/completions" -d '{"model":"m","prompt":"hello","max_tokens":16,"stream":true}' >"$tmp/stream"
check "a whole stream ends with [DONE]" 'tail -2 "$tmp/stream" | grep -q "data: \[DONE\]"'
check "SIGTERM stops the server cleanly" 'serve_stop'
check "no crash reports in the server log" '! grep -Ei "sanitizer|segmentation|abort" "$SERVE_LOG"'
# the KV cache budget (--max-kv-mb): a request that alone needs more is 400; with room for one long
# request, a second one while the first runs is 503 with Retry-After, naming the flag
serve_start "$tmp/m" --name m --max-tokens 2000 --max-kv-mb 1 --api-key-env KD_TEST_KEY || { echo "FAIL serve did not start"; exit 1; }
U="http://127.0.0.1:$SERVE_PORT"
post /v1/completions '{"model":"m","prompt":"hello","max_tokens":2000}'
check "--max-kv-mb 1: a request needing more is 400" 'is_error 400 "more than the server'"'"'s whole KV budget of 1.0 MiB (--max-kv-mb)"'
need=$(jq -r .error.message "$tmp/body" | grep -o 'needs [0-9.]* MiB' | grep -o '[0-9.]*')
check "  small ones are served" alive
serve_stop >/dev/null 2>&1
mb=$("$PY" -c "import math,sys; print(math.ceil(float(sys.argv[1]) * 1.5))" "$need")
serve_start "$tmp/m" --name m --max-tokens 2000 --max-kv-mb "$mb" --api-key-env KD_TEST_KEY || { echo "FAIL serve did not start"; exit 1; }
U="http://127.0.0.1:$SERVE_PORT"
curl -sN "${AUTH[@]}" "$U/v1/completions" -d '{"model":"m","prompt":"hello","max_tokens":2000,"ignore_eos":true,"stream":true}' >"$tmp/long" &
long_pid=$!
running() { curl -s "${AUTH[@]}" "$U/health" | jq -e '.running == 1' >/dev/null; }
for _ in $(seq 1 600); do running && break; sleep 0.1; done
code=$(curl -s -D "$tmp/hdr" -o "$tmp/body" -w '%{http_code}' "${AUTH[@]}" "$U/v1/completions" -H 'Content-Type: application/json' \
  --data-binary '{"model":"m","prompt":"hello","max_tokens":2000}'); echo "$code" >"$tmp/code"
check "--max-kv-mb $mb ($need MiB a request): a second long request while one runs is 503" \
  'is_error 503 "KV cache budget of" && grep -qi "^Retry-After: 1" "$tmp/hdr" && grep -q -- "--max-kv-mb" "$tmp/body"'
kill "$long_pid" 2>/dev/null; wait "$long_pid" 2>/dev/null
for _ in $(seq 1 600); do curl -s "${AUTH[@]}" "$U/health" | jq -e '.running == 0' >/dev/null && break; sleep 0.1; done
check "  once it ends, served again" alive
check "SIGTERM stops the second server cleanly" 'serve_stop'
# --guide: a level it does not know is a usage error naming the levels; a guided server answers chat
# requests with tools, and a tool it cannot guide (a 300-byte name) is a 400 naming `tools`
"$K" serve --model "$tmp/m" --guide keys >"$tmp/g.out" 2>&1; rc=$?
check "--guide keys: exit 2 naming the levels" '[ $rc -eq 2 ] && grep -q "takes none, names, json or schema, got .keys." "$tmp/g.out"'
serve_start "$tmp/m" --name m --guide schema --api-key-env KD_TEST_KEY || { echo "FAIL guided serve did not start"; exit 1; }
U="http://127.0.0.1:$SERVE_PORT"
tools=$(jq -c '[.[] | {type, function: {name: .function.name, parameters: .function.parameters}}]' "$tmp/tools.json")
post /v1/chat/completions '{"model":"m","messages":[{"role":"user","content":"read a.txt"}],"tools":'"$tools"',"max_tokens":24,"temperature":1.5,"seed":3}'
check "--guide schema: a chat request with tools answers 200" '[[ "$(cat "$tmp/code")" == 200 ]] && jq -e ".choices[0].finish_reason" "$tmp/body" >/dev/null'
long=$(printf 'x%.0s' $(seq 1 300))
post /v1/chat/completions '{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"'"$long"'"}}]}'
check "--guide schema: a 300-byte tool name is 400 naming tools" 'is_error 400 "guided names are 1 to 256 bytes" && [[ "$(jq -r .error.param "$tmp/body")" == tools ]]'
check "  still serving" alive
check "SIGTERM stops the guided server cleanly" 'serve_stop'
exit $fail
