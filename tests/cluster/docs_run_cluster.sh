#!/usr/bin/env bash
# docs/slurm.md's several-nodes commands (group cluster of tests/lib/doc_commands.txt), run exactly as
# written on the 3-node namespace cluster (tests/cluster/lib/cluster-up.sh), in a sandbox repository
# (tests/lib/docs_run.bash) that has the build and no tokenizer, with jobs/demo.yaml's size keys shrunk:
#  - submit.sh with --nodes=2 --ntasks-per-node=1 --cpus-per-task=2: the full chain generate -> train ->
#    eval, every stage on 2 nodes with 2 threads per rank (SLURM_CPUS_PER_TASK), the student tokenizer
#    made by the first stage (from nothing);
#  - the 3-element generation array with --ntasks=1 --cpus-per-task=2: the elements run on different
#    nodes, and the merged dataset equals the first chain's;
#  - sbatch --nodes=2 ... slurm/train.sbatch by hand: 2 ranks on 2 nodes (the training is complete, so
#    it starts, logs and skips).
source "$KD_SOURCE_DIR/tests/cluster/lib/cluster.bash"
cluster_up 3
source "$KD_SOURCE_DIR/tests/lib/docs_run.bash"
KD_DOCS_TMP="$T" docs_sandbox
docs_shrunk_demo
trap 'docs_cleanup; cluster_teardown' EXIT
export -n KDSTEP                     # the jobs find build/kdstep under the submit directory, as documented
unset KDSTEP_THREADS OMP_NUM_THREADS # threads follow the allocation here
[[ -e models/student/tokenizer ]] && fail "the sandbox already has a tokenizer"

# check_chain N STAGES...: the ids submit.sh printed, one per stage, every job COMPLETED; prints nothing
check_chain() {
  local n=$1 s id st; shift
  [[ "$(awk '{print $1}' "$KD_LOG/$n.out" | tr '\n' ' ')" == "$* " ]] || { out "$n"; fail "submit.sh printed other stages than: $*"; }
  for s in "$@"; do
    id=$(awk -v s="$s" '$1 == s {print $2}' "$KD_LOG/$n.out")
    st=$(wait_job "$id" 600)
    [[ "$st" == COMPLETED ]] || { tail -n 30 kdstep-*.out 2>/dev/null; fail "$s job $id ended $st"; }
  done
}
log_of() { awk -v s="$2" '$1 == s {print $4}' "$KD_LOG/$1.out"; } # N STAGE -> the log file submit.sh named

kd_before() { # N FILE COMMAND
  CUR=$3
  case "$CUR" in
    "KDSTEP_GEN_ARRAY=3 slurm/submit.sh "*)
      mv runs/demo "$SB/first-run" ;;
  esac
}

kd_after() { # N
  local n=$1 s f id
  case "$CUR" in
    "slurm/submit.sh jobs/demo.yaml --nodes=2 --ntasks-per-node=1 --cpus-per-task=2")
      check_chain "$n" generate train eval
      [[ -s runs/demo/eval/report.json && -s models/student/tokenizer/tokenizer.json ]] || fail "no eval report or no tokenizer after the chain"
      grep -q "making the student tokenizer" "$(log_of "$n" generate)" || fail "the generate stage did not make the tokenizer"
      for s in generate train eval; do
        f=$(log_of "$n" "$s")
        [[ -s "$f" ]] || fail "submit.sh named $f as the $s log, and it is not there"
        id=$(awk -v s="$s" '$1 == s {print $2}' "$KD_LOG/$n.out")
        [[ "$(job_field "$id" NumNodes)" == 2 ]] || fail "$s ran on $(job_field "$id" NodeList), not 2 nodes"
        grep -Eq "host node[1-3], rank 0 of 2: 2 threads \(SLURM_CPUS_PER_TASK\)" "$f" && grep -Eq "host node[1-3], rank 1 of 2: 2 threads \(SLURM_CPUS_PER_TASK\)" "$f" \
          || { cat "$f"; fail "$s: the ranks did not run 2 threads each from --cpus-per-task=2"; }
        [[ "$(grep -o "host node[1-3], rank 0" "$f" | head -n 1 | cut -c6-10)" != "$(grep -o "host node[1-3], rank 1" "$f" | head -n 1 | cut -c6-10)" ]] \
          || fail "$s: both ranks on one node"
      done
      [[ "$(kdstep run jobs/demo.yaml --sbatch-shape)" == "--ntasks=2" ]] || fail "kdstep run jobs/demo.yaml --sbatch-shape does not print --ntasks=2" ;;
    "KDSTEP_GEN_ARRAY=3 slurm/submit.sh jobs/demo.yaml --ntasks=1 --cpus-per-task=2")
      check_chain "$n" generate merge train eval
      id=$(awk '$1 == "generate" {print $2}' "$KD_LOG/$n.out")
      local nodes
      nodes=$(for a in 0 1 2; do job_field "${id}_$a" BatchHost; done | sort -u | wc -l)
      ((nodes >= 2)) || fail "the 3 array elements all ran on one node"
      echo "the 3 array elements ran on $nodes nodes"
      "$PY" "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$SB/first-run/dataset" runs/demo/dataset \
        || fail "the merged 3-slice dataset differs from the first chain's" ;;
    "sbatch --nodes=2 --ntasks-per-node=1 --cpus-per-task=2 slurm/train.sbatch jobs/demo.yaml")
      id=$(grep -o "[0-9]*" "$KD_LOG/$n.out" | tail -n 1)
      [[ "$(wait_job "$id" 300)" == COMPLETED ]] || { cat kdstep-train-"$id".out; fail "the hand-submitted train job did not complete"; }
      grep -q "2 ranks on node" kdstep-train-"$id".out || { cat kdstep-train-"$id".out; fail "the hand-submitted train job did not get 2 ranks on 2 nodes"; } ;;
  esac
}

docs_run cluster
exit $fail
