#!/usr/bin/env bash
# A real client: the official `openai` SDK for node (npm, pinned) calls `kdstep serve` serving a
# tiny student trained here on the stub teacher's answers: models.list, chat with tools -> tool_calls
# that `kdstep score` accepts, streaming == non-streaming, logprobs/top_logprobs, vLLM's
# prompt_logprobs with top-k for every prompt token, a typed 404 error.
set -u
source "$KD_SOURCE_DIR/tests/lib/serve_lib.bash"
command -v node >/dev/null && command -v npm >/dev/null && command -v jq >/dev/null || { echo "skip: node, npm and jq are needed"; exit 77; }
OPENAI_VERSION=6.30.1
NPMDIR="$KD_BUILD_DIR/npm-openai-$OPENAI_VERSION"
if [[ ! -d "$NPMDIR/node_modules/openai" ]]; then
  mkdir -p "$NPMDIR" && (cd "$NPMDIR" && npm install --silent --no-audit --no-fund "openai@$OPENAI_VERSION" >/dev/null 2>&1) \
    || { echo "skip: npm install openai@$OPENAI_VERSION failed (no registry?)"; exit 77; }
fi
fail=0
tmp=$(mktemp -d); trap 'serve_stop >/dev/null 2>&1; rm -rf "$tmp"' EXIT
serve_trained_student FX || { echo "FAIL: could not train the fixture student"; exit 1; }
"$K" prompts synth --tools "$FX/tools.json" -n 8 --seed 77 -o "$tmp/held.jsonl" >/dev/null 2>&1
serve_start "$FX/run/final" --name kdstep-tiny || { echo "FAIL: serve did not start"; exit 1; }
NODE_PATH="$NPMDIR/node_modules" node "$S/tests/e2e/serve_openai.js" "$SERVE_PORT" kdstep-tiny "$FX/tools.json" "$tmp/held.jsonl" "$tmp/pred.jsonl" || fail=1
if "$K" score --predictions "$tmp/pred.jsonl" --answers "$tmp/held.jsonl" --tools "$FX/tools.json" >"$tmp/report.json" 2>"$tmp/score.err" &&
   [[ "$(jq .count "$tmp/report.json")" == 8 ]]; then
  echo "ok   kdstep score accepts the SDK's tool_calls: $(jq -c '{tool_name_accuracy, json_validity, schema_validity, ast_accuracy}' "$tmp/report.json")"
else
  echo "FAIL kdstep score on the SDK's tool_calls"; cat "$tmp/score.err"; fail=1
fi
serve_stop || fail=1
exit $fail
