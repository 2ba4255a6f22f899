# Delete of the install step: remove the binary this program installed.
rm -f "$KUBELET_BINARY"
log "removed $KUBELET_BINARY"
