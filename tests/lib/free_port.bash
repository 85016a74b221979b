# Source this for kd_free_port: print a TCP port that no socket on this host (in this network
# namespace) uses, in any state, chosen below the kernel's ephemeral range so that an outgoing
# connection cannot take it between the check and the daemon's bind (a port in that range can be
# the local end of any client connection; CI once lost slurmd's port 34208 that way).
#   kd_free_port [EXCLUDE...]    # prints the port; exit 1 if none was found in 200 tries
kd_free_port() {
  local lo=20000 hi p ex taken
  hi=$(awk '{print $1 - 1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
  case "$hi" in ''|*[!0-9]*) hi=32767 ;; esac
  [ "$hi" -gt "$lo" ] || { lo=10000; hi=19999; }
  for _ in $(seq 200); do
    p=$(( lo + RANDOM % (hi - lo + 1) ))
    taken=0
    for ex in "$@"; do [ "$ex" = "$p" ] && taken=1; done
    [ $taken = 1 ] && continue
    if ! ss -tanH "( sport = :$p )" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
  done
  echo "kd_free_port: no free TCP port in $lo-$hi after 200 tries" >&2
  return 1
}
