#!/usr/bin/env bash
# docs/teachers.md's endpoint examples (group teachers of tests/lib/doc_commands.txt), run exactly as
# written in a sandbox repository (tests/lib/docs_run.bash) against local stand-ins: the doc's own
# `kdstep teacher serve --port 8000 --latency-ms 100` stands in for vLLM on port 8000, a second stub
# server for llama.cpp on 8080, and the OpenAI lines get `--set teacher.url=` of the port-8000 stub
# appended. The " ..." of each generate line becomes a small prompt set, the registry and an --out.
# Each run must finish every prompt with no failure, and the API key must appear in no output.
source "$KD_SOURCE_DIR/tests/lib/docs_run.bash"
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
command -v curl >/dev/null || { echo "skip: no curl"; exit 77; }
tok=$(kd_student_tokenizer)
docs_sandbox
mkdir -p models/student && ln -s "$tok" models/student/tokenizer
kdstep prompts synth --tools configs/tools.json -n 12 --seed 3 -o prompts.jsonl >/dev/null || fail "prompts synth"
runs=0
requests() { curl -sf "http://127.0.0.1:$1/stats" | jq .requests; }

kd_before() { # N FILE COMMAND
  CUR=$3
  case "$CUR" in
    "kdstep teacher serve --port 8000"*)
      if ss -ltnH 2>/dev/null | awk '{print $4}' | grep -qE '[:.]8000$'; then echo "skip: port 8000 is in use here"; exit 77; fi
      # as vLLM would be started for each model the generate lines name (--served-model-name): a
      # request for a model it does not serve gets 404 model_not_found
      MORE=(--served-model-name stub-teacher,Qwen/Qwen3-32B,gpt-4o-mini)
      KD_BG=1 ;;
    "kdstep generate "*)
      runs=$((runs + 1))
      MORE=(--prompts prompts.jsonl --tools configs/tools.json --out "runs/t$runs")
      case "$CUR" in
        *127.0.0.1:8080*) docs_serve 8080; port=8080 ;;
        *api.openai.com*) MORE+=(--set teacher.url=http://127.0.0.1:8000); port=8000 ;;
        *) port=8000 ;;
      esac
      served=$(requests $port) ;;
  esac
}

kd_after() { # N
  local n=$1 i
  case "$CUR" in
    "kdstep teacher serve --port 8000"*)
      for ((i = 0; i < 100; i++)); do curl -sf http://127.0.0.1:8000/v1/models >/dev/null && break; sleep 0.1; done
      curl -sf http://127.0.0.1:8000/v1/models | grep -q '"object"' || { err "$n"; fail "the doc's teacher serve does not answer on 8000"; } ;;
    "kdstep generate "*)
      [[ -s runs/t$runs/dataset.h5 ]] || { tail -20 "$KD_LOG/$n.err"; fail "generate wrote no runs/t$runs/dataset.h5"; }
      "$PY" - "runs/t$runs/dataset.h5" <<'PY' || { tail -20 "$KD_LOG/$n.err"; fail "generate against the stand-in"; }
import h5py, sys
with h5py.File(sys.argv[1], "r") as f:
    n = f["samples/prompt_id"].shape[0]
    assert n == 12, f"{n} samples of 12 prompts"
    assert sorted(f["samples/prompt_id"][:].tolist()) == list(range(12))
    assert f["teacher/topk_ids"].shape[1] == 8
PY
      [[ ! -s runs/t$runs/failures.jsonl ]] || { cat "runs/t$runs/failures.jsonl"; fail "generate recorded failures"; }
      # the stand-in on that port answered this run (at least one request per prompt)
      (( $(requests $port) >= served + 12 )) || fail "the stub on port $port did not serve run $runs" ;;
  esac
}

docs_run teachers
(( runs == 4 )) || fail "ran $runs generate lines of docs/teachers.md, expected 4"
# the key named by teacher.api_key_env never lands in an output or a log
if grep -rl -F 'sk-...' runs "$KD_LOG"/*.out "$KD_LOG"/*.err 2>/dev/null; then fail "the API key appears in an output"; fi
echo "docs/teachers.md: 4 generate lines ran against the stub teacher served on loopback"
