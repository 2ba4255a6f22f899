# A failed configure-and-start puts the node back as it found it: every file this run changed gets
# its previous content back (a new one is removed), and kubelet and containerd run as before.
# When the step fails the state keeps the previous configuration, so the node must match it:
# otherwise reverting the stack config would be a no-op for Pulumi and the bad files would stay.

install -d -m 0755 "$STATE_DIR"
ROLLBACK_DIR=$(mktemp -d "$STATE_DIR/.rollback.XXXXXX")
kubelet_was_active=$(systemctl is-active kubelet.service 2>/dev/null || true)
kubelet_was_enabled=$(systemctl is-enabled kubelet.service 2>/dev/null || true)

# shellcheck disable=SC2317,SC2329  # runs from the EXIT trap
roll_back() {
  local status=$? saved path restored=0 containerd_touched=false
  trap - EXIT
  set +e
  if [ "$status" -ne 0 ] && [ -s "$ROLLBACK_DIR/manifest" ]; then
    systemctl stop kubelet.service 2>/dev/null
    [ "$kubelet_was_enabled" = enabled ] || systemctl disable --quiet --no-reload kubelet.service 2>/dev/null
    while IFS=$'\t' read -r saved path; do
      if [ "$saved" = - ]; then rm -f "$path"; else mv -f "$ROLLBACK_DIR/$saved" "$path"; fi
      restored=$((restored + 1))
      case "$path" in "$CONTAINERD_CONFIG" | "$CONTAINERD_DROPIN") containerd_touched=true ;; esac
    done <"$ROLLBACK_DIR/manifest"
    systemctl daemon-reload
    [ "$containerd_touched" = false ] || systemctl restart containerd.service
    if [ "$kubelet_was_active" = active ]; then
      systemctl start kubelet.service
      log "rolled back: put back the $restored file(s) this run changed and restarted kubelet with its previous configuration"
    else
      log "rolled back: put back the $restored file(s) this run changed; kubelet stays stopped as it was"
    fi
  fi
  rm -rf "$ROLLBACK_DIR"
  exit "$status"
}
trap roll_back EXIT
