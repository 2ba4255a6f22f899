# A failed configure-and-start puts the node back as it found it: every file this run changed gets
# its previous content back (a new one is removed), and kubelet and containerd run as before.
# When the step fails the state keeps the previous configuration, so the node must match it:
# otherwise reverting the stack config would be a no-op for Pulumi and the bad files would stay.
# "Failed" includes a dropped connection or any signal (lib.sh, run_exit_hooks).

ensure_dir "$STATE_DIR"
ROLLBACK_DIR=$(mktemp -d "$STATE_DIR/.rollback.XXXXXX") || fail "cannot create a directory in $STATE_DIR (df -h $STATE_DIR; is it full?)"
TEMP_PATHS+=("$ROLLBACK_DIR")
kubelet_was_active=$(systemctl is-active kubelet.service 2>/dev/null || true)
kubelet_was_enabled=$(systemctl is-enabled kubelet.service 2>/dev/null || true)

# shellcheck disable=SC2317,SC2329  # runs from run_exit_hooks
restore_kept() {
  local saved path
  restored=0
  containerd_touched=false
  while IFS=$'\t' read -r saved path; do
    if [ "$saved" = - ]; then rm -f "$path"; else mv -f "$ROLLBACK_DIR/$saved" "$path"; fi
    case "$path" in
      "$STATE_DIR"/*) ;;
      "$CONTAINERD_CONFIG" | "$CONTAINERD_DROPIN") restored=$((restored + 1)) containerd_touched=true ;;
      *) restored=$((restored + 1)) ;;
    esac
  done <"$ROLLBACK_DIR/manifest"
}

# shellcheck disable=SC2317,SC2329  # runs from run_exit_hooks
roll_back() {
  local status=$1 restored containerd_touched message
  [ "$status" -ne 0 ] && [ -s "$ROLLBACK_DIR/manifest" ] || return 0
  # Only the project's own bookkeeping changed (records, holders): put it back, touch nothing else.
  if ! cut -f2 "$ROLLBACK_DIR/manifest" | grep -qv "^$STATE_DIR/"; then
    restore_kept
    return 0
  fi
  systemctl stop kubelet.service 2>/dev/null
  [ "$kubelet_was_enabled" = enabled ] || systemctl disable --quiet --no-reload kubelet.service 2>/dev/null
  restore_kept
  systemctl daemon-reload
  [ "$containerd_touched" = false ] || systemctl restart containerd.service
  if [ "$kubelet_was_active" = active ]; then
    systemctl start kubelet.service
    message="rolled back: put back the $restored file(s) this run changed and restarted kubelet with its previous configuration"
  else
    message="rolled back: put back the $restored file(s) this run changed; kubelet stays stopped as it was"
  fi
  log "$message"
  # Also in the journal: after a dropped connection nobody reads stderr.
  logger -t homelab-kubelet "$STEP on $NODE_NAME failed (status $status); $message" 2>/dev/null
}
EXIT_HOOKS+=(roll_back)
