set -euo pipefail
# homelab-kubelet: preflight on node k8s-node1
NODE_NAME=k8s-node1
STEP=preflight
STATE_DIR=/var/lib/homelab-kubelet
HOLDERS_DIR=/var/lib/homelab-kubelet/holders
OWNED_DIR=/var/lib/homelab-kubelet/owned
EXPECTED_ARCH=arm64
API_SERVER=https://k8s-master:6443
KUBELET_VERSION=v1.30.1
MAX_KUBELET_MINOR_SKEW=3
MIN_CONTAINERD_VERSION=1.6.22
PROC_CGROUPS=/proc/cgroups
DEVICE_TREE_MODEL=/proc/device-tree/model
RPI_CMDLINE_FILES=(/boot/firmware/cmdline.txt /boot/cmdline.txt)
INOTIFY_MAX_USER_INSTANCES=/proc/sys/fs/inotify/max_user_instances
MIN_INOTIFY_INSTANCES=8192
RUNTIME_SOCKET=/run/containerd/containerd.sock
CONTAINERD_CONFIG=/etc/containerd/config.toml
MANAGE_CONTAINERD_CGROUP_DRIVER=true
FAIL_SWAP_ON=true
SWAP_BEHAVIOR=''
SHUTDOWN_GRACE_SECONDS=0
LOGIND_CONF_DIRS=(/etc/systemd/logind.conf.d /run/systemd/logind.conf.d /usr/local/lib/systemd/logind.conf.d /usr/lib/systemd/logind.conf.d /lib/systemd/logind.conf.d)
HOSTNAME_CHECK=warn
RESOLV_CONF=/run/systemd/resolve/resolv.conf
RESERVED_MILLICORES=1280
RESERVED_MEMORY_BYTES=1447034880
EVICTION_BASIS_POINTS=0
SYSTEM_SLICE=system.slice
SYSTEM_RESERVED_MEMORY_BYTES=268435456
ENFORCE_SYSTEM_RESERVED=true
KUBE_SLICE=kube.slice
KUBE_RESERVED_MEMORY_BYTES=1073741824
ENFORCE_KUBE_RESERVED=true
SYSTEM_RESERVED_PIDS=0
KUBE_RESERVED_PIDS=0
PID_HEADROOM=100
KUBELET_BINARY=/usr/bin/kubelet
WRITE_DIRS=(/var/lib/homelab-kubelet /usr/bin /var/lib/kubernetes /var/lib/kubelet /etc/systemd/system /usr/local/libexec/homelab-kubelet /etc/containerd /etc /etc/kubelet.d)
WRITE_KB=(1024 204800 1024 1024 1024 1024 1024 1024 1024)
# shellcheck disable=SC2034  # some steps use only part of lib.sh
# Shared functions of every node script. Rendered scripts start with `set -euo pipefail` and
# the step's variables (NODE_NAME, ...), then this file, then the step itself, and end with
# `STEP_DONE=true`.

umask 022
# The loader runs a script as `bash -c SCRIPT STEP MODE`.
case "${1:-}" in create | update | delete) MODE=$1 ;; *) MODE=create ;; esac

log() { printf '[%s] %s\n' "$NODE_NAME" "$*" >&2; }

fail() {
  printf 'ERROR [%s]: %s\n' "$NODE_NAME" "$*" >&2
  exit 1
}

# --- how a run ends ---------------------------------------------------------------------------
# A run succeeded only if it reached its last line (STEP_DONE=true); an error or a signal is a
# failure whatever `$?` says. A dropped SSH connection reaches a step as SIGPIPE at its next write
# (sshd sends no SIGHUP to a session without a terminal), and without these traps bash would run
# the EXIT trap with the status of the last command, usually 0.
STEP_DONE=false
EXIT_HOOKS=() # functions run at exit with the final status (rollback.sh adds its rollback)
TEMP_PATHS=() # removed at exit, whatever the outcome: a failed run leaves no temp files

