set -euo pipefail
# homelab-kubelet: undo configure and start on node k8s-node1
NODE_NAME=k8s-node1
STEP=configure-and-start
STATE_DIR=/var/lib/homelab-kubelet
HOLDERS_DIR=/var/lib/homelab-kubelet/holders
OWNED_DIR=/var/lib/homelab-kubelet/owned
LOCK_FILE=/var/lib/homelab-kubelet/lock
LOCK_WAIT_SECONDS=600
FILES=(/var/lib/kubelet/kubelet-config.yaml /etc/systemd/system/kubelet.service /etc/systemd/system/kube.slice /etc/systemd/system/system.slice.d/10-homelab-kubelet-reserved.conf /etc/systemd/system/containerd.service.d/10-homelab-kubelet-slice.conf /usr/local/libexec/homelab-kubelet/prepare-cgroups /etc/crictl.yaml)
KUBELET_UNIT=/etc/systemd/system/kubelet.service
KUBELET_RECORD=/var/lib/homelab-kubelet/kubelet-running
CONTAINERD_DROPIN=/etc/systemd/system/containerd.service.d/10-homelab-kubelet-slice.conf
CONTAINERD_CONFIG=/etc/containerd/config.toml
# shellcheck disable=SC2034  # some steps use only part of lib.sh
# Shared functions of every node script. Rendered scripts start with `set -euo pipefail` and
# the step's variables (NODE_NAME, ...), then this file, then the step itself, and end with
# `STEP_DONE=true`.

umask 022
# The loader runs a script as `bash -c SCRIPT STEP MODE`.
case "${1:-}" in create | update | delete) MODE=$1 ;; *) MODE=create ;; esac

log() { printf '[%s] %s\n' "$NODE_NAME" "$*" >&2; }

fail() {
  printf 'ERROR [%s]: %s\n' "$NODE_NAME" "$*" >&2
  exit 1
}

# --- how a run ends ---------------------------------------------------------------------------
# A run succeeded only if it reached its last line (STEP_DONE=true); an error or a signal is a
# failure whatever `$?` says. A dropped SSH connection reaches a step as SIGPIPE at its next write
# (sshd sends no SIGHUP to a session without a terminal), and without these traps bash would run
# the EXIT trap with the status of the last command, usually 0.
STEP_DONE=false
EXIT_HOOKS=() # functions run at exit with the final status (rollback.sh adds its rollback)
TEMP_PATHS=() # removed at exit, whatever the outcome: a failed run leaves no temp files

run_exit_hooks() {
  local status=$? hook
  trap - EXIT
  # The session may be gone: a failed write must not cut the cleanup short.
  trap '' PIPE HUP
  set +e
  [ "$STEP_DONE" = true ] || [ "$status" -ne 0 ] || status=1
  for hook in "${EXIT_HOOKS[@]}"; do "$hook" "$status"; done
  [ "${#TEMP_PATHS[@]}" -eq 0 ] || rm -rf "${TEMP_PATHS[@]}"
  exit "$status"
}
trap run_exit_hooks EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# --- writes -----------------------------------------------------------------------------------
# Every write is checked where it happens (`|| fail`): set -e does not apply inside a function
# called from `if` or `||`, nor inside `$(...)`.

# ensure_dir DIR...: create missing directories (0755, umask 022); an existing one keeps its mode
# (`install -d -m` would chmod it: a staticPodPath of /tmp would lose its sticky bit).
ensure_dir() {
  local dir
  for dir in "$@"; do
    [ -d "$dir" ] || mkdir -p "$dir" || fail "cannot create directory $dir (df -h; is its filesystem full or read-only?)"
  done
}

# new_temp PATH: prints a new empty temp file beside PATH (same filesystem, so a rename lands it).
new_temp() {
  local dir=${1%/*}
  mktemp "${dir:-/}/.${1##*/}.XXXXXX" || fail "cannot create a file in ${dir:-/} (df -h ${dir:-/}; is it full or read-only?)"
}

