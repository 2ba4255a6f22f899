# Start the kubelet when it is down, restart it only when a file it runs on changed since it was
# started (KUBELET_RUNS_ON: binary, credentials, configuration, units, containerd's config), and
# then check that it is healthy and stays so: "Started kubelet" and an `ok` from /healthz can come
# seconds before the container manager dies with a fatal error, so also watch the restart counter
# over a settle window and the journal for F-lines. Runs after configure.sh, which enabled the
# unit and reloaded systemd when needed.

# One line per file: the binary by identity (hashing it costs seconds on a small node, and
# install-kubelet always renames a new file into place), the rest by content; "absent" if missing.
kubelet_fingerprint() {
  local path hashed=()
  for path in "${KUBELET_RUNS_ON[@]}"; do
    if [ ! -e "$path" ]; then
      printf 'absent %s\n' "$path"
    elif [ "$path" = "$KUBELET_BINARY" ]; then
      stat -c 'file-%d-%i-%s-%Y %n' "$path"
    else
      hashed+=("$path")
    fi
  done
  [ "${#hashed[@]}" -eq 0 ] || sha256sum "${hashed[@]}"
}

fingerprint=$(kubelet_fingerprint)
reason=""
if ! systemctl is-active --quiet kubelet.service; then
  reason="it was not running"
elif [ -f "$KUBELET_RECORD" ]; then
  changed=$(awk 'NR == FNR { started[$2] = $1; next } started[$2] != $1 { printf " %s", $2 }' \
    "$KUBELET_RECORD" - <<<"$fingerprint")
  [ -z "$changed" ] || reason="changed since it started:$changed"
else
  # No record (a node set up before records were kept): a file newer than the running kubelet.
  since=$(date -d "$(systemctl show -p ExecMainStartTimestamp --value kubelet.service)" +%s 2>/dev/null || echo 0)
  existing=()
  for path in "${KUBELET_RUNS_ON[@]}"; do [ ! -e "$path" ] || existing+=("$path"); done
  changed=$(stat -c '%Y %n' "${existing[@]}" | awk -v since="$since" '$1 >= since { printf " %s", $2 }')
  [ -z "$changed" ] || reason="newer than the running kubelet:$changed"
fi

restart_and_check() {
  started=$(date +%s)
  systemctl restart kubelet.service
  log "kubelet (re)started ($reason); waiting up to ${HEALTH_TIMEOUT}s for /healthz on 127.0.0.1:$HEALTHZ_PORT"

  healthz() { curl -fsS --max-time 5 "http://127.0.0.1:$HEALTHZ_PORT/healthz" 2>/dev/null || true; }
  restarts() { systemctl show -p NRestarts --value kubelet.service; }
  fatal_lines() {
    journalctl -u kubelet.service --since "@$started" -o cat --no-pager 2>/dev/null | grep -E '^F[0-9]{4} ' || true
  }

  problem=""
  while :; do
    if systemctl is-active --quiet kubelet.service && [ "$(healthz)" = ok ]; then
      break
    fi
    if [ $(($(date +%s) - started)) -ge "$HEALTH_TIMEOUT" ]; then
      problem="not healthy within ${HEALTH_TIMEOUT}s (systemctl is-active: $(systemctl is-active kubelet.service || true), /healthz: '$(healthz)')"
      break
    fi
    sleep 2
  done

  if [ -z "$problem" ]; then
    before=$(restarts)
    sleep "$SETTLE_SECONDS"
    after=$(restarts)
    if [ "$before" != "$after" ]; then
      problem="restarted $((after - before)) time(s) during the ${SETTLE_SECONDS}s settle window"
    elif ! systemctl is-active --quiet kubelet.service; then
      problem="stopped during the ${SETTLE_SECONDS}s settle window"
    elif [ -n "$(fatal_lines)" ]; then
      problem="logged a fatal error"
    fi
  fi

  if [ -n "$problem" ]; then
    journal=$(journalctl -u kubelet.service --since "@$started" -o cat --no-pager 2>/dev/null || true)
    {
      printf 'ERROR [%s]: kubelet %s\n' "$NODE_NAME" "$problem"
      printf -- '--- last lines of journalctl -u kubelet.service ---\n'
      printf '%s\n' "$journal" | tail -n "$JOURNAL_LINES"
      printf -- '---\n'
      for index in "${!HINT_PATTERNS[@]}"; do
        # grep: 0 a match, 1 none, 2 a pattern PCRE refuses (say so rather than lose the hint).
        if line=$(grep -P -m1 -e "${HINT_PATTERNS[$index]}" <<<"$journal" 2>&1); then
          printf '%s\n    matched: %s\n' "${HINT_TEXTS[$index]}" "${line:0:300}"
        elif [ $? -ge 2 ]; then
          printf 'homelab-kubelet: hint pattern %d is not valid for grep -P (%s); please report it\n' \
            "$index" "${line:0:200}"
        fi
      done
    } >&2
    exit 1
  fi
  log "kubelet is healthy: active, /healthz ok, no restart and no fatal line over ${SETTLE_SECONDS}s"
}

if [ -n "$reason" ]; then
  restart_and_check
  report="kubelet restarted: $reason"
else
  report="kubelet not restarted: nothing it runs on changed since it started"
  log "$report"
fi
write_state "$KUBELET_RECORD" "$fingerprint"
echo "$report"
