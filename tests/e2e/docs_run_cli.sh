#!/usr/bin/env bash
# The docs' commands that need only the repository (group cli of tests/lib/doc_commands.txt), run
# exactly as written in a sandbox repository (tests/lib/docs_run.bash): kdstep --help, the config
# commands, prompts synth + check, extract on a teacher answer, score on BFCL's simple answers.
source "$KD_SOURCE_DIR/tests/lib/docs_run.bash"
docs_sandbox

kd_before() { # N FILE COMMAND
  CUR=$3
  case "$CUR" in
    "kdstep extract "*)
      # a teacher answer with one Hermes call and the sentence that uses its result
      "$PY" - >teacher.jsonl <<'PY'
import json
text = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>\n'
        'It is 21 degrees in Paris right now.')
print(json.dumps({"text": text, "tool_results": ['{"temperature": 21, "city": "Paris"}']}))
PY
      ;;
    "kdstep score "*)
      if [[ ! -s ../shared/data/bfcl/possible_answer/BFCL_v3_simple.json ]]; then
        KD_SKIP="../shared/data/bfcl is not here"; return
      fi
      # predictions that give, for every call, the first accepted value of each argument ("" means
      # "may be left out"; the values of a dict, also inside a list, are lists of accepted values again)
      "$PY" - ../shared/data/bfcl/possible_answer/BFCL_v3_simple.json >preds.jsonl <<'PY'
import json, sys
def value(v):
    if isinstance(v, dict):
        return {k: first(vv) for k, vv in v.items() if any(x != "" for x in vv)}
    return [value(x) for x in v] if isinstance(v, list) else v
def first(accepted):
    return value(next(x for x in accepted if x != ""))
for line in open(sys.argv[1]):
    a = json.loads(line)
    calls = [{"name": name, "arguments": {k: first(v) for k, v in args.items() if any(x != "" for x in v)}}
             for gt in a["ground_truth"] for name, args in gt.items()]
    print(json.dumps({"id": a["id"], "tool_calls": calls}))
PY
      ;;
  esac
}

kd_after() { # N
  local n=$1
  case "$CUR" in
    "kdstep --help")
      local f name
      for f in "$KD_SOURCE_DIR"/src/cli/cmd_*.c; do
        name=$(basename "$f" .c); name=${name#cmd_}
        grep -qE "^  $name " "$KD_LOG/$n.out" || fail "kdstep --help does not list $name (src/cli/$(basename "$f"))"
      done ;;
    "kdstep config --config "*)
      grep -qE '^  lr: 0\.001$' "$KD_LOG/$n.out" || fail "config --set train.lr=0.001 not in the resolved config" ;;
    "kdstep config --hash")
      grep -qxE '[0-9a-f]{64}' "$KD_LOG/$n.out" || fail "config --hash did not print a SHA-256" ;;
    "kdstep config --reference")
      head -1 "$KD_LOG/$n.out" | grep -qx '| key | type | default | meaning |' || fail "config --reference header"
      grep -qF '| `train.lr` |' "$KD_LOG/$n.out" || fail "config --reference has no train.lr row" ;;
    "kdstep prompts synth "*)
      [[ $(wc -l <prompts.jsonl) -eq 500 ]] || fail "prompts synth -n 500 wrote $(wc -l <prompts.jsonl) lines" ;;
    "kdstep prompts check "*)
      grep -qx "prompts.jsonl: 500 prompts, 0 bad lines" "$KD_LOG/$n.err" || { err "$n"; fail "prompts check summary"; }
      [[ ! -s "$KD_LOG/$n.out" ]] || fail "prompts check printed records for a valid set" ;;
    "kdstep extract "*)
      "$PY" - teacher.jsonl spans.jsonl <<'PY' || fail "extract output"
import json, sys
text = json.loads(open(sys.argv[1]).read())["text"].encode()
out = [json.loads(l) for l in open(sys.argv[2])]
assert len(out) == 1, out
c = out[0]["tool_calls"]
assert len(c) == 1 and c[0]["name"] == "get_weather" and c[0]["registered"] and c[0]["json_valid"], c
a, b = c[0]["name_span"]; assert text[a:b] == b"get_weather", text[a:b]
a, b = c[0]["arguments_span"]; assert json.loads(text[a:b]) == {"city": "Paris", "unit": "celsius"}, text[a:b]
spans = [text[a:b].decode() for a, b in out[0]["integration_spans"]]
assert any("21" in s for s in spans) and any("Paris" in s for s in spans), spans
assert out[0]["errors"] == [], out[0]["errors"]
PY
      ;;
    "kdstep score "*)
      "$PY" - "$KD_LOG/$n.out" <<'PY' || { out "$n"; fail "score report"; }
import json, sys
r = json.load(open(sys.argv[1]))
assert r["count"] == 400 and r["missing"] == 0, r
assert r["tool_name_accuracy"] == 1 and r["ast_accuracy"] == 1, r
PY
      grep -q '^| category | count |' report.md || fail "score --markdown table"
      [[ $(wc -l <items.jsonl) -eq 400 ]] || fail "score --details: $(wc -l <items.jsonl) lines" ;;
  esac
}

docs_run cli