run_exit_hooks() {
  local status=$? hook
  trap - EXIT
  # The session may be gone: a failed write must not cut the cleanup short.
  trap '' PIPE HUP
  set +e
  [ "$STEP_DONE" = true ] || [ "$status" -ne 0 ] || status=1
  for hook in "${EXIT_HOOKS[@]}"; do "$hook" "$status"; done
  [ "${#TEMP_PATHS[@]}" -eq 0 ] || rm -rf "${TEMP_PATHS[@]}"
  exit "$status"
}
trap run_exit_hooks EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# --- writes -----------------------------------------------------------------------------------
# Every write is checked where it happens (`|| fail`): set -e does not apply inside a function
# called from `if` or `||`, nor inside `$(...)`.

# ensure_dir DIR...: create missing directories (0755, umask 022); an existing one keeps its mode
# (`install -d -m` would chmod it: a staticPodPath of /tmp would lose its sticky bit).
ensure_dir() {
  local dir
  for dir in "$@"; do
    [ -d "$dir" ] || mkdir -p "$dir" || fail "cannot create directory $dir (df -h; is its filesystem full or read-only?)"
  done
}

# new_temp PATH: prints a new empty temp file beside PATH (same filesystem, so a rename lands it).
new_temp() {
  local dir=${1%/*}
  mktemp "${dir:-/}/.${1##*/}.XXXXXX" || fail "cannot create a file in ${dir:-/} (df -h ${dir:-/}; is it full or read-only?)"
}

# land TEMP PATH: flush TEMP to disk, then rename it over PATH.
land() {
  sync "$1" || fail "cannot flush $2 to disk (df -h ${2%/*})"
  mv -f "$1" "$2" || fail "cannot move $2 into place"
}

# keep_for_rollback PATH: before this run first changes PATH, keep what is there (or note that
# nothing was) for rollback.sh. A no-op in the steps that do not roll back (no ROLLBACK_DIR).
keep_for_rollback() {
  [ -n "${ROLLBACK_DIR:-}" ] || return 0
  local saved="$ROLLBACK_DIR/${1//\//%}"
  [ ! -e "$saved" ] || return 0
  if [ -e "$1" ]; then
    { cp -p "$1" "$saved" && sync "$saved"; } || fail "cannot keep a copy of $1 for a rollback (df -h $ROLLBACK_DIR; is it full?)"
    printf '%s\t%s\n' "${saved##*/}" "$1" >>"$ROLLBACK_DIR/manifest" || fail "cannot write $ROLLBACK_DIR/manifest (df -h $ROLLBACK_DIR; is it full?)"
  else
    : >"$saved" || fail "cannot write in $ROLLBACK_DIR (df -h $ROLLBACK_DIR; is it full?)"
    printf '%s\t%s\n' - "$1" >>"$ROLLBACK_DIR/manifest" || fail "cannot write $ROLLBACK_DIR/manifest (df -h $ROLLBACK_DIR; is it full?)"
  fi
}

# The paths this run changed, in order (configure.sh decides on reloads and restarts from them).
CHANGED=()

# install_file PATH MODE < CONTENT
# Writes atomically (temp file in the same directory, flushed, renamed), so a full disk or an
# interrupted run never leaves a short file. Prints "changed PATH" only when content or mode differ.
install_file() {
  local path=$1 mode=$2 tmp sum
  ensure_dir "${path%/*}"
  tmp=$(new_temp "$path")
  TEMP_PATHS+=("$tmp")
  { cat >"$tmp" && chmod "$mode" "$tmp"; } || fail "cannot write $path (df -h ${path%/*}; is its filesystem full?)"
  sum=$(sha256sum <"$tmp") || fail "cannot read back $tmp"
  sum=${sum%% *}
  if [ -f "$path" ] && cmp -s "$tmp" "$path" && [ "$(stat -c %a "$path")" = "${mode#0}" ]; then
    rm -f "$tmp"
    own_unchanged "$path" "$sum"
    return 0
  fi
  own_before_change "$path" "$sum"
  keep_for_rollback "$path"
  land "$tmp" "$path"
  CHANGED+=("$path")
  echo "changed $path"
}

