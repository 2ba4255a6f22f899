# One run of the project's steps at a time on this node (two checkouts, two backends, a CI job
# beside a person): interleaved, one run's rollback could undo what the other wrote. The lock is
# the kernel's (flock) and ends with the process that holds it, so a killed run leaves none.
ensure_dir "$STATE_DIR"
exec 9>>"$LOCK_FILE" || fail "cannot open $LOCK_FILE"
if ! flock -n 9; then
  log "waiting up to ${LOCK_WAIT_SECONDS}s for another homelab-kubelet run on this node ($(cat "$LOCK_FILE" 2>/dev/null || true))"
  flock -w "$LOCK_WAIT_SECONDS" 9 ||
    fail "another homelab-kubelet run holds this node: $(cat "$LOCK_FILE" 2>/dev/null || echo 'unknown run'); waited ${LOCK_WAIT_SECONDS}s. Let it finish, then run pulumi up again"
fi
# Who holds it, for the message above; a full disk must not fail the step here.
printf '%s (%s) since %s, pid %d\n' "$STEP" "$MODE" "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$$" >"$LOCK_FILE" 2>/dev/null || true
