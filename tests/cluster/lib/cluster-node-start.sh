#!/usr/bin/env bash
# Start node I (or every node: I = all) of the cluster in DIR: its holder process, which keeps the
# node's UTS namespace (hostname node$I) and mount namespace (DIR/node$I/tmp on /tmp) open inside its
# network namespace, then its slurmd. Used by cluster-up.sh, and by tests to bring a killed node back.
#   cluster-node-start.sh DIR I|all [--no-slurmd | --slurmd-only]
set -u
dir="${1:?usage: cluster-node-start.sh DIR I|all [--no-slurmd|--slurmd-only]}"
which="${2:?node number or all}"
mode="${3:-}"
source "$dir/cluster" || exit 1
say() { echo "cluster-node-start: $*" >&2; }
start_one() {
  local i=$1 ns="kd$tag-n$1" hold="$dir/run/node$1.holder" pid
  if [ "$mode" != --slurmd-only ]; then
    rm -f "$hold" "$hold.tmp"
    setsid nsenter --net="/run/netns/$ns" unshare --mount --uts --propagation private \
      sh -c "mount --bind '$dir/node$i/tmp' /tmp && hostname node$i && echo \$\$ >'$hold.tmp' && mv '$hold.tmp' '$hold' && exec sleep 2147483647" \
      </dev/null >>"$dir/log/node$i.holder.log" 2>&1 &
    for _ in $(seq 100); do [ -s "$hold" ] && break; sleep 0.1; done
    pid=$(cat "$hold" 2>/dev/null)
    [ -n "$pid" ] && [ "$("$dir/enter" "$i" hostname)" = "node$i" ] \
      || { say "node$i's namespaces did not come up:"; cat "$dir/log/node$i.holder.log" >&2; return 1; }
  fi
  if [ "$mode" != --no-slurmd ]; then
    rm -f "$dir/run/slurmd-node$i.pid"
    SLURM_CONF="$dir/etc/slurm.conf" "$dir/enter" "$i" slurmd -f "$dir/etc/slurm.conf" 2>>"$dir/log/slurmd-node$i.log" \
      || { say "slurmd on node$i failed to start:"; tail -n 30 "$dir/log/slurmd-node$i.log" >&2; return 1; }
  fi
}
if [ "$which" = all ]; then
  for i in $(seq "$n"); do start_one "$i" || exit 1; done
else
  start_one "$which" || exit 1
fi
