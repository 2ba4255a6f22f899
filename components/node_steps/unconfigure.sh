# Delete of the configure step: stop the kubelet, remove what configure wrote, and give the
# container runtime back its own configuration.
systemctl disable --now kubelet.service 2>/dev/null || true
containerd_changed=false
[ ! -e "$CONTAINERD_DROPIN" ] || containerd_changed=true
for path in "${FILES[@]}"; do
  rm -f "$path"
done
rm -f "$KUBELET_RECORD"
if [ -f "$STATE_DIR/containerd-config-managed" ]; then
  if [ -f "$STATE_DIR/containerd-config.toml.orig" ]; then
    mv -f "$STATE_DIR/containerd-config.toml.orig" "$CONTAINERD_CONFIG"
  else
    rm -f "$CONTAINERD_CONFIG"
  fi
  rm -f "$STATE_DIR/containerd-config-managed"
  containerd_changed=true
fi
rmdir --ignore-fail-on-non-empty "$(dirname "$CONTAINERD_DROPIN")" "$STATE_DIR" 2>/dev/null || true
systemctl daemon-reload
if [ "$containerd_changed" = true ] && systemctl is-active --quiet containerd.service; then
  systemctl restart containerd.service
fi
log "kubelet stopped and disabled; removed ${FILES[*]}"
