#!/usr/bin/env bash
# Stop the cluster that cluster-up.sh started in DIR: cancel its jobs, kill every process left in each
# node's network namespace, stop slurmctld and munged by their pids, delete the namespaces, the veths
# and the bridge. Leaves DIR (logs) for the caller; safe to call twice or after a failed start.
set -u
dir="${1:?usage: cluster-down.sh DIR}"
[ -f "$dir/cluster" ] || exit 0
source "$dir/cluster"
conf="$dir/etc/slurm.conf"
if [ -f "$conf" ] && [ -f "$dir/run/slurmctld.pid" ]; then
  SLURM_CONF="$conf" timeout 10 scancel --full --quiet --user=root 2>/dev/null
  for _ in $(seq 10); do
    [ -z "$(SLURM_CONF="$conf" timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
    sleep 1
  done
fi
for i in $(seq "$n"); do
  ns="kd$tag-n$i"
  for _ in $(seq 50); do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -z "$pids" ] && break
    kill -KILL $pids 2>/dev/null
    sleep 0.1
  done
  ip netns del "$ns" 2>/dev/null
  ip link del "kv$tag$i" 2>/dev/null
  rm -f "$dir/run/node$i.holder" "$dir/run/slurmd-node$i.pid"
done
stop() {
  local pidfile="$dir/run/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
}
stop slurmctld
stop munged
ip link del "$br" 2>/dev/null
exit 0
