#!/usr/bin/env bash
# Start a private cluster of N "nodes" (default 3) on this one machine, as root:
#  - a bridge with a private /24 test subnet (host .1), and per node i a network namespace joined to it
#    by a veth pair (node i is .1i), a UTS namespace with hostname node$i and a mount namespace whose
#    /tmp is its own folder DIR/node$i/tmp, all held open by one "holder" process per node;
#  - Open MPI across the nodes: DIR/hostfile (node addresses, slots=1) and DIR/agent, the
#    plm_rsh_agent that enters a node's namespaces in place of ssh (DIR/env exports the MCA settings:
#    that agent, the TCP transport only, restricted to the bridge's subnet);
#  - Slurm across the nodes: munged and slurmctld on the host (listening on the bridge too), one
#    slurmd per node, entered into that node's namespaces (NodeName=node[1-N], NodeAddr=its address).
#
#   tests/cluster/lib/cluster-up.sh DIR [N]   # DIR must be outside /tmp (each node has its own /tmp)
#   source DIR/env                            # SLURM_CONF, KD_CLUSTER_* and the OMPI_MCA_* settings
#   DIR/enter I CMD...                        # run CMD inside node I's namespaces
#   tests/cluster/lib/cluster-node-kill.sh DIR I    # SIGKILL every process of node I
#   tests/cluster/lib/cluster-node-start.sh DIR I   # bring node I (holder + slurmd) back
#   tests/cluster/lib/cluster-down.sh DIR     # stop everything, delete the namespaces and the bridge
#
# Exit status: 0 ready ("ready" printed); 77 not root, or namespaces/bridges not allowed here, or no
# Slurm and no way to install it (a test skips); 1 something failed to start (logs printed).
# Environment: KD_CLUSTER_CPUS (CPUs per node, default 2), KD_CLUSTER_WAIT_S (default 90).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:?usage: cluster-up.sh DIR [N]}"
n="${2:-3}"
cpus="${KD_CLUSTER_CPUS:-2}"
wait_s="${KD_CLUSTER_WAIT_S:-90}"
say() { echo "cluster-up: $*" >&2; }
skip() { say "skip: $*"; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, a bridge and SlurmUser=root)"
for b in ip nsenter unshare; do command -v "$b" >/dev/null 2>&1 || skip "missing $b"; done
mkdir -p "$dir" || exit 1
dir=$(cd "$dir" && pwd)
case "$dir" in /tmp|/tmp/*) say "DIR must be outside /tmp: every node mounts its own /tmp"; exit 1;; *" "*) say "DIR must not hold spaces"; exit 1;; esac

need=()
for b in slurmctld slurmd sbatch munged; do command -v "$b" >/dev/null 2>&1 || need+=("$b"); done
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || skip "missing ${need[*]} and no apt-get to install them"
  say "installing slurm-wlm and munge (missing: ${need[*]})"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends \
    slurm-wlm slurm-wlm-basic-plugins munge >"$dir/apt.log" 2>&1 || skip "apt-get install slurm-wlm munge failed, see $dir/apt.log"
fi

# Unique names for this cluster, so that two runs on one machine do not meet.
tag=$(printf '%04x' $(( (RANDOM << 1 ^ $$) & 0xffff )))
net=""
for _ in $(seq 50); do
  o=$(( 16 + RANDOM % 230 ))
  ip -4 addr show 2>/dev/null | grep -q "inet 10\.251\.$o\." || { net="10.251.$o"; break; }
done
[ -n "$net" ] || { say "no free 10.251.X.0/24 subnet"; exit 1; }
br="kdb$tag"
mkdir -p "$dir"/{etc,state,log,run,munge} || exit 1
chmod 700 "$dir/munge"
cat >"$dir/cluster" <<C
tag=$tag
net=$net
br=$br
n=$n
C

# --- network: the probe doubles as the "are namespaces allowed here" check ---
if ! ip netns add "kd$tag-probe" 2>/dev/null; then skip "cannot create a network namespace here (ip netns add)"; fi
ip netns del "kd$tag-probe"
if ! ip link add "$br" type bridge 2>/dev/null; then skip "cannot create a bridge here (ip link add type bridge)"; fi
ip addr add "$net.1/24" dev "$br" && ip link set "$br" up || { say "cannot set up $br"; exit 1; }
for i in $(seq "$n"); do
  ns="kd$tag-n$i"
  ip netns add "$ns" || { say "ip netns add $ns failed"; exit 1; }
  ip link add "kv$tag$i" type veth peer name "kp$tag$i" || { say "veth for node $i failed"; exit 1; }
  ip link set "kv$tag$i" master "$br" && ip link set "kv$tag$i" up
  ip link set "kp$tag$i" netns "$ns"
  ip -n "$ns" link set "kp$tag$i" name eth0
  ip -n "$ns" addr add "$net.1$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  mkdir -p "$dir/node$i/tmp" && chmod 1777 "$dir/node$i/tmp"
done

# --- the node entry helper, the MPI launch agent and the hostfile ---
cat >"$dir/enter" <<E
#!/bin/bash
# DIR/enter I CMD...: run CMD in node I's network, UTS (hostname node\$I) and mount (own /tmp) namespaces.
i=\${1:?usage: enter I CMD...}; shift
pid=\$(cat "$dir/run/node\$i.holder" 2>/dev/null) && kill -0 "\$pid" 2>/dev/null || { echo "enter: node\$i is not running" >&2; exit 1; }
exec nsenter -t "\$pid" --net --uts --mount -- "\$@"
E
cat >"$dir/agent" <<A
#!/bin/bash
# Open MPI's plm_rsh_agent for this cluster: called as AGENT HOST CMD..., runs CMD in that node.
host=\$1; shift
case "\$host" in
  $net.1[0-9]) i=\${host#$net.1} ;;
  node[0-9]) i=\${host#node} ;;
  *) echo "agent: unknown host '\$host'" >&2; exit 1 ;;
esac
exec "$dir/enter" "\$i" sh -c "\$*"
A
chmod +x "$dir/enter" "$dir/agent"
: >"$dir/hostfile"
for i in $(seq "$n"); do echo "$net.1$i slots=1" >>"$dir/hostfile"; done

"$here/cluster-node-start.sh" "$dir" all --no-slurmd || exit 1

# --- munge and slurmctld on the host ---
conf="$dir/etc/slurm.conf"
export SLURM_CONF="$conf"
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
sock="$dir/munge/munge.socket.2"
munged --force --key-file="$dir/munge/munge.key" --socket="$sock" --pid-file="$dir/run/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" 2>>"$dir/log/munged.log" \
  || { say "munged failed to start:"; cat "$dir/log/munged.log" >&2; exit 1; }
source "$here/../../lib/free_port.bash" # below the ephemeral range: nothing takes it before the bind
ctld_port=$(kd_free_port) || exit 1
slurmd_port=$(( ctld_port + 1 ))
host=$(hostname -s)
cat >"$conf" <<CONF
# Generated by tests/cluster/lib/cluster-up.sh: $n namespace nodes on one machine.
ClusterName=kdcluster
SlurmctldHost=$host($net.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock,cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool-%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SwitchType=switch/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobRequeue=1
ReturnToService=2
KillWait=5
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=8
MessageTimeout=5
TCPTimeout=3
$(for i in $(seq "$n"); do echo "NodeName=node$i NodeAddr=$net.1$i CPUs=$cpus RealMemory=2000 State=UNKNOWN"; done)
PartitionName=debug Nodes=node[1-$n] Default=YES MaxTime=INFINITE State=UP
CONF

cat >"$dir/env" <<ENV
export KD_CLUSTER_DIR="$dir"
export KD_CLUSTER_NET="$net"
export KD_CLUSTER_NODES=$n
export SLURM_CONF="$conf"
export OMPI_MCA_plm_rsh_agent="$dir/agent"
export OMPI_MCA_plm_rsh_no_tree_spawn=1
export OMPI_MCA_btl=tcp,self
export OMPI_MCA_btl_tcp_if_include=$net.0/24
export OMPI_MCA_oob_tcp_if_include=$net.0/24
ENV

slurmctld -c -f "$conf" 2>>"$dir/log/slurmctld.log" \
  || { say "slurmctld failed to start:"; tail -n 30 "$dir/log/slurmctld.log" >&2; exit 1; }
for i in $(seq "$n"); do "$here/cluster-node-start.sh" "$dir" "$i" --slurmd-only || exit 1; done

for _ in $(seq "$wait_s"); do
  idle=$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)
  if [ "$idle" = "$n" ]; then echo "ready"; exit 0; fi
  sleep 1
done
say "not all $n nodes are idle after ${wait_s}s:"
sinfo -N >&2
tail -n 20 "$dir/log/slurmctld.log" "$dir"/log/slurmd-*.log >&2
exit 1