# unpack_bundle < BUNDLE
# The bundle on stdin holds files as
#   @@@ homelab-kubelet file PATH MODE
#   ...content lines...
#   @@@ homelab-kubelet end
# Data travels on stdin, never in the command line (no secret lands in `ps` or the journal).
unpack_bundle() {
  local line path="" mode="" content=""
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      "@@@ homelab-kubelet file "*)
        read -r path mode <<<"${line#@@@ homelab-kubelet file }"
        content=""
        ;;
      "@@@ homelab-kubelet end")
        [ -n "$path" ] || fail "malformed bundle: end without file"
        # Process substitution, not a pipe: install_file runs in this shell (CHANGED, TEMP_PATHS).
        install_file "$path" "$mode" < <(printf '%s' "$content")
        path=""
        ;;
      *)
        [ -n "$path" ] || fail "malformed bundle: data outside a file"
        content+="$line"$'\n'
        ;;
    esac
  done
  [ -z "$path" ] || fail "malformed bundle: $path has no end marker (stdin cut short?)"
}

cgroup_version() {
  case "$(stat -fc %T /sys/fs/cgroup)" in
    cgroup2fs) echo v2 ;;
    tmpfs) if [ -d /sys/fs/cgroup/unified ]; then echo hybrid; else echo v1; fi ;;
    *) echo unknown ;;
  esac
}

# json_string TEXT: TEXT as a JSON string, escaped strictly (RFC 8259): a hostname with quotes,
# backslashes or control characters cannot change or break the preflight facts.
json_string() {
  local text=$1 out="" char code i
  for ((i = 0; i < ${#text}; i++)); do
    char=${text:i:1}
    # shellcheck disable=SC1003  # the backslash branch: escaped as JSON wants it
    case "$char" in
      '"') out+='\"' ;;
      "\\") out+='\\' ;;
      *)
        printf -v code '%d' "'$char"
        if [ "$code" -ge 0 ] && [ "$code" -lt 32 ]; then
          printf -v char '\\u%04x' "$code"
        fi
        out+=$char
        ;;
    esac
  done
  printf '"%s"' "$out"
}

# write_state PATH VALUE: one line of the project's own bookkeeping, landed with a rename.
write_state() {
  local tmp
  ensure_dir "${1%/*}"
  keep_for_rollback "$1"
  tmp=$(new_temp "$1")
  TEMP_PATHS+=("$tmp")
  printf '%s\n' "$2" >"$tmp" || fail "cannot write $1 (df -h ${1%/*}; is its filesystem full?)"
  land "$tmp" "$1"
}

# --- what the project owns on the node --------------------------------------------------------
# One record per path a step writes, in $OWNED_DIR (the path with / as %): how the project came
# to own the path, and the sha256 of what it last wrote there.
#   created  SHA256  nothing was there; delete removes the file
#   replaced SHA256  another file was there; its copy is RECORD.orig, and delete puts it back
#   adopted  SHA256  the same content was there already (a node built by hand, a control plane's
#                    CA); delete leaves it
# Delete acts only while the file still holds what the project wrote: a file changed since then is
# left in place, and the step says so.

record_of() { printf '%s/%s' "$OWNED_DIR" "${1//\//%}"; }

record_how() {
  local record how=""
  record=$(record_of "$1")
  [ ! -f "$record" ] || read -r how _ <"$record"
  echo "$how"
}

# own_unchanged PATH SHA256: PATH already holds what the step writes.
own_unchanged() {
  [ -z "$(record_how "$1")" ] || return 0
  # An update without a record: an earlier homelab-kubelet, which kept no records, wrote it.
  if [ "$MODE" = update ]; then
    write_state "$(record_of "$1")" "created $2"
  else
    write_state "$(record_of "$1")" "adopted $2"
  fi
}

# own_before_change PATH SHA256: the step is about to replace PATH with content of SHA256.
own_before_change() {
  local path=$1 how record
  how=$(record_how "$path")
  record=$(record_of "$path")
  case "$how" in
    created | replaced) ;;
    *)
      if [ ! -e "$path" ] || { [ -z "$how" ] && [ "$MODE" = update ]; }; then
        how=created
      else
        # Another file (or one the project only adopted): keep it to put back on delete.
        guard_foreign_file "$path"
        ensure_dir "$OWNED_DIR"
        keep_for_rollback "$record.orig"
        { cp -p "$path" "$record.orig" && sync "$record.orig"; } ||
          fail "cannot keep a copy of $path (df -h $OWNED_DIR; is it full?)"
        how=replaced
      fi
      ;;
  esac
  write_state "$record" "$how $2"
}

