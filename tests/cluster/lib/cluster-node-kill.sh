#!/usr/bin/env bash
# A whole node dies: SIGKILL every process in node I's network namespace (its holder, slurmd, every
# slurmstepd, job task and orted), at once and again until none is left. Prints how many it killed.
#   cluster-node-kill.sh DIR I
set -u
dir="${1:?usage: cluster-node-kill.sh DIR I}"
i="${2:?node number}"
source "$dir/cluster" || exit 1
ns="kd$tag-n$i"
killed=0
for _ in $(seq 50); do
  pids=$(ip netns pids "$ns" 2>/dev/null)
  [ -z "$pids" ] && break
  kill -KILL $pids 2>/dev/null
  killed=$((killed + $(wc -w <<<"$pids")))
  sleep 0.1
done
rm -f "$dir/run/node$i.holder" "$dir/run/slurmd-node$i.pid"
left=$(ip netns pids "$ns" 2>/dev/null)
[ -z "$left" ] || { echo "cluster-node-kill: processes left in node$i: $left" >&2; exit 1; }
echo "killed $killed processes of node$i"
