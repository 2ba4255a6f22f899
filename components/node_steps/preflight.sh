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

# Version skew (the Kubernetes version skew policy): a kubelet may be as new as the API server and
# at most three minor versions older. The API server's /version is readable without credentials
# (the system:public-info-viewer role); it is read from this node, trusting only the stack's CA
# (on stdin), the way the kubelet will reach it.
api_server_version=""
version_parts() { # vMAJOR.MINOR...: prints "MAJOR MINOR", or fails
  [[ "$1" =~ ^v([0-9]+)\.([0-9]+)\. ]] && echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
}
check_version_skew() {
  local ca answer kubelet_major kubelet_minor server_major server_minor
  ca=$(mktemp) || { warn "cannot create a temporary file for the CA; the version skew is not checked"; return 0; }
  TEMP_PATHS+=("$ca")
  cat >"$ca" || { warn "cannot write the CA to $ca; the version skew is not checked"; return 0; }
  if ! answer=$(curl -sS --fail --connect-timeout 5 --max-time 10 --cacert "$ca" "$API_SERVER/version" 2>&1); then
    warn "the API server does not answer $API_SERVER/version from this node (${answer//$'\n'/ }): kubelet $KUBELET_VERSION is not checked against its version; the kubelet registers once it answers"
    return 0
  fi
  api_server_version=$(sed -n 's/^[[:space:]]*"gitVersion"[[:space:]]*:[[:space:]]*"\([^"]*\)".*$/\1/p' <<<"$answer" | head -n 1)
  read -r kubelet_major kubelet_minor < <(version_parts "$KUBELET_VERSION")
  if ! read -r server_major server_minor < <(version_parts "$api_server_version"); then
    warn "the API server at $API_SERVER answers /version without a vMAJOR.MINOR.PATCH gitVersion ('${api_server_version:-${answer:0:80}}'); the version skew is not checked"
    return 0
  fi
  if ((kubelet_major > server_major || (kubelet_major == server_major && kubelet_minor > server_minor))); then
    error "kubelet $KUBELET_VERSION is newer than the API server ($api_server_version at $API_SERVER); the version skew policy allows no kubelet newer than its API server: upgrade the API server first, or set kubernetes.version to v$server_major.$server_minor.x or older"
  elif ((server_major > kubelet_major || server_minor - kubelet_minor > MAX_KUBELET_MINOR_SKEW)); then
    warn "kubelet $KUBELET_VERSION is more than $MAX_KUBELET_MINOR_SKEW minor versions older than the API server ($api_server_version at $API_SERVER), beyond what the version skew policy supports: raise kubernetes.version"
  fi
}
check_version_skew

if [ ! -S "$RUNTIME_SOCKET" ]; then
  error "container runtime socket $RUNTIME_SOCKET is missing: is containerd installed and running? (systemctl status containerd; fix kubernetes.containerRuntimeEndpoint if it lives elsewhere)"
elif command -v ctr >/dev/null && ! ctr --address "$RUNTIME_SOCKET" version >/dev/null 2>&1; then
  error "container runtime at $RUNTIME_SOCKET does not answer (ctr version failed); systemctl restart containerd"
fi

