#!/usr/bin/env bash
# A whole node dies, on the 3-node namespace cluster (tests/cluster/lib/cluster-up.sh) under Slurm:
# every process in one node's namespace (slurmd, slurmstepd, ranks) is SIGKILLed
#  1. mid-training (slurm/train.sbatch on 2 nodes x 1 rank; the node killed is the one without the
#     batch script): Slurm marks it down and requeues the job, which resumes from its last
#     checkpoint on the nodes left; every step is logged once and the final weights are bitwise
#     those of an uninterrupted run (1 node x 2 ranks);
#  2. mid-generation (slurm/generate.sbatch on 2 nodes, against a served stub teacher slowed to
#     200 ms a request; the node killed is the batch node, with rank 0): requeued, resumed, and the
#     dataset equals an uninterrupted one-node run's: no prompt lost, none twice.
source "$KD_SOURCE_DIR/tests/cluster/lib/cluster.bash"
cluster_up 3
export KDSTEP KDSTEP_WORKDIR="$T"
local_mpirun() { env -u OMPI_MCA_btl -u OMPI_MCA_btl_tcp_if_include -u OMPI_MCA_oob_tcp_if_include -u OMPI_MCA_plm_rsh_agent \
  mpirun --oversubscribe "$@"; }
nodes_of() { scontrol show hostnames "$(job_field "$1" NodeList)" 2>/dev/null; }
# node I back up: its namespaces and slurmd, then idle again in Slurm (ReturnToService=2)
node_back() {
  "$clib/cluster-node-start.sh" "$KD_CLUSTER_DIR" "$1" || return 1
  for _ in $(seq 120); do [[ "$(sinfo -h -n "node$1" -o %T)" == idle ]] && return 0; sleep 0.5; done
  return 1
}

# 1. a node dies mid-training
job_file tr "$T/tr" "  - train.steps=40
  - train.checkpoint_every=4
  - train.eval_every=0"
local_mpirun -np 2 "$KDSTEP" run "$T/tr.yaml" --stage generate >"$T/gen-local.log" 2>&1 || { echo "FAIL local generate"; tail "$T/gen-local.log"; exit 1; }
mkdir -p "$T/ref"; cp -r "$T/tr/dataset" "$T/ref/dataset"; sed "s|$T/tr\$|$T/ref|" "$T/tr.yaml" >"$T/ref.yaml"
local_mpirun -np 2 "$KDSTEP" run "$T/ref.yaml" --stage train >"$T/ref.log" 2>&1 || { echo "FAIL reference training"; tail "$T/ref.log"; exit 1; }
jid=$(sbatch --parsable --nodes=2 --ntasks-per-node=1 --output="$T/tr-%j.out" "$KD_SOURCE_DIR/slurm/train.sbatch" "$T/tr.yaml")
for _ in $(seq 1200); do [[ -e "$T/tr/train/checkpoints/latest" ]] && break; sleep 0.1; done
batch=$(job_field "$jid" BatchHost)
victim=$(nodes_of "$jid" | grep -vx "$batch" | head -n 1)
echo "training job $jid on $(job_field "$jid" NodeList) (batch script on $batch); killing $victim after $(cat "$T/tr/train/checkpoints/latest")"
"$clib/cluster-node-kill.sh" "$KD_CLUSTER_DIR" "${victim#node}"
check "the kill landed mid-training" '[[ ! -e "$T/tr/train/final/model.safetensors" ]]'
state=$(wait_job "$jid" 600)
check "the training job completed after a requeue ($state, restarts $(job_field "$jid" Restarts))" '[[ "$state" == COMPLETED && "$(job_field "$jid" Restarts)" -ge 1 ]]'
check "Slurm saw the node fail and took it out" 'grep -q "Node failure on $victim\|NODE FAILURE" "$T"/tr-"$jid".out && ! nodes_of "$jid" | grep -qx "$victim"'
check "the rerun resumed from a checkpoint" 'grep -q "resuming from" "$T"/tr-"$jid".out'
check "every step is in metrics.jsonl once" '[[ "$(grep -o "\"step\":[0-9]*" "$T/tr/train/metrics.jsonl" | sort -u | wc -l)" -eq 40 && "$(grep -c "\"step\"" "$T/tr/train/metrics.jsonl")" -eq 40 ]]'
check "final weights equal the uninterrupted run's, bitwise" 'cmp "$T/tr/train/final/model.safetensors" "$T/ref/train/final/model.safetensors"'
[[ $fail -eq 0 ]] || { cat "$T"/tr-*.out; sinfo -N; }
node_back "${victim#node}"; back=$?
check "$victim is back and idle" '[[ $back -eq 0 ]]'

# 2. a node dies mid-generation: a teacher every node can reach, slowed down so that the kill lands mid-way
# --insecure: the bridge address is reachable only from the namespaces this test made (no api key needed)
"$KDSTEP" teacher serve --host "$KD_CLUSTER_NET.1" --insecure --port 0 --latency-ms 200 --tokenizer "$tok" --tools "$KD_SOURCE_DIR/configs/tools.json" >"$T/teacher.out" 2>"$T/teacher.err" &
teacher=$!
trap 'kill $teacher 2>/dev/null; cluster_teardown' EXIT
for _ in $(seq 100); do port=$(grep -o 'listening on http://[0-9.]*:[0-9]*' "$T/teacher.out" | sed 's/.*://'); [[ -n "$port" ]] && break; sleep 0.1; done
[[ -n "$port" ]] || { echo "FAIL teacher serve did not start"; cat "$T/teacher.err"; exit 1; }
gk="  - teacher.url=http://$KD_CLUSTER_NET.1:$port
  - teacher.max_in_flight=2
  - generate.chunk_size=2
  - generate.seal_every=2"
KD_TEST_PROMPTS=40 job_file gk "$T/gk" "$gk"
KD_TEST_PROMPTS=40 job_file gref "$T/gref" "$gk"
jid=$(sbatch --parsable --nodes=2 --ntasks-per-node=1 --output="$T/gk-%j.out" "$KD_SOURCE_DIR/slurm/generate.sbatch" "$T/gk.yaml")
for _ in $(seq 1200); do compgen -G "$T/gk/dataset/shard-*.h5" >/dev/null && break; sleep 0.1; done
sleep 1 # a few segments sealed; at 200 ms a request the 40 prompts take well over 5 s
batch=$(job_field "$jid" BatchHost)
echo "generation job $jid on $(job_field "$jid" NodeList); killing its batch node $batch"
"$clib/cluster-node-kill.sh" "$KD_CLUSTER_DIR" "${batch#node}"
check "the kill landed mid-generation" '[[ ! -e "$T/gk/dataset/COMPLETE" ]]'
state=$(wait_job "$jid" 600)
check "the generation job completed after a requeue ($state, restarts $(job_field "$jid" Restarts))" '[[ "$state" == COMPLETED && "$(job_field "$jid" Restarts)" -ge 1 ]]'
check "the rerun ran without the dead node" '! nodes_of "$jid" | grep -qx "$batch"'
check "the rerun resumed: the prompts done before the kill were skipped" 'grep -Eq "resuming .*: [1-9][0-9]* prompts already done" "$T"/gk-"$jid".out'
local_mpirun -np 2 "$KDSTEP" run "$T/gref.yaml" --stage generate >"$T/gref.log" 2>&1
check "the dataset equals an uninterrupted one-node run's (nothing lost, nothing twice)" \
  '/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$T/gref/dataset" "$T/gk/dataset"'
[[ $fail -eq 0 ]] || { cat "$T"/gk-*.out; tail -n 5 "$T/gref.log"; sinfo -N; }
exit $fail
