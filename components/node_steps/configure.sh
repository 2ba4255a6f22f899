# Write the kubelet configuration, systemd units, slices and the cgroup helper from the bundle
# on stdin; make the container runtime fit (cgroup driver, slice); enable the kubelet unit and
# reload systemd if needed.

ensure_dir "$STATIC_POD_PATH" "$KUBELET_DIR" "$STATE_DIR"
migrate_containerd_bookkeeping() {
  # An earlier homelab-kubelet kept containerd's original in $STATE_DIR: make it a record.
  local record
  record=$(record_of "$CONTAINERD_CONFIG")
  [ -f "$STATE_DIR/containerd-config-managed" ] || return 0
  if [ ! -f "$record" ] && [ -f "$CONTAINERD_CONFIG" ]; then
    local sum
    sum=$(sha256sum <"$CONTAINERD_CONFIG") || fail "cannot read $CONTAINERD_CONFIG"
    if [ -f "$STATE_DIR/containerd-config.toml.orig" ]; then
      ensure_dir "$OWNED_DIR"
      keep_for_rollback "$record.orig"
      keep_for_rollback "$STATE_DIR/containerd-config.toml.orig"
      mv -f "$STATE_DIR/containerd-config.toml.orig" "$record.orig" || fail "cannot move containerd's original config"
      write_state "$record" "replaced ${sum%% *}"
    else
      write_state "$record" "created ${sum%% *}"
    fi
  fi
  keep_for_rollback "$STATE_DIR/containerd-config-managed"
  rm -f "$STATE_DIR/containerd-config-managed" "$STATE_DIR/containerd-config.toml.orig"
}
migrate_containerd_bookkeeping
unpack_bundle

containerd_changed=false
case " ${CHANGED[*]} " in *" $CONTAINERD_DROPIN "*) containerd_changed=true ;; esac

if [ "$MANAGE_CONTAINERD_CGROUP_DRIVER" = true ] &&
  ! containerd config dump 2>/dev/null | grep -Eq '^\s*SystemdCgroup\s*=\s*true'; then
  # Generate first: a failing generator must not leave an empty config.toml behind. The
  # operator's own file is kept (lib.sh, records) and put back by `pulumi destroy`.
  default_config=$(containerd config default) || fail "containerd config default failed; cannot set SystemdCgroup"
  install_file "$CONTAINERD_CONFIG" 0644 < <(printf '%s\n' "$default_config" | sed -E 's/^(\s*SystemdCgroup\s*=\s*)false/\1true/')
  containerd_changed=true
fi

# One daemon-reload for everything (each costs seconds on a small node). Also when a unit file is
# newer than what systemd loaded: a run interrupted after writing it left no "changed" line.
systemctl enable --quiet --no-reload kubelet.service || fail "systemctl enable kubelet.service failed"
case " ${CHANGED[*]} " in *" $SYSTEMD_DIR/"*) systemd_changed=true ;; *) systemd_changed=false ;; esac
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
