# Shared by the tests of tests/cluster/ (sourced; not a test): brings the 3-node cluster up in a folder
# outside /tmp, tears it down on every exit path, and gives the helpers the tests share.
#   cluster_up [N]        -> KD_CLUSTER_DIR, SLURM_CONF and the OMPI_MCA_* of its env exported; exits 77
#                            (skip) where namespaces or Slurm are not available
#   on I CMD...           -> run CMD inside node I (hostname node$I, its own /tmp, its own network)
#   wait_job ID [T]       -> the job's final state (COMPLETED, FAILED, ...), or TIMEOUT(state) after T s
#   job_file NAME WORKDIR [override lines]  -> $T/NAME.yaml, a tiny job (tiny model, few prompts)
#   check NAME CONDITION  -> "ok"/"FAIL" line; any FAIL makes the test fail
set -u
KD_SOURCE_DIR="${KD_SOURCE_DIR:?}"
: "${KDSTEP:?}" "${KD_BUILD_DIR:?}"
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
clib="$KD_SOURCE_DIR/tests/cluster/lib"
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
# threads: one per rank unless a test asks otherwise (2 cores shared by 3 nodes and the host)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export KDSTEP_THREADS=1 OMP_NUM_THREADS=1 KDSTEP_PROGRESS_INTERVAL=1000

cluster_teardown() {
  [[ -n "${KD_CLUSTER_DIR:-}" ]] && "$clib/cluster-down.sh" "$KD_CLUSTER_DIR" >/dev/null 2>&1
  [[ -n "${T:-}" && "${KD_KEEP:-0}" != 1 ]] && rm -rf "$T"
}
cluster_up() {
  # every node has its own /tmp: the cluster's files and the tests' work folders live outside it
  T=$(mktemp -d "${KD_CLUSTER_TMP:-/var/tmp}/kd-cluster.XXXXXX") || exit 1
  trap cluster_teardown EXIT
  trap 'exit 130' INT TERM
  "$clib/cluster-up.sh" "$T/c" "${1:-3}" >"$T/up.log" 2>&1; local rc=$?
  if ((rc == 77)); then echo "skip: $(grep skip: "$T/up.log" | head -n 1)"; exit 77; fi
  if ((rc != 0)); then echo "FAIL cluster-up.sh exited $rc"; cat "$T/up.log"; exit 1; fi
  source "$T/c/env"
}
on() { local i=$1; shift; "$KD_CLUSTER_DIR/enter" "$i" "$@"; }

wait_job() { # id [timeout_s]
  local id=$1 t=${2:-600} st="" i
  for ((i = 0; i < t * 2; i++)); do
    st=$(scontrol show job "$id" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 | sort -u | tr '\n' ' ')
    st=${st% }
    case "$st" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) echo "$st"; return;; esac
    sleep 0.5
  done
  echo "TIMEOUT($st)"
}
job_field() { scontrol show job "$1" 2>/dev/null | grep -o " $2=[^ ]*" | head -n 1 | cut -d= -f2; }

tok=""
job_file() { # name workdir [extra override lines]
  [[ -n "$tok" ]] || tok=$(kd_student_tokenizer)
  cat >"$T/$1.yaml" <<YAML
job:
  name: $1
  workdir: $2
  ranks: 2
prompts:
  synth_count: ${KD_TEST_PROMPTS:-32}
  synth_seed: 3
  heldout_count: 6
  heldout_seed: 4
tools: $KD_SOURCE_DIR/configs/tools.json
tokenizer: $tok
config: $KD_SOURCE_DIR/configs/process_supervision.yaml
overrides:
  - model.preset=tiny
  - train.micro_batch=2
  - train.seq_len=96
  - train.eval_fraction=0.1
  - eval.max_new_tokens=8
${3:-}
YAML
}
