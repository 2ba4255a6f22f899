# Write the kubelet configuration, systemd units, slices and the cgroup helper from the bundle
# on stdin; make the container runtime fit (cgroup driver, slice); enable the kubelet unit and
# reload systemd if needed.

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

# One daemon-reload for everything (each costs seconds on a small node). Also when a unit file is
# newer than what systemd loaded: a run interrupted after writing it left no "changed" line.
systemctl enable --quiet --no-reload kubelet.service || fail "systemctl enable kubelet.service failed"
case "$changes" in *"/etc/systemd/"*) systemd_changed=true ;; *) systemd_changed=false ;; esac
if [ "$systemd_changed" = true ] || [ "$containerd_changed" = true ] ||
  systemctl show -p NeedDaemonReload --value kubelet.service containerd.service | grep -qx yes; then
  systemctl daemon-reload
fi
if [ "$containerd_changed" = true ]; then
  systemctl restart containerd.service
  for _ in $(seq 1 30); do
    [ -S "$RUNTIME_SOCKET" ] && break
    sleep 1
  done
  [ -S "$RUNTIME_SOCKET" ] || fail "containerd did not come back after its restart (journalctl -u containerd)"
  log "restarted containerd (runc SystemdCgroup = true, Slice=$KUBE_SLICE)"
fi
