# Delete of the configure step: stop the kubelet, remove what configure wrote and put back what it
# replaced (lib.sh, give_back), and give the container runtime back its own configuration.
systemctl disable --now kubelet.service 2>/dev/null || true
containerd_changed=false
[ ! -e "$CONTAINERD_DROPIN" ] || containerd_changed=true
give_back "${FILES[@]}"
rm -f "$KUBELET_RECORD"
if [ -f "$(record_of "$CONTAINERD_CONFIG")" ]; then
  give_back "$CONTAINERD_CONFIG"
  containerd_changed=true
elif [ -f "$STATE_DIR/containerd-config-managed" ]; then
  # Set up by an earlier homelab-kubelet, which kept containerd's original here.
  if [ -f "$STATE_DIR/containerd-config.toml.orig" ]; then
    mv -f "$STATE_DIR/containerd-config.toml.orig" "$CONTAINERD_CONFIG"
  else
    rm -f "$CONTAINERD_CONFIG"
  fi
  rm -f "$STATE_DIR/containerd-config-managed"
  containerd_changed=true
fi
rmdir "${CONTAINERD_DROPIN%/*}" 2>/dev/null || true
systemctl daemon-reload
if [ "$containerd_changed" = true ] && systemctl is-active --quiet containerd.service; then
  systemctl restart containerd.service
fi
if [ -e "$KUBELET_UNIT" ]; then
  log "kubelet stopped and disabled; the kubelet.service that was there before is back (systemctl enable --now kubelet runs it)"
else
  log "kubelet stopped and disabled"
fi
