bash -c "$(cat <<'HOMELAB_KUBELET_SCRIPT'
set -euo pipefail
# homelab-kubelet: configure on node k8s-node1
NODE_NAME=k8s-node1
STATIC_POD_PATH=/etc/kubelet.d
KUBELET_DIR=/var/lib/kubelet
STATE_DIR=/var/lib/homelab-kubelet
CONTAINERD_DROPIN=/etc/systemd/system/containerd.service.d/10-homelab-kubelet-slice.conf
CONTAINERD_CONFIG=/etc/containerd/config.toml
MANAGE_CONTAINERD_CGROUP_DRIVER=true
RUNTIME_SOCKET=/run/containerd/containerd.sock
KUBE_SLICE=kube.slice
# shellcheck disable=SC2034  # some steps use only part of lib.sh
# Shared functions of every node script. Rendered scripts start with `set -euo pipefail` and
# the step's variables (NODE_NAME, ...), then this file, then the step itself.

log() { printf '[%s] %s\n' "$NODE_NAME" "$*" >&2; }

fail() {
  printf 'ERROR [%s]: %s\n' "$NODE_NAME" "$*" >&2
  exit 1
}

# install_file PATH MODE < CONTENT
# Writes atomically (temp file in the same directory + rename), so an interrupted run never
# leaves a half-written file. Prints "changed PATH" only when content or mode differ.
install_file() {
  local path=$1 mode=$2 dir tmp
  dir=$(dirname "$path")
  install -d -m 0755 "$dir"
  tmp=$(mktemp "$dir/.$(basename "$path").XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path" && [ "$(stat -c %a "$path")" = "${mode#0}" ]; then
    rm -f "$tmp"
    return 0
  fi
  mv -f "$tmp" "$path"
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
        printf '%s' "$content" | install_file "$path" "$mode"
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
# Write the kubelet configuration, systemd units, slices and the cgroup helper from the bundle
# on stdin; make the container runtime fit (cgroup driver, slice); reload systemd if needed.

install -d -m 0755 "$STATIC_POD_PATH" "$KUBELET_DIR" "$STATE_DIR"
changes=$(unpack_bundle)
[ -z "$changes" ] || printf '%s\n' "$changes"

containerd_changed=false
case "$changes" in *"$CONTAINERD_DROPIN"*) containerd_changed=true ;; esac

if [ "$MANAGE_CONTAINERD_CGROUP_DRIVER" = true ] &&
  ! containerd config dump 2>/dev/null | grep -Eq '^\s*SystemdCgroup\s*=\s*true'; then
  # Keep the operator's file so `pulumi destroy` can put it back.
  if [ -f "$CONTAINERD_CONFIG" ] && [ ! -f "$STATE_DIR/containerd-config.toml.orig" ]; then
    cp -p "$CONTAINERD_CONFIG" "$STATE_DIR/containerd-config.toml.orig"
  fi
  touch "$STATE_DIR/containerd-config-managed"
  # Generate first: a failing generator must not leave an empty config.toml behind.
  default_config=$(containerd config default) || fail "containerd config default failed; cannot set SystemdCgroup"
  printf '%s\n' "$default_config" | sed -E 's/^(\s*SystemdCgroup\s*=\s*)false/\1true/' |
    install_file "$CONTAINERD_CONFIG" 0644
  containerd_changed=true
fi

case "$changes" in *"/etc/systemd/"*) systemctl daemon-reload ;; esac
if [ "$containerd_changed" = true ]; then
  systemctl daemon-reload
  systemctl restart containerd.service
  for _ in $(seq 1 30); do
    [ -S "$RUNTIME_SOCKET" ] && break
    sleep 1
  done
  [ -S "$RUNTIME_SOCKET" ] || fail "containerd did not come back after its restart (journalctl -u containerd)"
  log "restarted containerd (runc SystemdCgroup = true, Slice=$KUBE_SLICE)"
fi
HOMELAB_KUBELET_SCRIPT
)"
