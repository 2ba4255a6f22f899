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
