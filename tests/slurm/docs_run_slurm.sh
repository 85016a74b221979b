#!/usr/bin/env bash
# The Slurm commands of the docs (group slurm of tests/lib/doc_commands.txt), run exactly as written
# in a sandbox repository (tests/lib/docs_run.bash) on the local Slurm: docs/slurm-harness.md's
# block (slurm-up.sh /tmp/kd-slurm, source its env, sinfo / sbatch --wait / squeue, slurm-down.sh),
# and between its up and down the submit.sh lines of README.md and docs/slurm.md on jobs/demo.yaml
# (its size keys made small), from nothing: the sandbox has the build but no tokenizer, which the
# chain's first stage makes (checked equal to jobs/make-student-tokenizer.sh's): the plain chain, the same chain resubmitted with an sbatch option
# (every stage skips its complete output), and the 3-element job array, whose merged dataset must
# equal the plain chain's. Skips (77) without root or Slurm, or when /tmp/kd-slurm is in use.
source "$KD_SOURCE_DIR/tests/lib/docs_run.bash"
source "$KD_SOURCE_DIR/tests/lib/fixtures.sh"
[[ -e /tmp/kd-slurm ]] && { echo "skip: /tmp/kd-slurm exists (a cluster of the docs' example is in use)"; exit 77; }
docs_sandbox
docs_shrunk_demo
# From nothing: the sandbox has the build and no tokenizer; the chain's first stage makes it.
[[ -e models/student/tokenizer ]] && fail "the sandbox already has a tokenizer"
export -n KDSTEP   # the jobs find build/kdstep under the submit directory, as docs/slurm.md says
trap '[[ -f /tmp/kd-slurm/env ]] && "$KD_SOURCE_DIR/tests/slurm/lib/slurm-down.sh" /tmp/kd-slurm >/dev/null 2>&1; rm -rf /tmp/kd-slurm; docs_cleanup' EXIT

kd_failed() { # N status: slurm-up.sh's 77 means no Slurm (or no root) here
  if [[ $2 -eq 77 && "$CUR" == tests/slurm/lib/slurm-up.sh* ]]; then echo "skip: no Slurm here"; exit 77; fi
  echo "FAIL command [$1] exited $2; its output ends:"; tail -n 25 "$KD_LOG/$1.out" "$KD_LOG/$1.err"; exit 1
}

wait_job() { # id [timeout_s] -> the final state (fails fast on a dependency that can never be met)
  local id=$1 t=${2:-600} st="" i
  for ((i = 0; i < t * 2; i++)); do
    st=$(scontrol show job "$id" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 | sort -u | tr '\n' ' ')
    st=${st% }
    case "$st" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) echo "$st"; return;; esac
    scontrol show job "$id" 2>/dev/null | grep -q 'Reason=DependencyNeverSatisfied' && { echo "NEVER($st)"; return; }
    sleep 0.5
  done
  echo "TIMEOUT($st)"
}

# check_chain N STAGES...: the ids submit.sh printed, one per stage in order, and every job COMPLETED
check_chain() {
  local n=$1 s id st; shift
  [[ "$(awk '{print $1}' "$KD_LOG/$n.out" | tr '\n' ' ')" == "$* " ]] || { out "$n"; fail "submit.sh printed other stages than: $*"; }
  for s in "$@"; do
    id=$(awk -v s="$s" '$1 == s {print $2}' "$KD_LOG/$n.out")
    st=$(wait_job "$id" 600)
    [[ "$st" == COMPLETED ]] || { tail -n 20 slurm-*.out 2>/dev/null; fail "$s job $id ended $st"; }
  done
}

kd_before() { # N FILE COMMAND
  CUR=$3
  case "$CUR" in
    "sinfo; sbatch --wait job.sh; squeue")
      printf '#!/bin/bash\n#SBATCH --output=job.out\necho "hello from job $SLURM_JOB_ID on $(hostname)"\n' >job.sh ;;
    "KDSTEP_GEN_ARRAY=3 slurm/submit.sh "*)
      mv runs/demo/dataset "$SB/plain-dataset" && rm -rf runs/demo ;;
  esac
}

kd_after() { # N
  local n=$1
  case "$CUR" in
    "tests/slurm/lib/slurm-up.sh /tmp/kd-slurm")
      grep -qx ready "$KD_LOG/$n.out" || { out "$n"; fail "slurm-up.sh did not print ready"; }
      ctld=$(cat /tmp/kd-slurm/run/slurmctld.pid) || fail "no slurmctld pid file" ;;
    "source /tmp/kd-slurm/env")
      [[ "${SLURM_CONF:-}" == /tmp/kd-slurm/* ]] || fail "source /tmp/kd-slurm/env did not export SLURM_CONF" ;;
    "sinfo; sbatch --wait job.sh; squeue")
      grep -q "idle" "$KD_LOG/$n.out" || { out "$n"; fail "sinfo shows no idle node"; }
      grep -q "^Submitted batch job" "$KD_LOG/$n.out" || { out "$n"; fail "sbatch --wait did not submit"; }
      grep -q "^hello from job [0-9]" job.out || fail "the job did not run (job.out: $(cat job.out 2>&1))" ;;
    "slurm/submit.sh jobs/demo.yaml")
      check_chain "$n" generate train eval
      [[ -s models/student/tokenizer/tokenizer.json ]] || fail "the chain did not make the student tokenizer"
      log=$(awk '$1 == "generate" {print $4}' "$KD_LOG/$n.out")
      grep -q "making the student tokenizer" "$log" || fail "submit.sh's generate log $log does not say it made the tokenizer"
      cmp -s models/student/tokenizer/tokenizer.json <(cd "$SB" && KDSTEP="$KD_BUILD_DIR/kdstep" "$KD_SOURCE_DIR/jobs/make-student-tokenizer.sh" --out "$SB/ref-tok" >/dev/null && cat "$SB/ref-tok/tokenizer.json") \
        || fail "the tokenizer the chain made differs from jobs/make-student-tokenizer.sh's"
      [[ -s runs/demo/eval/report.json && -s runs/demo/eval/report.md ]] || fail "no eval report after the chain"
      sha256sum runs/demo/eval/report.json runs/demo/train/final/model.safetensors >"$SB/first.sha" ;;
    "slurm/submit.sh jobs/demo.yaml --time=02:00:00")
      check_chain "$n" generate train eval
      sha256sum -c --quiet "$SB/first.sha" || fail "the resubmitted chain changed a complete stage's output" ;;
    "KDSTEP_GEN_ARRAY=3 slurm/submit.sh "*)
      check_chain "$n" generate merge train eval
      [[ -s runs/demo/eval/report.json ]] || fail "no eval report after the array chain"
      "$PY" "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$SB/plain-dataset" runs/demo/dataset \
        || fail "the merged 3-slice dataset differs from the plain chain's" ;;
    "tests/slurm/lib/slurm-down.sh /tmp/kd-slurm")
      ! kill -0 "$ctld" 2>/dev/null || fail "slurmctld (pid $ctld) still runs after slurm-down.sh" ;;
  esac
}

docs_run slurm