# land TEMP PATH: flush TEMP to disk, then rename it over PATH.
land() {
  sync "$1" || fail "cannot flush $2 to disk (df -h ${2%/*})"
  mv -f "$1" "$2" || fail "cannot move $2 into place"
}

# keep_for_rollback PATH: before this run first changes PATH, keep what is there (or note that
# nothing was) for rollback.sh. A no-op in the steps that do not roll back (no ROLLBACK_DIR).
keep_for_rollback() {
  [ -n "${ROLLBACK_DIR:-}" ] || return 0
  local saved="$ROLLBACK_DIR/${1//\//%}"
  [ ! -e "$saved" ] || return 0
  if [ -e "$1" ]; then
    { cp -p "$1" "$saved" && sync "$saved"; } || fail "cannot keep a copy of $1 for a rollback (df -h $ROLLBACK_DIR; is it full?)"
    printf '%s\t%s\n' "${saved##*/}" "$1" >>"$ROLLBACK_DIR/manifest" || fail "cannot write $ROLLBACK_DIR/manifest (df -h $ROLLBACK_DIR; is it full?)"
  else
    : >"$saved" || fail "cannot write in $ROLLBACK_DIR (df -h $ROLLBACK_DIR; is it full?)"
    printf '%s\t%s\n' - "$1" >>"$ROLLBACK_DIR/manifest" || fail "cannot write $ROLLBACK_DIR/manifest (df -h $ROLLBACK_DIR; is it full?)"
  fi
}

# The paths this run changed, in order (configure.sh decides on reloads and restarts from them).
CHANGED=()

# install_file PATH MODE < CONTENT
# Writes atomically (temp file in the same directory, flushed, renamed), so a full disk or an
# interrupted run never leaves a short file. Prints "changed PATH" only when content or mode differ.
install_file() {
  local path=$1 mode=$2 tmp sum
  ensure_dir "${path%/*}"
  tmp=$(new_temp "$path")
  TEMP_PATHS+=("$tmp")
  { cat >"$tmp" && chmod "$mode" "$tmp"; } || fail "cannot write $path (df -h ${path%/*}; is its filesystem full?)"
  sum=$(sha256sum <"$tmp") || fail "cannot read back $tmp"
  sum=${sum%% *}
  if [ -f "$path" ] && cmp -s "$tmp" "$path" && [ "$(stat -c %a "$path")" = "${mode#0}" ]; then
    rm -f "$tmp"
    own_unchanged "$path" "$sum"
    return 0
  fi
  own_before_change "$path" "$sum"
  keep_for_rollback "$path"
  land "$tmp" "$path"
  CHANGED+=("$path")
  echo "changed $path"
}

# unpack_bundle < BUNDLE
# The bundle on stdin holds files as
#   @@@ homelab-kubelet file PATH MODE
#   ...content lines...
#   @@@ homelab-kubelet end
# Data travels on stdin, never in the command line (no secret lands in `ps` or the journal).
unpack_bundle() {
  local line path="" mode="" content=""
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      "@@@ homelab-kubelet file "*)
        read -r path mode <<<"${line#@@@ homelab-kubelet file }"
        content=""
        ;;
      "@@@ homelab-kubelet end")
        [ -n "$path" ] || fail "malformed bundle: end without file"
        # Process substitution, not a pipe: install_file runs in this shell (CHANGED, TEMP_PATHS).
        install_file "$path" "$mode" < <(printf '%s' "$content")
        path=""
        ;;
      *)
        [ -n "$path" ] || fail "malformed bundle: data outside a file"
        content+="$line"$'\n'
        ;;
    esac
  done
  [ -z "$path" ] || fail "malformed bundle: $path has no end marker (stdin cut short?)"
}

cgroup_version() {
  case "$(stat -fc %T /sys/fs/cgroup)" in
    cgroup2fs) echo v2 ;;
    tmpfs) if [ -d /sys/fs/cgroup/unified ]; then echo hybrid; else echo v1; fi ;;
    *) echo unknown ;;
  esac
}

