#!/usr/bin/env bash
# The local Slurm harness works: a private one-node Slurm comes up, a 2-task batch job runs
# `srun --mpi=pmix` (hostname, then an Open MPI program that does an Allreduce), and after
# slurm-down.sh no daemon or job step of that cluster is left running.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

tmp=$(mktemp -d /tmp/kd-slurm-harness.XXXXXX)
dir="$tmp/slurm"
down() { "$here/lib/slurm-down.sh" "$dir"; }
trap 'down; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

"$here/lib/slurm-up.sh" "$dir"; rc=$?
if [ $rc -eq 77 ]; then echo "skip: no Slurm here (see slurm-up.sh)"; exit 77; fi
if [ $rc -ne 0 ]; then echo "FAIL slurm-up.sh exited $rc"; exit 1; fi
conf="$dir/etc/slurm.conf"
sl() { SLURM_CONF="$conf" "$@"; }
pids=$(cat "$dir"/run/*.pid)

check "node is idle" '[ "$(sl sinfo -h -o %T)" = idle ]'
check "node has 2 CPUs" '[ "$(sl sinfo -h -o %c)" = 2 ]'
check "srun offers pmix" 'sl srun --mpi=list 2>&1 | grep -qw pmix'

cat >"$tmp/hello.c" <<'C'
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int rank, size, sum = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("hello rank %d of %d, sum of ranks %d\n", rank, size, sum);
    return MPI_Finalize();
}
C
check "mpicc builds the MPI hello" 'mpicc -o "$tmp/hello" "$tmp/hello.c"'

cat >"$tmp/job.sbatch" <<SB
#!/bin/bash
#SBATCH --job-name=kd-harness
#SBATCH --ntasks=2
#SBATCH --time=2
#SBATCH --output=$tmp/job.out
set -eu
srun --mpi=pmix -n 2 hostname
srun --mpi=pmix -n 2 "$tmp/hello"
SB
out=$(sl timeout 180 sbatch --wait "$tmp/job.sbatch" 2>&1); rc=$?
check "sbatch --wait exits 0" '[ $rc -eq 0 ]'
[ $rc -eq 0 ] || { echo "$out"; cat "$tmp/job.out" 2>/dev/null; tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log"; }
check "job ran 2 hostname tasks" '[ "$(grep -cx "$(hostname -s)" "$tmp/job.out")" = 2 ]'
check "MPI rank 0 of 2 ran" 'grep -q "hello rank 0 of 2, sum of ranks 1" "$tmp/job.out"'
check "MPI rank 1 of 2 ran" 'grep -q "hello rank 1 of 2, sum of ranks 1" "$tmp/job.out"'
jobid=$(grep -o "[0-9]*" <<<"$out" | tail -n 1)
check "job is COMPLETED" '[ "$(sl scontrol show job "$jobid" 2>/dev/null | grep -o "JobState=[A-Z]*")" = JobState=COMPLETED ]'

# the leak probe below must see this cluster's processes while they run, or it proves nothing
probe() { grep -lsxF -z "SLURM_CONF=$conf" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | tr '\n' ' '; }
seen=$(probe)
all_seen() { for p in $pids; do grep -qw "$p" <<<"$seen" || return 1; done; }
check "leak probe sees the running daemons" all_seen

down
check "pid files are gone" '! ls "$dir"/run/*.pid >/dev/null 2>&1'
alive=""
for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
check "slurmctld, slurmd and munged stopped" '[ -z "$alive" ]'
# any process still carrying this cluster's SLURM_CONF (slurmstepd, job tasks) is a leak
left=$(probe)
check "no job step or task left running" '[ -z "$left" ]'
[ -z "$left" ] || ps -o pid,ppid,cmd -p ${left// /,}
exit $fail