# A containerd older than MIN_CONTAINERD_VERSION does not report its sandbox (pause) image as pinned, so the kubelet's
# image garbage collection may remove it.
containerd_version=""
if command -v containerd >/dev/null; then
  containerd_version=$(containerd --version 2>/dev/null | awk '{ print $3 }' || true)
  # "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1" (Debian), "... v1.7.3 <commit>"
  if [[ "${containerd_version#v}" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+) ]]; then
    have=$((10#${BASH_REMATCH[1]} * 1000000 + 10#${BASH_REMATCH[2]} * 1000 + 10#${BASH_REMATCH[3]}))
    IFS=. read -r want_major want_minor want_patch <<<"$MIN_CONTAINERD_VERSION"
    if [ "$have" -lt $((want_major * 1000000 + want_minor * 1000 + want_patch)) ]; then
      warn "containerd $containerd_version does not pin its sandbox (pause) image, so the kubelet's image garbage collection may delete it and new pods then wait for it to be pulled again (or fail offline): upgrade containerd to $MIN_CONTAINERD_VERSION or later"
    fi
  fi
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

# Raspberry Pi kernels disable the memory cgroup controller unless the kernel command line enables
# it (/proc/cgroups then says "memory ... 0"); the kubelet cannot run without it.
memory_enabled=$(awk '$1 == "memory" { print $4 }' "$PROC_CGROUPS" 2>/dev/null || true)
if [ "$memory_enabled" != 1 ] && [ -r "$DEVICE_TREE_MODEL" ] && grep -qa "Raspberry Pi" "$DEVICE_TREE_MODEL"; then
  cmdline_txt=${RPI_CMDLINE_FILES[0]}
  for candidate in "${RPI_CMDLINE_FILES[@]}"; do
    if [ -f "$candidate" ]; then cmdline_txt=$candidate; break; fi
  done
  warn "Raspberry Pi: the kernel has the memory cgroup controller disabled ($PROC_CGROUPS) and the kubelet needs it: add cgroup_enable=memory to the one line of $cmdline_txt, then reboot"
fi

# Each inotify instance counts against fs.inotify.max_user_instances (128 on Debian); the kubelet,
# containerd and pods that watch files run out of them: "too many open files".
inotify_instances=$(cat "$INOTIFY_MAX_USER_INSTANCES" 2>/dev/null || true)
if [[ "$inotify_instances" =~ ^[0-9]+$ ]] && [ "$inotify_instances" -lt "$MIN_INOTIFY_INSTANCES" ]; then
  warn "fs.inotify.max_user_instances is $inotify_instances, below $MIN_INOTIFY_INSTANCES: the kubelet and pods that watch files fail with \"too many open files\"; raise it: echo fs.inotify.max_user_instances=$MIN_INOTIFY_INSTANCES >/etc/sysctl.d/90-homelab-kubelet-inotify.conf && sysctl --system"
fi

swap_on=false
if [ "$(wc -l </proc/swaps)" -gt 1 ]; then
  swap_on=true
  if [ "$FAIL_SWAP_ON" = true ]; then
    error "swap is on and kubelet.failSwapOn is true: the kubelet refuses to start; run swapoff -a and remove swap from /etc/fstab"
  fi
fi

# memorySwap LimitedSwap: a v1.30 kubelet gives pods swap only on cgroup v2; on v1 (and hybrid)
# it quietly uses NoSwap (pkg/kubelet/kuberuntime/kuberuntime_container_linux.go).
if [ "$SWAP_BEHAVIOR" = LimitedSwap ] && [ "$cgroups" != v2 ]; then
  error "kubelet.memorySwap.swapBehavior is LimitedSwap but this node runs cgroup $cgroups: the kubelet would give pods no swap without a word; use NoSwap, or boot the node with cgroup v2 (systemd.unified_cgroup_hierarchy=1 on the kernel command line)"
fi

# Graceful shutdown: the kubelet asks logind for a delay inhibitor of shutdownGracePeriod. If
# logind's InhibitDelayMaxSec is lower, the kubelet writes /etc/systemd/logind.conf.d/99-kubelet.conf
# and reloads logind, but a drop-in sorting after that name still wins (systemd reads drop-ins in
# file-name order; a name in an earlier directory hides the same name in a later one).
# timespan_seconds TEXT: a systemd time span (30, 30s, 1min 30s, 2h) in whole seconds, or nothing.
timespan_seconds() {
  local text=${1//[[:space:]]/} total=0 number unit
  [ "$text" != infinity ] || { echo 999999999; return 0; }
  [[ "$text" =~ ^[0-9]+$ ]] && { echo "$text"; return 0; }
  while [ -n "$text" ]; do
    [[ "$text" =~ ^([0-9]+)(us|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|days|day|d)(.*)$ ]] || return 0
    number=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]} text=${BASH_REMATCH[3]}
    case "$unit" in
      us | ms) ;;
      seconds | second | sec | s) total=$((total + number)) ;;
      minutes | minute | min | m) total=$((total + number * 60)) ;;
      hours | hour | hr | h) total=$((total + number * 3600)) ;;
      *) total=$((total + number * 86400)) ;;
    esac
  done
  echo "$total"
}
logind_cap_file="" logind_cap=""
if [ "$SHUTDOWN_GRACE_SECONDS" -gt 0 ]; then
  systemctl is-active --quiet systemd-logind.service 2>/dev/null ||
    warn "kubelet.shutdownGracePeriod: systemd-logind is not running, so the kubelet cannot delay the shutdown and graceful node shutdown stays off (its journal says \"Failed to start node shutdown manager\"); start it: systemctl enable --now systemd-logind"
  declare -A logind_dropins=()
  for dir in "${LOGIND_CONF_DIRS[@]}"; do
    for file in "$dir"/*.conf; do
      [ -e "$file" ] || [ -L "$file" ] || continue
      [ -n "${logind_dropins[${file##*/}]+set}" ] || logind_dropins[${file##*/}]=$file
    done
  done
  after_kubelet=false
  while IFS= read -r name; do
    if [ "$name" = 99-kubelet.conf ]; then
      after_kubelet=true # the kubelet's own drop-in, which it rewrites with the grace period
      continue
    fi
    [ "$after_kubelet" = true ] || continue
    file=${logind_dropins[$name]}
    # An empty file or a link to /dev/null masks the drop-in of that name.
    [ -s "$file" ] || continue
    value=$(sed -n 's/^[[:space:]]*InhibitDelayMaxSec[[:space:]]*=[[:space:]]*//p' "$file" | tail -n 1)
    [ -n "$value" ] || continue
    logind_cap_file=$file logind_cap=$(timespan_seconds "$value")
    [ -n "$logind_cap" ] || warn "kubelet.shutdownGracePeriod: cannot read InhibitDelayMaxSec=$value in $file; check that it is at least ${SHUTDOWN_GRACE_SECONDS}s"
  done < <(printf '%s\n' 99-kubelet.conf "${!logind_dropins[@]}" | LC_ALL=C sort -u)
  if [ -n "$logind_cap" ] && [ "$logind_cap" -lt "$SHUTDOWN_GRACE_SECONDS" ]; then
    # A drop-in name that sorts after the capping one.
    raise_name=zz-kubelet-shutdown.conf
    [ "$(printf '%s\n' "$raise_name" "${logind_cap_file##*/}" | LC_ALL=C sort | tail -n 1)" = "$raise_name" ] ||
      raise_name=${logind_cap_file##*/}.zz.conf
    warn "kubelet.shutdownGracePeriod is ${SHUTDOWN_GRACE_SECONDS}s but $logind_cap_file caps logind's InhibitDelayMaxSec at ${logind_cap}s and sorts after the kubelet's own 99-kubelet.conf (Debian's unattended-upgrades ships such a 30s cap): the kubelet would log \"unable to update logind InhibitDelayMaxSec\" and run without graceful shutdown; raise it with a drop-in that sorts later, e.g. printf '[Login]\\nInhibitDelayMaxSec=${SHUTDOWN_GRACE_SECONDS}\\n' >/etc/systemd/logind.conf.d/$raise_name; systemctl kill -s HUP systemd-logind"
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

# kube.slice holds containerd (and the kubelet): a memory limit below what they use now would
# be refused by the kernel or starve them; before the first run containerd is still elsewhere.
# Pid limits: sshd (in system.slice) and containerd must still be able to fork.
slice_value() { # <v2 file> <v1 controller> <v1 file> <cgroup path>: the value, or empty
  local file
  [ -n "$4" ] || return 0
  case "$cgroups" in
    v2) file=/sys/fs/cgroup/$4/$1 ;;
    *) file=/sys/fs/cgroup/$2/$4/$3 ;;
  esac
  if [ -r "$file" ]; then cat "$file"; fi
}
kube_cgroup=$KUBE_SLICE
[ -n "$(slice_value memory.current memory memory.usage_in_bytes "$kube_cgroup")" ] ||
  kube_cgroup=$(systemctl show -P ControlGroup containerd.service 2>/dev/null || true)
kube_usage=$(slice_value memory.current memory memory.usage_in_bytes "$kube_cgroup")
if [ "$ENFORCE_KUBE_RESERVED" = true ] && [ "$KUBE_RESERVED_MEMORY_BYTES" -gt 0 ] &&
  [ "$KUBE_RESERVED_MEMORY_BYTES" -le "${kube_usage:-0}" ]; then
  error "reservations: kubeReserved memory ($((KUBE_RESERVED_MEMORY_BYTES / 1048576))Mi) is below what $KUBE_SLICE's daemons use now (${kube_cgroup}: $((kube_usage / 1048576))Mi); containerd would be refused or killed; raise reservations.kubeReserved.memory"
fi
check_pid_limit() { # <systemReserved|kubeReserved> <cgroup path> <enforced> <limit>
  local pids
  pids=$(slice_value pids.current pids pids.current "$2")
  if [ "$3" = true ] && [ "$4" -gt 0 ] && [ "$4" -le $((${pids:-0} + PID_HEADROOM)) ]; then
    error "reservations: $1 pid ($4) leaves less than $PID_HEADROOM tasks free in ${2:-its slice} (${pids:-0} run there now); sshd and containerd could no longer fork and lock you out; raise reservations.$1.pid"
  fi
}
check_pid_limit systemReserved "$SYSTEM_SLICE" "$ENFORCE_SYSTEM_RESERVED" "$SYSTEM_RESERVED_PIDS"
check_pid_limit kubeReserved "$kube_cgroup" "$ENFORCE_KUBE_RESERVED" "$KUBE_RESERVED_PIDS"

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
printf '{"node":%s,"hostname":%s,"arch":%s,"kernel":%s,"cgroupVersion":%s,"cpus":%d,"memoryBytes":%d,"systemSliceMemoryBytes":%d,"swapOn":%s,"containerdSystemdCgroup":%s,"containerdVersion":%s,"apiServerVersion":%s,"warnings":[%s]}\n' \
  "$(json_string "$NODE_NAME")" "$(json_string "$hostname")" "$(json_string "$arch")" "$(json_string "$(uname -r)")" \
  "$(json_string "$cgroups")" "$cpus" "$memory_bytes" "$system_usage" "$swap_on" "$(json_string "$systemd_cgroup")" \
  "$(json_string "$containerd_version")" "$(json_string "$api_server_version")" "$json_warnings"
