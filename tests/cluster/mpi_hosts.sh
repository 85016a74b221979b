#!/usr/bin/env bash
# Open MPI across 3 namespace nodes (tests/cluster/lib/cluster-up.sh): a hostfile, the launch agent in
# place of ssh, TCP only on the bridge's subnet. mpirun starts on node1.
#  1. generate over 3 nodes (rank 0 on node1, workers on node2 and node3) == a one-node run's dataset;
#  2. training on 2 nodes x 1 rank gives final weights bitwise equal to 1 node x 2 ranks;
#  3. threads follow the allocation: a rank bound to 1 CPU runs 1 thread; unbound, alone on its node,
#     it takes both CPUs; two unbound ranks on one node share them (1 each); KDSTEP_THREADS still wins.
source "$KD_SOURCE_DIR/tests/cluster/lib/cluster.bash"
cluster_up 3
hosts="$KD_CLUSTER_DIR/hostfile"
across() { on 1 mpirun --hostfile "$hosts" "$@"; }
# a one-node reference: plain local mpirun (shared memory allowed), none of the cluster's MCA settings
local_mpirun() { env -u OMPI_MCA_btl -u OMPI_MCA_btl_tcp_if_include -u OMPI_MCA_oob_tcp_if_include -u OMPI_MCA_plm_rsh_agent \
  mpirun --oversubscribe "$@"; }

# 1. generation over 3 nodes vs one node
job_file g3 "$T/g3"
job_file g1 "$T/g1"
across -np 3 "$KDSTEP" run "$T/g3.yaml" --stage generate >"$T/g3.log" 2>&1; rc=$?
check "generate over 3 nodes exits 0" '[[ $rc -eq 0 ]]'
for i in 0 1 2; do
  check "rank $i ran on node$((i + 1))" 'grep -q "host node$((i + 1)), rank $i of 3" "$T/g3.log"'
done
local_mpirun -np 3 "$KDSTEP" run "$T/g1.yaml" --stage generate >"$T/g1.log" 2>&1
check "the 3-node dataset equals the one-node dataset" '/usr/bin/python3 "$KD_SOURCE_DIR/tests/lib/compare_datasets.py" "$T/g1/dataset" "$T/g3/dataset"'
[[ $fail -eq 0 ]] || tail -n 20 "$T/g3.log" "$T/g1.log"

# 2. training: 2 nodes x 1 rank vs 1 node x 2 ranks
steps="  - train.steps=12
  - train.checkpoint_every=6
  - train.eval_every=6"
for w in t21 t12; do mkdir -p "$T/$w"; cp -r "$T/g1/dataset" "$T/$w/dataset"; job_file "$w" "$T/$w" "$steps"; done
across -np 2 "$KDSTEP" run "$T/t21.yaml" --stage train >"$T/t21.log" 2>&1; rc=$?
check "training on 2 nodes x 1 rank exits 0" '[[ $rc -eq 0 ]]'
check "its ranks ran on node1 and node2" 'grep -q "host node1, rank 0 of 2" "$T/t21.log" && grep -q "host node2, rank 1 of 2" "$T/t21.log"'
local_mpirun -np 2 "$KDSTEP" run "$T/t12.yaml" --stage train >"$T/t12.log" 2>&1
check "2 nodes x 1 rank == 1 node x 2 ranks, bitwise" 'cmp "$T/t21/train/final/model.safetensors" "$T/t12/train/final/model.safetensors"'
[[ $fail -eq 0 ]] || tail -n 20 "$T/t21.log" "$T/t12.log"

# 3. threads (train is complete, so each run only starts, logs its placement and skips)
nothreads=(env -u KDSTEP_THREADS -u OMP_NUM_THREADS)
across -np 2 --bind-to core "${nothreads[@]}" "$KDSTEP" run "$T/t21.yaml" --stage train >"$T/th1.log" 2>&1
check "a rank bound to 1 CPU runs 1 thread" 'grep -Eq "host node2, rank 1 of 2: 1 thread \(CPU affinity[^)]*\) on CPUs [0-9]+ \(1," "$T/th1.log"'
across -np 2 --bind-to none "${nothreads[@]}" "$KDSTEP" run "$T/t21.yaml" --stage train >"$T/th2.log" 2>&1
check "an unbound rank alone on its 2-CPU node runs 2 threads" 'grep -Eq "host node2, rank 1 of 2: 2 threads \(CPU affinity[^)]*\) on CPUs 0-1 \(2, shared by 1 rank\)" "$T/th2.log"'
on 3 mpirun -np 2 --bind-to none "${nothreads[@]}" "$KDSTEP" run "$T/t21.yaml" --stage train >"$T/th3.log" 2>&1
check "two unbound ranks on one node run 1 thread each" '[[ $(grep -Ec "host node3, rank [01] of 2: 1 thread \(CPU affinity[^)]*\) on CPUs 0-1 \(2, shared by 2 ranks\)" "$T/th3.log") -eq 2 ]]'
across -np 2 --bind-to core env KDSTEP_THREADS=3 "$KDSTEP" run "$T/t21.yaml" --stage train >"$T/th4.log" 2>&1
check "KDSTEP_THREADS=3 still wins over a 1-CPU mask" 'grep -q "rank 1 of 2: 3 threads (KDSTEP_THREADS)" "$T/th4.log"'
[[ $fail -eq 0 ]] || cat "$T"/th*.log
exit $fail