# json_string TEXT: TEXT as a JSON string, escaped strictly (RFC 8259): a hostname with quotes,
# backslashes or control characters cannot change or break the preflight facts.
json_string() {
  local text=$1 out="" char code i
  for ((i = 0; i < ${#text}; i++)); do
    char=${text:i:1}
    # shellcheck disable=SC1003  # the backslash branch: escaped as JSON wants it
    case "$char" in
      '"') out+='\"' ;;
      "\\") out+='\\' ;;
      *)
        printf -v code '%d' "'$char"
        if [ "$code" -ge 0 ] && [ "$code" -lt 32 ]; then
          printf -v char '\\u%04x' "$code"
        fi
        out+=$char
        ;;
    esac
  done
  printf '"%s"' "$out"
}

# write_state PATH VALUE: one line of the project's own bookkeeping, landed with a rename.
write_state() {
  local tmp
  ensure_dir "${1%/*}"
  keep_for_rollback "$1"
  tmp=$(new_temp "$1")
  TEMP_PATHS+=("$tmp")
  printf '%s\n' "$2" >"$tmp" || fail "cannot write $1 (df -h ${1%/*}; is its filesystem full?)"
  land "$tmp" "$1"
}

# --- what the project owns on the node --------------------------------------------------------
# One record per path a step writes, in $OWNED_DIR (the path with / as %): how the project came
# to own the path, and the sha256 of what it last wrote there.
#   created  SHA256  nothing was there; delete removes the file
#   replaced SHA256  another file was there; its copy is RECORD.orig, and delete puts it back
#   adopted  SHA256  the same content was there already (a node built by hand, a control plane's
#                    CA); delete leaves it
# Delete acts only while the file still holds what the project wrote: a file changed since then is
# left in place, and the step says so.

record_of() { printf '%s/%s' "$OWNED_DIR" "${1//\//%}"; }

record_how() {
  local record how=""
  record=$(record_of "$1")
  [ ! -f "$record" ] || read -r how _ <"$record"
  echo "$how"
}

# own_unchanged PATH SHA256: PATH already holds what the step writes.
own_unchanged() {
  [ -z "$(record_how "$1")" ] || return 0
  # An update without a record: an earlier homelab-kubelet, which kept no records, wrote it.
  if [ "$MODE" = update ]; then
    write_state "$(record_of "$1")" "created $2"
  else
    write_state "$(record_of "$1")" "adopted $2"
  fi
}

# own_before_change PATH SHA256: the step is about to replace PATH with content of SHA256.
own_before_change() {
  local path=$1 how record
  how=$(record_how "$path")
  record=$(record_of "$path")
  case "$how" in
    created | replaced) ;;
    *)
      if [ ! -e "$path" ] || { [ -z "$how" ] && [ "$MODE" = update ]; }; then
        how=created
      else
        # Another file (or one the project only adopted): keep it to put back on delete.
        guard_foreign_file "$path"
        ensure_dir "$OWNED_DIR"
        keep_for_rollback "$record.orig"
        { cp -p "$path" "$record.orig" && sync "$record.orig"; } ||
          fail "cannot keep a copy of $path (df -h $OWNED_DIR; is it full?)"
        how=replaced
      fi
      ;;
  esac
  write_state "$record" "$how $2"
}

# Paths the project must not take over from someone else (set per step; see write-credentials.sh).
# guard_foreign_file PATH: fail with GUARDED_REASON (which may name $path) for a guarded PATH.
GUARDED_PATHS=()
GUARDED_REASON=""
guard_foreign_file() {
  local guarded
  for guarded in "${GUARDED_PATHS[@]}"; do
    [ "$guarded" != "$1" ] || fail "$1: $GUARDED_REASON"
  done
}

