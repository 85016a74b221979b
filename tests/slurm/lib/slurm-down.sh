#!/usr/bin/env bash
# Stop the private Slurm that slurm-up.sh started in DIR: cancel its jobs, then stop slurmd,
# slurmctld and munged by the pids in DIR/run, waiting for each (SIGKILL after 10 s).
# Leaves DIR in place (logs); safe to call twice or after a failed start.
#   slurm-down.sh DIR [--keep-munge]   # --keep-munge: slurm-up.sh's retry after a lost port
set -u
dir="${1:?usage: slurm-down.sh DIR [--keep-munge]}"
keep_munge="${2:-}"
[ -d "$dir" ] || exit 0
if [ -f "$dir/etc/slurm.conf" ] && [ -f "$dir/run/slurmctld.pid" ]; then
  SLURM_CONF="$dir/etc/slurm.conf" timeout 10 scancel --full --quiet --user=root 2>/dev/null
  # give the job steps a moment to go (slurmstepd exits once its step is gone)
  for _ in $(seq 10); do
    [ -z "$(SLURM_CONF="$dir/etc/slurm.conf" timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
    sleep 1
  done
fi
stop() {
  local pidfile="$dir/run/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "slurm-down: $1 (pid $pid) ignored SIGTERM for 10 s, killing it" >&2
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  rm -f "$pidfile" # the daemon removes its own on a clean exit
}
stop slurmd
stop slurmctld
[ "$keep_munge" = --keep-munge ] || stop munged
exit 0
