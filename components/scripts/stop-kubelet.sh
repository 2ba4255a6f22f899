# Delete of the start step: stop and disable the kubelet.
systemctl disable --now kubelet.service 2>/dev/null || true
log "kubelet stopped and disabled"
