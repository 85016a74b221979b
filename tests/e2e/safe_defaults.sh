#!/usr/bin/env bash
# Safe defaults, each checked against the real thing:
#  1. TLS verification is on: a teacher behind a self-signed certificate (openssl s_server) is
#     refused with a certificate error; only teacher.insecure_tls=true (explicit) gets past the
#     handshake.
#  2. `kdstep teacher serve` binds loopback by default (ss shows 127.0.0.1:PORT, not 0.0.0.0).
#  3. Outputs are written to temporary names and renamed (strace of generate and prompts synth):
#     no file in the output folder is ever opened with O_TRUNC under its final name. HDF5 seals
#     write new segment files and compactions new shard files, each under a temp name then renamed
#     (a crash loses only unsealed samples), and failures.jsonl is append-only (O_APPEND).
#  (Output folders are not overwritten without --force: tests/e2e/bad_inputs.sh, "resume_*",
#  "not_ours" and "force".)
set -euo pipefail
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
tok=$(kd_student_tokenizer)
tools="$KD_SOURCE_DIR/configs/tools.json"
tmp=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$KDSTEP" prompts synth --tools "$tools" -n 3 --seed 2 -o "$tmp/p.jsonl" >/dev/null

# ---- 1. TLS verification ----------------------------------------------------------------------------
"$KDSTEP" config | grep -qx "  insecure_tls: false" || fail "teacher.insecure_tls does not default to false"
if command -v openssl >/dev/null; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 1 -subj /CN=127.0.0.1 2>/dev/null
  port=$(/usr/bin/python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
  openssl s_server -accept "127.0.0.1:$port" -cert "$tmp/cert.pem" -key "$tmp/key.pem" -www -quiet >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  common=(--prompts "$tmp/p.jsonl" --tokenizer-path "$tok" --tools "$tools" --teacher "https://127.0.0.1:$port"
          --set teacher.max_retries=0 --set teacher.timeout_s=5)
  "$KDSTEP" generate "${common[@]}" --out "$tmp/tls" >"$tmp/tls.log" 2>&1 || true
  cat "$tmp/tls.log" "$tmp/tls/failures.jsonl" 2>/dev/null | grep -qiE "certificate|SSL peer|self.signed" ||
    fail "a self-signed teacher was not refused for its certificate: $(tail -3 "$tmp/tls.log")"
  "$KDSTEP" generate "${common[@]}" --out "$tmp/tls-off" --set teacher.insecure_tls=true >"$tmp/tls-off.log" 2>&1 || true
  if cat "$tmp/tls-off.log" "$tmp/tls-off/failures.jsonl" 2>/dev/null | grep -qiE "certificate problem|self.signed"; then
    fail "teacher.insecure_tls=true still fails verification (the check above proves nothing)"
  fi
  echo "safe_defaults: TLS verified by default (self-signed teacher refused), opt-out explicit"
else
  echo "safe_defaults: openssl missing; TLS only checked in the config defaults"
fi

# ---- 2. the stub server binds loopback --------------------------------------------------------------
"$KDSTEP" teacher serve --port 0 --tokenizer "$tok" --tools "$tools" >"$tmp/srv.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$tmp/srv.out" 2>/dev/null && break; sleep 0.1; done
sport=$(grep -o '127.0.0.1:[0-9]*' "$tmp/srv.out" | head -1 | cut -d: -f2)
[[ -n "$sport" ]] || fail "teacher serve did not print its address: $(cat "$tmp/srv.out")"
ss -ltnH | awk '{print $4}' | grep -E ":$sport\$" >"$tmp/listen.txt" || true
[[ -s "$tmp/listen.txt" ]] || fail "nothing listens on port $sport"
if grep -vqx "127.0.0.1:$sport" "$tmp/listen.txt"; then fail "teacher serve listens beyond loopback: $(cat "$tmp/listen.txt")"; fi
echo "safe_defaults: teacher serve listens on 127.0.0.1:$sport only"

# ---- 3. temp names + rename ------------------------------------------------------------------------
if command -v strace >/dev/null; then
  strace -f -qq -e trace=openat,open,creat,rename,renameat,renameat2 -o "$tmp/trace" \
    "$KDSTEP" generate --prompts "$tmp/p.jsonl" --out "$tmp/out" --tokenizer-path "$tok" --tools "$tools" >/dev/null 2>&1 ||
    fail "generate under strace"
  strace -f -qq -e trace=openat,open,creat,rename,renameat,renameat2 -o "$tmp/trace2" \
    "$KDSTEP" prompts synth --tools "$tools" -n 3 --seed 2 -o "$tmp/out/synth.jsonl" >/dev/null 2>&1 || fail "synth under strace"
  /usr/bin/python3 - "$tmp/out" "$tmp/trace" "$tmp/trace2" <<'EOF'
import re, sys
out = sys.argv[1]
bad, renamed, tmps = [], set(), set()
for tr in sys.argv[2:]:
    for line in open(tr):
        m = re.search(r'open(?:at)?\((?:AT_FDCWD, )?"([^"]+)", ([A-Z_|]+)', line)
        if m and out in m.group(1) and "= -1" not in line:
            path, flags = m.group(1), m.group(2)
            writes = "O_WRONLY" in flags or "O_RDWR" in flags
            name = path.rsplit("/", 1)[-1]
            if not writes:
                continue
            if re.search(r"\.tmp", name):
                tmps.add(path)
            elif re.fullmatch(r"shard-\d+\.h5", name) and "O_TRUNC" not in flags:
                pass  # journaled append-in-place, by design
            elif name == "failures.jsonl" and "O_APPEND" in flags:
                pass  # append-only log, by design
            else:
                bad.append(f"{path} opened {flags} under its final name")
        m = re.search(r'rename(?:at2?)?\((?:AT_FDCWD, )?"([^"]+)", (?:AT_FDCWD, )?"([^"]+)"', line)
        if m and "= 0" in line:
            renamed.add(m.group(1))
never = sorted(tmps - renamed)
if never:
    bad.append(f"temp files never renamed: {never}")
if bad or not tmps:
    sys.exit("FAIL: " + ("; ".join(bad) if bad else "no temp files seen (strace did not trace?)"))
print(f"safe_defaults: {len(tmps)} files written to temp names and renamed; shards appended, failures.jsonl appended")
EOF
else
  echo "safe_defaults: strace missing; temp-name check skipped"
fi
