#!/usr/bin/env bash
# Finding H of issue 21: credentials.
#   - An API key holding CR/LF (or any control character) is refused before any request is sent:
#     on the old main it injected headers into every request. A header-recording teacher proves no
#     request arrived; the message names the variable, never the key.
#   - A teacher URL with user:password@ is redacted wherever kdstep prints or records it: the
#     failure records, the log, the config recorded in the HDF5 attributes and stats.json hold "***@", never the password.
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tools="$KD_SOURCE_DIR/configs/tools.json"
tmp=$(mktemp -d)
SPID=""
trap '[[ -n "$SPID" ]] && kill $SPID 2>/dev/null; rm -rf "$tmp"' EXIT
nfail=0
problem() { echo "FAIL: $*" >&2; nfail=$((nfail + 1)); }
/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/hostile_teacher.py" "$tmp/port" --log-headers "$tmp/headers.log" 2>"$tmp/srv.err" &
SPID=$!
for _ in $(seq 300); do [[ -s "$tmp/port" ]] && break; sleep 0.1; done
[[ -s "$tmp/port" ]] || { echo "FAIL: teacher did not start"; cat "$tmp/srv.err"; exit 1; }
port=$(cat "$tmp/port")
"$KDSTEP" prompts synth --tools "$tools" -n 3 --seed 8 -o "$tmp/p.jsonl" >/dev/null
gen() { "$KDSTEP" generate --prompts "$tmp/p.jsonl" --tokenizer-path "$tok" --tools "$tools" --set teacher.max_retries=0 --set teacher.scoring=none "$@"; }

# ---- 1. CR/LF in the API key ------------------------------------------------------------------------
export KD_TEST_CRLF_KEY=$'sk-abc123\r\nX-Injected: yes'
gen --teacher "http://127.0.0.1:$port/ok/v1" --set teacher.api_key_env=KD_TEST_CRLF_KEY --out "$tmp/crlf" >"$tmp/crlf.log" 2>&1 &&
  problem "a key with CR/LF: exit 0"
grep -q 'API key in \$KD_TEST_CRLF_KEY holds a control character (byte 0x0D at position 9' "$tmp/crlf.log" ||
  { problem "a key with CR/LF: no clear refusal"; cat "$tmp/crlf.log" >&2; }
grep -q "sk-abc123" "$tmp/crlf.log" && problem "the refusal prints the key"
[[ ! -s "$tmp/headers.log" ]] || problem "requests reached the teacher: $(head -3 "$tmp/headers.log")"
grep -qi "x-injected" "$tmp/headers.log" 2>/dev/null && problem "a header was injected"
# positive control: a clean key arrives as one Authorization header
export KD_TEST_OK_KEY=sk-clean-key
gen --teacher "http://127.0.0.1:$port/ok/v1" --set teacher.api_key_env=KD_TEST_OK_KEY --out "$tmp/okkey" >/dev/null 2>&1 ||
  problem "a clean key: generate failed"
grep -q "Authorization: Bearer sk-clean-key" "$tmp/headers.log" || problem "the header log saw no Authorization (the check above proves nothing)"

# ---- 2. userinfo in the teacher URL -----------------------------------------------------------------
PW=pw-s3cret-4711
gen --teacher "http://alice:$PW@127.0.0.1:$port/nosuch/v1" --out "$tmp/ui" >"$tmp/ui.log" 2>&1 ||
  { problem "userinfo: generate failed"; tail -3 "$tmp/ui.log" >&2; }
grep -q 'http://\*\*\*@127.0.0.1' "$tmp/ui/failures.jsonl" ||
  { problem "userinfo: the failure record does not show the redacted URL (the check below proves nothing)"; head -c 400 "$tmp/ui/failures.jsonl" >&2; }
gen --teacher "http://alice:$PW@127.0.0.1:$port/ok/v1" --out "$tmp/ui_ok" >>"$tmp/ui.log" 2>&1 || problem "userinfo: generate (ok) failed"
grep -raq 'url: "http://\*\*\*@127.0.0.1' "$tmp/ui_ok" ||
  problem "userinfo: the config recorded in the dataset's HDF5 attributes does not hold the redacted URL"
if grep -rlaF -- "$PW" "$tmp/ui.log" "$tmp/ui" "$tmp/ui_ok" >/dev/null 2>&1; then
  problem "the password appears in: $(grep -rlaF -- "$PW" "$tmp/ui.log" "$tmp/ui" "$tmp/ui_ok" | tr '\n' ' ')"
fi
grep -q "Authorization: Basic" "$tmp/headers.log" || problem "userinfo: curl did not send the credentials (redaction must not drop them)"

echo "credentials: $nfail problems"
((nfail == 0))
