#!/usr/bin/env bash
# The commands of docs/serve.md and the guide's "Trying the student", run as written in a sandbox
# where runs/demo/train/final is a student trained here (tests/lib/serve_lib.bash) and
# configs/tools.json its tool: `kdstep serve` on port 8000 (inside a private network namespace, so
# the fixed port cannot clash with other tests), the curl example against it, and `kdstep chat`
# through a pipe and, when tmux is installed, in a tmux pane driven with send-keys/capture-pane.
set -u
source "$KD_SOURCE_DIR/tests/lib/serve_lib.bash"
command -v curl >/dev/null && command -v jq >/dev/null || { echo "skip: curl and jq are needed"; exit 77; }
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
serve_trained_student FX || { echo "FAIL: could not train the fixture student"; exit 1; }
mkdir -p "$tmp/sb/runs/demo/train" "$tmp/sb/configs"
cp -r "$FX/run/final" "$tmp/sb/runs/demo/train/final"
cp "$FX/tools.json" "$tmp/sb/configs/tools.json"
cd "$tmp/sb"
export PATH="$(dirname "$K"):$PATH"   # the docs write `kdstep`
# ---- docs/serve.md and guide.md: serve on 8000 and the curl example, in a private network namespace
if unshare -n true 2>/dev/null; then
  cat >"$tmp/ns.sh" <<'NS'
set -u
ip link set lo up
for line in "kdstep serve --model runs/demo/train/final --port 8000 --name student" "kdstep serve --model runs/demo/train/final --port 8000"; do
  $line >serve.out 2>serve.err & pid=$!
  for _ in $(seq 1 300); do grep -q "listening on http://127.0.0.1:8000" serve.out 2>/dev/null && break; sleep 0.1; done
  name=$(curl -s http://127.0.0.1:8000/v1/models | jq -r '.data[0].id')
  echo "served as: $name"
  if [[ "$name" == student ]]; then
    curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' -d '{"model": "student", "messages": [{"role": "user", "content": "What is the weather in Oslo?"}], "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}], "temperature": 0}' >answer.json
  fi
  kill -TERM $pid; wait $pid; echo "serve exit $?"
done
NS
  unshare -n bash "$tmp/ns.sh" >"$tmp/ns.out" 2>&1
  cat "$tmp/ns.out"
  check "serve.md: kdstep serve --name student on port 8000" 'grep -q "served as: student" "$tmp/ns.out"'
  check "guide.md: kdstep serve without --name serves the path as the name" 'grep -q "served as: runs/demo/train/final" "$tmp/ns.out"'
  check "both stop cleanly on SIGTERM" '[ "$(grep -c "serve exit 0" "$tmp/ns.out")" = 2 ]'
  check "serve.md: the curl example gets a chat.completion" 'jq -e ".object == \"chat.completion\" and (.choices[0].finish_reason | type == \"string\")" answer.json >/dev/null || cat answer.json'
  echo "     the answer: $(jq -c '.choices[0].message' answer.json 2>/dev/null)"
else
  echo "skip (serve on port 8000): cannot make a network namespace here (unshare -n)"
fi
# ---- guide.md / serve.md: kdstep chat, through a pipe
printf 'What is the weather in Oslo?\n{"city": "Oslo", "temperature": 3, "conditions": "snow"}\n/reset\nhello\n/quit\n' |
  timeout 300 kdstep chat --model runs/demo/train/final --tools configs/tools.json >"$tmp/chat.out" 2>&1; rc=$?
cat "$tmp/chat.out"; echo
check "chat through a pipe exits 0" '[ $rc -eq 0 ]'
check "chat shows a parsed tool call, asks for its result and answers after it" \
  'grep -q "tool call> get_weather {\"city\": " "$tmp/chat.out" && grep -q "result of get_weather> assistant> " "$tmp/chat.out"'
check "/reset starts a new conversation" 'grep -q "(new conversation)" "$tmp/chat.out"'
# ---- the same in a terminal (tmux): send-keys, capture-pane
if command -v tmux >/dev/null; then
  sock="$tmp/tmux.sock"
  tmux -S "$sock" new-session -d -x 200 -y 50 "kdstep chat --model runs/demo/train/final --tools configs/tools.json; echo CHAT-EXITED; sleep 30"
  wait_for() { for _ in $(seq 1 600); do tmux -S "$sock" capture-pane -p | grep -q "$1" && return 0; sleep 0.2; done; return 1; }
  # capture-pane drops trailing blanks: the prompts read "you>" and "result of get_weather>"
  wait_for "^you>" && tmux -S "$sock" send-keys "What is the weather in Oslo?" Enter
  ok1=0; wait_for "result of get_weather>" && ok1=1
  tmux -S "$sock" send-keys '{"temperature": 3}' Enter
  wait_for "assistant>" && tmux -S "$sock" send-keys "/quit" Enter
  wait_for "CHAT-EXITED"; ok2=$?
  tmux -S "$sock" capture-pane -p >"$tmp/pane.txt"
  tmux -S "$sock" kill-server 2>/dev/null
  cat "$tmp/pane.txt" | sed '/^$/d'
  check "chat in a tmux pane: tool call shown, result asked, /quit leaves" '[ $ok1 = 1 ] && [ $ok2 = 0 ] && grep -q "^tool call> get_weather" "$tmp/pane.txt"'
else
  echo "skip (tmux part): tmux is not installed"
fi
exit $fail
