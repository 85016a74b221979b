# Runs the commands of README.md and docs/ as they are written (sourced by tests/*/docs_run_*.sh).
# tests/lib/doc_commands.py says which text is a command; tests/lib/doc_commands.txt puts each one in
# a group; `docs_run GROUP` runs that group's commands in the table's order, exactly as the docs
# write them, in one bash session inside a sandbox that looks like the repository root:
#   $SB/repo/{configs,slurm,tests,src,include} -> the source tree (read-only use), build -> the build
#   tree, jobs/ a folder of links to jobs/* where demo.yaml is the real one with its size keys shrunk
#   (docs_shrunk_demo), and $SB/shared -> ../shared, so ../shared/data paths resolve as in a checkout;
#   `kdstep` is on PATH; mpirun may oversubscribe the 2 cores.
# Before command N the group's hook `kd_before N FILE COMMAND` runs: it prepares inputs the command
# names, starts local stand-ins, and may set the MORE array, which is appended to the command (or
# replaces its trailing " ..."): only size knobs and the stand-ins' addresses, never what the doc says.
# Command N's stdout and stderr land in $KD_LOG/N.out and N.err; `kd_after N` checks them.
set -uo pipefail
: "${KDSTEP:?}" "${KD_SOURCE_DIR:?}" "${KD_BUILD_DIR:?}"
export PATH="$(cd "$(dirname "$KDSTEP")" && pwd):$PATH"
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=1 KDSTEP_THREADS=1 KDSTEP_PROGRESS_INTERVAL=1000
PY=/usr/bin/python3
KD_BG_PIDS=()

kd_before() { :; }
kd_after() { :; }
fail() { echo "FAIL $*"; exit 1; }
kd_failed() { # N status
  echo "FAIL command [$1] exited $2; its stderr ends:"
  tail -n 25 "$KD_LOG/$1.err"
  exit 1
}
out() { cat "$KD_LOG/$1.out"; }
err() { cat "$KD_LOG/$1.err"; }

docs_cleanup() {
  local p
  for p in "${KD_BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  [[ -n "${SB:-}" ]] && rm -rf "$SB"
}

# docs_sandbox: make the sandbox and cd into its repository root.
docs_sandbox() {
  SB=$(mktemp -d "${KD_DOCS_TMP:-/tmp}/kd-docs.XXXXXX") # tests/cluster: outside /tmp (each node has its own)
  trap docs_cleanup EXIT
  KD_LOG="$SB/log"
  mkdir -p "$SB/repo/jobs" "$KD_LOG"
  ln -s "$(cd "$KD_SOURCE_DIR/../shared" 2>/dev/null && pwd || echo /nonexistent)" "$SB/shared"
  local d f
  for d in configs slurm tests src include; do ln -s "$KD_SOURCE_DIR/$d" "$SB/repo/$d"; done
  ln -s "$KD_BUILD_DIR" "$SB/repo/build"   # build/kdstep, where scripts look when $KDSTEP is unset
  for f in "$KD_SOURCE_DIR"/jobs/*; do ln -s "$f" "$SB/repo/jobs/$(basename "$f")"; done
  cd "$SB/repo"
}

# docs_shrunk_demo: replace the sandbox's jobs/demo.yaml by the real file with its size keys made
# small (fails when a key is no longer there, so the test follows the file instead of going stale).
docs_shrunk_demo() {
  rm -f jobs/demo.yaml
  "$PY" - "$KD_SOURCE_DIR/jobs/demo.yaml" jobs/demo.yaml <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for pat, new in [(r"(synth_count: *)\d+", r"\g<1>48"), (r"(heldout_count: *)\d+", r"\g<1>6"),
                 (r"(- model\.preset=)\w+", r"\g<1>tiny"), (r"(- train\.steps=)\d+", r"\g<1>4"),
                 (r"(- train\.micro_batch=)\d+", r"\g<1>4"), (r"(- train\.eval_every=)\d+", r"\g<1>2"),
                 (r"(- train\.checkpoint_every=)\d+", r"\g<1>2"), (r"(- eval\.max_new_tokens=)\d+", r"\g<1>12")]:
    text, n = re.subn(pat, new, text)
    assert n == 1, f"jobs/demo.yaml: no single match for {pat}"
open(sys.argv[2], "w").write(text)
PY
  [[ $? -eq 0 ]] || fail "could not shrink jobs/demo.yaml"
}

# docs_run GROUP: run the group's commands (see the top of this file).
docs_run() {
  local group=$1 script="$KD_LOG/$1.sh"
  "$PY" "$KD_SOURCE_DIR/tests/lib/doc_commands.py" script "$group" >"$script" || fail "doc_commands.py script $group"
  KD_RAN=0 KD_SKIPPED=()
  source "$script"
  (( KD_RAN > 0 )) || fail "no command of group $group found in the docs"
  echo "ran $((KD_RAN - ${#KD_SKIPPED[@]})) documented commands of group $group as written (${#KD_SKIPPED[@]} skipped)"
}

# docs_serve PORT [flags]: the stub teacher as an OpenAI server on loopback, the stand-in for a
# remote endpoint (vLLM, llama.cpp, OpenAI); returns once it answers /v1/models.
docs_serve() {
  local port=$1; shift
  if ss -ltnH 2>/dev/null | awk '{print $4}' | grep -qE "[:.]$port\$"; then
    echo "skip: port $port is in use here, and the doc's command names it"; exit 77
  fi
  kdstep teacher serve --port "$port" --tools "$KD_SOURCE_DIR/configs/tools.json" "$@" >"$KD_LOG/serve-$port.out" 2>&1 &
  KD_BG_PIDS+=($!)
  local i
  for ((i = 0; i < 100; i++)); do
    curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$KD_LOG/serve-$port.out"; fail "kdstep teacher serve --port $port did not answer"
}