# Paths the project must not take over from someone else (set per step; see write-credentials.sh).
# guard_foreign_file PATH: fail with GUARDED_REASON (which may name $path) for a guarded PATH.
GUARDED_PATHS=()
GUARDED_REASON=""
guard_foreign_file() {
  local guarded
  for guarded in "${GUARDED_PATHS[@]}"; do
    [ "$guarded" != "$1" ] || fail "$1: $GUARDED_REASON"
  done
}

# give_back PATH...: undo the step's writes of PATH (delete; see the records above).
give_back() {
  local path record how sum current
  for path in "$@"; do
    record=$(record_of "$path")
    if [ ! -f "$record" ]; then
      # Written by an earlier homelab-kubelet, which kept no records: remove it, as that version did.
      [ ! -e "$path" ] || remove_unless_used "$path"
      continue
    fi
    read -r how sum <"$record"
    if [ -e "$path" ]; then
      current=$(sha256sum <"$path") || fail "cannot read $path"
      if [ "${current%% *}" != "$sum" ]; then
        log "left $path in place: it changed since homelab-kubelet wrote it"
        [ "$how" != replaced ] || log "the file it replaced is kept at $record.orig"
        echo "left $path: changed since homelab-kubelet wrote it"
        rm -f "$record"
        continue
      fi
    fi
    case "$how" in
      created) [ ! -e "$path" ] || remove_unless_used "$path" ;;
      replaced)
        mv -f "$record.orig" "$path" || fail "cannot put back $path from $record.orig"
        echo "restored $path"
        ;;
      *) echo "left $path: it was there before homelab-kubelet" ;;
    esac
    rm -f "$record"
  done
}

# Where another program may name a file the project wrote (a control plane's units and manifests);
# rendered for the steps that check it.
[ -v USER_DIRS ] || USER_DIRS=()
remove_unless_used() {
  local dir file files=() users=""
  for dir in "${USER_DIRS[@]}"; do
    for file in "$dir"/*; do
      # The kubelet's own unit names its files; it is not another user.
      [ ! -f "$file" ] || [ "${file##*/}" = kubelet.service ] || files+=("$file")
    done
  done
  [ "${#files[@]}" -eq 0 ] || users=$(grep -lF -- "$1" "${files[@]}" || true)
  if [ -n "$users" ]; then
    log "left $1 in place: ${users//$'\n'/, } use(s) it"
    echo "left $1: in use by ${users//$'\n'/ }"
    return 0
  fi
  rm -f "$1" || fail "cannot remove $1"
  echo "removed $1"
}

# --- holders of a step ------------------------------------------------------------------------
# Holders of a step on this node ($HOLDERS_DIR/$STEP): one per Pulumi resource whose create ran
# here (hold.sh). Pulumi replaces a step by creating the new resource and then deleting the old
# one with the old inputs; the count lets that old delete see that a newer create holds the step.
holder_count() {
  local count=0
  [ ! -f "$HOLDERS_DIR/$STEP" ] || count=$(<"$HOLDERS_DIR/$STEP")
  [[ "$count" =~ ^[0-9]+$ ]] || count=0
  echo "$count"
}

# hold_step create|update: a create adds a holder, an update keeps the one it is.
hold_step() {
  local count
  count=$(holder_count)
  case "$1" in
    create) count=$((count + 1)) ;;
    update) [ "$count" -ge 1 ] || count=1 ;;
    *) fail "hold_step: unknown mode '$1'" ;;
  esac
  write_state "$HOLDERS_DIR/$STEP" "$count"
}

# release_step: drop this resource's hold; succeeds only when it was the last holder.
release_step() {
  local count
  count=$(holder_count)
  if [ "$count" -gt 1 ]; then
    write_state "$HOLDERS_DIR/$STEP" $((count - 1))
    return 1
  fi
  rm -f "$HOLDERS_DIR/$STEP" || fail "cannot remove $HOLDERS_DIR/$STEP"
}
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
# The run reached its end: a success (lib.sh, run_exit_hooks).
STEP_DONE=true