# give_back PATH...: undo the step's writes of PATH (delete; see the records above).
give_back() {
  local path record how sum current
  for path in "$@"; do
    record=$(record_of "$path")
    if [ ! -f "$record" ]; then
      # Written by an earlier homelab-kubelet, which kept no records: remove it, as that version did.
      [ ! -e "$path" ] || remove_unless_used "$path"
      continue
    fi
    read -r how sum <"$record"
    if [ -e "$path" ]; then
      current=$(sha256sum <"$path") || fail "cannot read $path"
      if [ "${current%% *}" != "$sum" ]; then
        log "left $path in place: it changed since homelab-kubelet wrote it"
        [ "$how" != replaced ] || log "the file it replaced is kept at $record.orig"
        echo "left $path: changed since homelab-kubelet wrote it"
        rm -f "$record"
        continue
      fi
    fi
    case "$how" in
      created) [ ! -e "$path" ] || remove_unless_used "$path" ;;
      replaced)
        mv -f "$record.orig" "$path" || fail "cannot put back $path from $record.orig"
        echo "restored $path"
        ;;
      *) echo "left $path: it was there before homelab-kubelet" ;;
    esac
    rm -f "$record"
  done
}

# Where another program may name a file the project wrote (a control plane's units and manifests);
# rendered for the steps that check it.
[ -v USER_DIRS ] || USER_DIRS=()
remove_unless_used() {
  local dir file files=() users=""
  for dir in "${USER_DIRS[@]}"; do
    for file in "$dir"/*; do
      # The kubelet's own unit names its files; it is not another user.
      [ ! -f "$file" ] || [ "${file##*/}" = kubelet.service ] || files+=("$file")
    done
  done
  [ "${#files[@]}" -eq 0 ] || users=$(grep -lF -- "$1" "${files[@]}" || true)
  if [ -n "$users" ]; then
    log "left $1 in place: ${users//$'\n'/, } use(s) it"
    echo "left $1: in use by ${users//$'\n'/ }"
    return 0
  fi
  rm -f "$1" || fail "cannot remove $1"
  echo "removed $1"
}

# --- holders of a step ------------------------------------------------------------------------
# Holders of a step on this node ($HOLDERS_DIR/$STEP): one per Pulumi resource whose create ran
# here (hold.sh). Pulumi replaces a step by creating the new resource and then deleting the old
# one with the old inputs; the count lets that old delete see that a newer create holds the step.
holder_count() {
  local count=0
  [ ! -f "$HOLDERS_DIR/$STEP" ] || count=$(<"$HOLDERS_DIR/$STEP")
  [[ "$count" =~ ^[0-9]+$ ]] || count=0
  echo "$count"
}

# hold_step create|update: a create adds a holder, an update keeps the one it is.
hold_step() {
  local count
  count=$(holder_count)
  case "$1" in
    create) count=$((count + 1)) ;;
    update) [ "$count" -ge 1 ] || count=1 ;;
    *) fail "hold_step: unknown mode '$1'" ;;
  esac
  write_state "$HOLDERS_DIR/$STEP" "$count"
}

# release_step: drop this resource's hold; succeeds only when it was the last holder.
release_step() {
  local count
  count=$(holder_count)
  if [ "$count" -gt 1 ]; then
    write_state "$HOLDERS_DIR/$STEP" $((count - 1))
    return 1
  fi
  rm -f "$HOLDERS_DIR/$STEP" || fail "cannot remove $HOLDERS_DIR/$STEP"
}
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
# Delete. When Pulumi replaces this step it runs the new create first and this old delete last,
# with the old inputs: undo the step only if no newer create holds it (lib.sh, holders).
if ! release_step; then
  log "$STEP: left in place; a newer $STEP holds this node (the step was replaced)"
  echo "kept: held by a newer $STEP"
  STEP_DONE=true
  exit 0
fi
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
# The last delete on a node also removes the project's state directory: once no step holds the
# node and no record is left, only the lock and empty directories remain.
rmdir "$HOLDERS_DIR" "$OWNED_DIR" 2>/dev/null || true
if [ ! -e "$HOLDERS_DIR" ] && [ ! -e "$OWNED_DIR" ]; then
  case "$(ls -A "$STATE_DIR" 2>/dev/null)" in
    "" | "${LOCK_FILE##*/}")
      rm -f "$LOCK_FILE"
      rmdir "$STATE_DIR" 2>/dev/null || true
      ;;
  esac
fi
# The run reached its end: a success (lib.sh, run_exit_hooks).
STEP_DONE=true
