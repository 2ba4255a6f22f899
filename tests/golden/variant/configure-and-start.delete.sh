sudo -n true 2>/dev/null || { echo 'ERROR [k8s-node1]: user kube cannot run sudo without a password; add a sudoers rule such as: kube ALL=(ALL) NOPASSWD: ALL' >&2; exit 1; }
sudo -n bash -c "$(cat <<'HOMELAB_KUBELET_SCRIPT'
set -euo pipefail
# homelab-kubelet: unconfigure on node k8s-node1
NODE_NAME=k8s-node1
FILES=(/var/lib/kubelet/kubelet-config.yaml /etc/systemd/system/kubelet.service /etc/systemd/system/kube.slice /etc/systemd/system/system.slice.d/10-homelab-kubelet-reserved.conf /etc/systemd/system/containerd.service.d/10-homelab-kubelet-slice.conf /usr/local/libexec/homelab-kubelet/prepare-cgroups)
STATE_DIR=/var/lib/homelab-kubelet
CONTAINERD_DROPIN=/etc/systemd/system/containerd.service.d/10-homelab-kubelet-slice.conf
CONTAINERD_CONFIG=/etc/containerd/config.toml
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
  # Parameter expansion, not dirname/basename: every process costs on a slow node.
  dir=${path%/*}
  dir=${dir:-/}
  [ -d "$dir" ] || install -d -m 0755 "$dir"
  tmp=$(mktemp "$dir/.${path##*/}.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path" && [ "$(stat -c %a "$path")" = "${mode#0}" ]; then
    rm -f "$tmp"
    return 0
  fi
  local saved="${ROLLBACK_DIR:-}/${path//\//%}"
  if [ -n "${ROLLBACK_DIR:-}" ] && [ ! -e "$saved" ]; then
    # Keep what the first change of this path replaces, for rollback.sh (set only by the steps
    # that roll back). A new file is noted as "-": rolling back removes it.
    if [ -e "$path" ]; then
      cp -p "$path" "$saved"
      printf '%s\t%s\n' "${saved##*/}" "$path" >>"$ROLLBACK_DIR/manifest"
    else
      : >"$saved"
      printf '%s\t%s\n' - "$path" >>"$ROLLBACK_DIR/manifest"
    fi
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
# Delete of the configure step: stop the kubelet, remove what configure wrote, and give the
# container runtime back its own configuration.
systemctl disable --now kubelet.service 2>/dev/null || true
for path in "${FILES[@]}"; do
  rm -f "$path"
done
containerd_changed=false
if [ -f "$STATE_DIR/containerd-config-managed" ]; then
  if [ -f "$STATE_DIR/containerd-config.toml.orig" ]; then
    mv -f "$STATE_DIR/containerd-config.toml.orig" "$CONTAINERD_CONFIG"
  else
    rm -f "$CONTAINERD_CONFIG"
  fi
  rm -f "$STATE_DIR/containerd-config-managed"
  containerd_changed=true
fi
[ -f "$CONTAINERD_DROPIN" ] || containerd_changed=true
rmdir --ignore-fail-on-non-empty "$(dirname "$CONTAINERD_DROPIN")" "$STATE_DIR" 2>/dev/null || true
systemctl daemon-reload
if [ "$containerd_changed" = true ] && systemctl is-active --quiet containerd.service; then
  systemctl restart containerd.service
fi
log "kubelet stopped and disabled; removed ${FILES[*]}"
HOMELAB_KUBELET_SCRIPT
)"
