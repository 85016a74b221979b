# Shared by the serve tests: a tokenizer + model folders, and starting/stopping `kdstep serve`.
#   serve_tokenizer DIR TOOLS        BPE (vocab 800) trained on the synthetic corpus over TOOLS, in DIR
#   serve_random_student TOK OUT     tiny preset, random weights (tests/e2e/make_student.py), OUT a model folder
#   serve_trained_student OUTVAR     a tiny student trained on the stub teacher's answers over one tool
#                                    (cached under $KD_BUILD_DIR/serve-fixture, keyed by the sources it depends
#                                    on, built once under flock: the run is deterministic)
#   serve_start DIR [flags...]       starts `kdstep serve --port 0`, sets SERVE_PID and SERVE_PORT
#   serve_stop                       SIGTERM, waits (bounded), fails if it does not stop
K="${KDSTEP:?}"; S="${KD_SOURCE_DIR:?}"
PY=/usr/bin/python3

serve_tokenizer() {
  "$K" tokenizer corpus --tools "$2" --mb 1 -o "$1.corpus.txt" >/dev/null 2>&1 &&
    "$K" tokenizer train --vocab-size 800 --quiet -o "$1" "$1.corpus.txt" >/dev/null 2>&1
}

serve_random_student() {
  "$PY" "$S/tests/e2e/make_student.py" "$S/configs/models/tiny.json" "$1/tokenizer.json" "$2" --seed 3 >/dev/null &&
    cp "$1/tokenizer_config.json" "$2/" 2>/dev/null || true
}

# One tool with one argument (get_weather(city)), 80 prompts, the whole prompt in the training window
# (train.prompt_window), so the student answers full chat prompts as it was trained on them; 100 steps
# of the tiny preset (~50 CPU-seconds) give a student that writes valid calls most of the time.
serve_trained_student() {
  local key base out
  # keyed by everything the training run depends on (not by src/serve, src/cli: serving changes reuse it)
  key=$( (declare -f serve_tokenizer serve_trained_student; cat $(ls "$S"/src/{core,text,tools,teacher,data,gen,model,train}/*.[ch] | grep -v '/decode\.c$') \
        $(ls "$S"/include/kdstep/*.h | grep -Ev '/(engine|serve|serve_api)\.h$') \
        "$S/configs/tools.json" "$S/configs/models/tiny.json") | sha256sum | cut -c1-16)
  base="$KD_BUILD_DIR/serve-fixture"
  out="$base/$key"
  mkdir -p "$base"
  (
    flock -w 1800 9 || exit 1
    [[ -s "$out/run/final/model.safetensors" ]] && exit 0
    rm -rf "$base"/*/ 2>/dev/null; mkdir -p "$out"
    jq '[.[] | select(.function.name == "get_weather") | .function.parameters.properties |= {city: .city}
         | .function.parameters.required = ["city"]]' "$S/configs/tools.json" >"$out/tools.json"
    serve_tokenizer "$out/tok" "$out/tools.json" || exit 1
    "$K" prompts synth --tools "$out/tools.json" -n 80 --seed 6 -o "$out/train.jsonl" >/dev/null 2>&1 || exit 1
    "$K" generate --prompts "$out/train.jsonl" --out "$out/ds" --tools "$out/tools.json" --tokenizer-path "$out/tok" \
      >/dev/null 2>"$out/gen.err" || { cat "$out/gen.err"; exit 1; }
    KDSTEP_THREADS=2 "$K" train --train-data "$out/ds" --out "$out/run" --tokenizer-path "$out/tok" --set model.preset=tiny \
      --set train.seq_len=320 --set train.prompt_window=300 --set train.micro_batch=8 --set train.steps=100 --set train.lr=0.01 \
      --set train.warmup_steps=5 --set train.eval_every=0 --set train.checkpoint_every=0 >/dev/null 2>"$out/train.err" \
      || { cat "$out/train.err"; rm -rf "$out/run"; exit 1; }
  ) 9>"$base/.lock" || return 1
  printf -v "$1" '%s' "$out"
}

serve_start() {
  local dir=$1; shift
  local log; log=$(mktemp)
  "$K" serve --model "$dir" --port 0 "$@" >"$log.out" 2>"$log.err" &
  SERVE_PID=$!
  SERVE_LOG="$log.err"
  SERVE_PORT=
  for _ in $(seq 1 600); do
    SERVE_PORT=$(grep -o '127.0.0.1:[0-9]*' "$log.out" 2>/dev/null | head -1 | cut -d: -f2 || true)
    [[ -n "$SERVE_PORT" ]] && return 0
    kill -0 "$SERVE_PID" 2>/dev/null || { cat "$log.err"; return 1; }
    sleep 0.1
  done
  cat "$log.err"; return 1
}

serve_stop() {
  [[ -n "${SERVE_PID:-}" ]] || return 0
  kill -TERM "$SERVE_PID" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$SERVE_PID" 2>/dev/null || { wait "$SERVE_PID"; local rc=$?; SERVE_PID=; return $rc; }; sleep 0.1; done
  echo "kdstep serve did not stop within 30 s of SIGTERM"; kill -KILL "$SERVE_PID"; SERVE_PID=; return 1
}
