# Preflight: check the node before anything is written; report facts as JSON on stdout.
# Every failed check is collected and reported at once, each naming the fix.

errors=()
warnings=()
error() { errors+=("$*"); }
warn() { warnings+=("$*"); }

machine=$(uname -m)
case "$machine" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch=$machine ;;
esac
[ "$arch" = "$EXPECTED_ARCH" ] ||
  error "arch: the node is $machine ($arch) but the stack says arch: $EXPECTED_ARCH; fix nodes[].arch"

[ "$(cat /proc/1/comm)" = systemd ] ||
  error "systemd is not PID 1 (found '$(cat /proc/1/comm)'); the kubelet runs as a systemd service"

for tool in curl sha256sum systemctl journalctl flock; do
  command -v "$tool" >/dev/null || error "$tool is not installed; install it (apt-get install curl systemd util-linux)"
done

if [ ! -S "$RUNTIME_SOCKET" ]; then
  error "container runtime socket $RUNTIME_SOCKET is missing: is containerd installed and running? (systemctl status containerd; fix kubernetes.containerRuntimeEndpoint if it lives elsewhere)"
elif command -v ctr >/dev/null && ! ctr --address "$RUNTIME_SOCKET" version >/dev/null 2>&1; then
  error "container runtime at $RUNTIME_SOCKET does not answer (ctr version failed); systemctl restart containerd"
fi

systemd_cgroup=unknown
if command -v containerd >/dev/null; then
  if containerd config dump 2>/dev/null | grep -Eq '^\s*SystemdCgroup\s*=\s*true'; then
    systemd_cgroup=true
  else
    systemd_cgroup=false
    if [ "$MANAGE_CONTAINERD_CGROUP_DRIVER" = true ]; then
      warn "containerd runs runc with SystemdCgroup = false; the configure step sets it to true (kubelet.manageContainerdCgroupDriver)"
    else
      error "containerd's runc cgroup driver (SystemdCgroup = false) differs from the kubelet's (systemd): pods would fail later; set SystemdCgroup = true in $CONTAINERD_CONFIG or kubelet.manageContainerdCgroupDriver: true"
    fi
  fi
fi

cgroups=$(cgroup_version)
case "$cgroups" in
  v2)
    for controller in cpu memory pids; do
      grep -qw "$controller" /sys/fs/cgroup/cgroup.controllers ||
        error "cgroup v2 controller '$controller' is not available (/sys/fs/cgroup/cgroup.controllers)"
    done
    ;;
  v1 | hybrid)
    for controller in cpu,cpuacct cpuset memory pids; do
      [ -d "/sys/fs/cgroup/$controller" ] || error "cgroup v1 controller hierarchy /sys/fs/cgroup/$controller is not mounted"
    done
    ;;
  *) error "unknown cgroup filesystem at /sys/fs/cgroup: $(stat -fc %T /sys/fs/cgroup)" ;;
esac

swap_on=false
if [ "$(wc -l </proc/swaps)" -gt 1 ]; then
  swap_on=true
  if [ "$FAIL_SWAP_ON" = true ]; then
    error "swap is on and kubelet.failSwapOn is true: the kubelet refuses to start; run swapoff -a and remove swap from /etc/fstab"
  fi
fi

hostname=$(hostname)
if [ "$hostname" != "$NODE_NAME" ]; then
  message="the node's hostname is '$hostname' but it is configured as '$NODE_NAME'; the kubelet registers as '$NODE_NAME' (--hostname-override) and its certificate CN follows that name"
  case "$HOSTNAME_CHECK" in
    fail) error "$message (kubelet.hostnameCheck: fail)" ;;
    warn) warn "$message" ;;
  esac
fi

[ -f "$RESOLV_CONF" ] ||
  error "resolvConf $RESOLV_CONF does not exist on this node (it exists only where systemd-resolved runs); set kubelet.resolvConf or nodes[].resolvConf, e.g. /etc/resolv.conf"

cpus=$(nproc)
memory_bytes=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) * 1024))
if [ "$RESERVED_MILLICORES" -ge $((cpus * 1000)) ]; then
  error "reservations: systemReserved + kubeReserved cpu (${RESERVED_MILLICORES}m) is not below the node's $cpus CPUs"
fi
reserved_memory=$((RESERVED_MEMORY_BYTES + memory_bytes * EVICTION_BASIS_POINTS / 10000))
if [ "$reserved_memory" -ge "$memory_bytes" ]; then
  error "reservations: systemReserved + kubeReserved + evictionHard memory ($((reserved_memory / 1048576))Mi) is not below the node's memory ($((memory_bytes / 1048576))Mi)"
fi

system_usage=0
case "$cgroups" in
  v2) usage_file=/sys/fs/cgroup/$SYSTEM_SLICE/memory.current ;;
  *) usage_file=/sys/fs/cgroup/memory/$SYSTEM_SLICE/memory.usage_in_bytes ;;
esac
[ -r "$usage_file" ] && system_usage=$(cat "$usage_file")
if [ "$ENFORCE_SYSTEM_RESERVED" = true ] && [ "$SYSTEM_RESERVED_MEMORY_BYTES" -gt 0 ] &&
  [ "$SYSTEM_RESERVED_MEMORY_BYTES" -le "$system_usage" ]; then
  error "reservations: systemReserved memory ($((SYSTEM_RESERVED_MEMORY_BYTES / 1048576))Mi) is below what $SYSTEM_SLICE uses now ($((system_usage / 1048576))Mi); the kernel would refuse the limit with 'device or resource busy'; raise reservations.systemReserved.memory"
fi

# Free space on every filesystem the steps write to, summed per filesystem (WRITE_DIRS, WRITE_KB).
# A binary that is there and not the project's is copied to the state directory before it is
# replaced (lib.sh, records).
binary_kb=0
if [ -f "$KUBELET_BINARY" ] && [ ! -f "$OWNED_DIR/${KUBELET_BINARY//\//%}" ]; then
  binary_kb=$(($(stat -c %s "$KUBELET_BINARY") / 1024 + 1))
fi
probes=()
for dir in "${WRITE_DIRS[@]}"; do
  probe=$dir
  while [ ! -e "$probe" ]; do probe=${probe%/*}; probe=${probe:-/}; done
  probes+=("$probe")
done
declare -A fs_need=() fs_free=() fs_dirs=()
index=0
while read -r _ _ _ available _ mount; do
  dir=${WRITE_DIRS[$index]}
  kb=${WRITE_KB[$index]}
  [ "$dir" != "$STATE_DIR" ] || kb=$((kb + binary_kb))
  fs_need[$mount]=$((${fs_need[$mount]:-0} + kb))
  fs_free[$mount]=$available
  fs_dirs[$mount]+="${fs_dirs[$mount]:+, }$dir"
  index=$((index + 1))
done < <(df -Pk "${probes[@]}" | tail -n +2)
for mount in "${!fs_need[@]}"; do
  [ "${fs_free[$mount]}" -ge "${fs_need[$mount]}" ] ||
    error "only $((fs_free[$mount] / 1024))Mi free on $mount (for ${fs_dirs[$mount]}); the steps need $(((fs_need[$mount] + 1023) / 1024))Mi there: free some space (df -h $mount)"
done

for message in "${warnings[@]}"; do log "warning: $message"; done
if [ "${#errors[@]}" -gt 0 ]; then
  for message in "${errors[@]}"; do printf 'ERROR [%s] preflight: %s\n' "$NODE_NAME" "$message" >&2; done
  exit 1
fi
log "preflight passed: $arch, cgroup $cgroups, $cpus CPUs, $((memory_bytes / 1048576))Mi memory"

json_warnings=""
for message in "${warnings[@]}"; do
  json_warnings+="${json_warnings:+,}$(json_string "$message")"
done
printf '{"node":%s,"hostname":%s,"arch":%s,"kernel":%s,"cgroupVersion":%s,"cpus":%d,"memoryBytes":%d,"systemSliceMemoryBytes":%d,"swapOn":%s,"containerdSystemdCgroup":%s,"warnings":[%s]}\n' \
  "$(json_string "$NODE_NAME")" "$(json_string "$hostname")" "$(json_string "$arch")" "$(json_string "$(uname -r)")" \
  "$(json_string "$cgroups")" "$cpus" "$memory_bytes" "$system_usage" "$swap_on" "$(json_string "$systemd_cgroup")" \
  "$json_warnings"
