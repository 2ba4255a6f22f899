set -euo pipefail
# homelab-kubelet: install kubelet on node k8s-node1
NODE_NAME=k8s-node1
STEP=install-kubelet
STATE_DIR=/var/lib/homelab-kubelet
HOLDERS_DIR=/var/lib/homelab-kubelet/holders
DOWNLOAD_BASE_URL=https://dl.k8s.io
KUBELET_VERSION=v1.30.1
ARCH=arm64
PINNED_SHA256=''
KUBELET_BINARY=/usr/bin/kubelet
# shellcheck disable=SC2034  # some steps use only part of lib.sh
# Shared functions of every node script. Rendered scripts start with `set -euo pipefail` and
# the step's variables (NODE_NAME, ...), then this file, then the step itself.

log() { printf '[%s] %s\n' "$NODE_NAME" "$*" >&2; }

fail() {
  printf 'ERROR [%s]: %s\n' "$NODE_NAME" "$*" >&2
  exit 1
}

# install_file PATH MODE < CONTENT
# Writes atomically (temp file in the same directory + rename), so an interrupted run never
# leaves a half-written file. Prints "changed PATH" only when content or mode differ.
install_file() {
  local path=$1 mode=$2 dir tmp
  # Parameter expansion, not dirname/basename: every process costs on a slow node.
  dir=${path%/*}
  dir=${dir:-/}
  [ -d "$dir" ] || install -d -m 0755 "$dir"
  tmp=$(mktemp "$dir/.${path##*/}.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path" && [ "$(stat -c %a "$path")" = "${mode#0}" ]; then
    rm -f "$tmp"
    return 0
  fi
  local saved="${ROLLBACK_DIR:-}/${path//\//%}"
  if [ -n "${ROLLBACK_DIR:-}" ] && [ ! -e "$saved" ]; then
    # Keep what the first change of this path replaces, for rollback.sh (set only by the steps
    # that roll back). A new file is noted as "-": rolling back removes it.
    if [ -e "$path" ]; then
      cp -p "$path" "$saved"
      printf '%s\t%s\n' "${saved##*/}" "$path" >>"$ROLLBACK_DIR/manifest"
    else
      : >"$saved"
      printf '%s\t%s\n' - "$path" >>"$ROLLBACK_DIR/manifest"
    fi
  fi
  mv -f "$tmp" "$path"
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
        printf '%s' "$content" | install_file "$path" "$mode"
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

# write_state PATH VALUE: one line of the project's own bookkeeping, landed with a rename.
write_state() {
  local tmp
  [ -d "${1%/*}" ] || install -d -m 0755 "${1%/*}"
  tmp=$(mktemp "$1.XXXXXX")
  printf '%s\n' "$2" >"$tmp"
  mv -f "$tmp" "$1"
}

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
  rm -f "$HOLDERS_DIR/$STEP"
  # The last step deleted on a node also removes the project's state directory.
  rmdir --ignore-fail-on-non-empty "$HOLDERS_DIR" "$STATE_DIR" 2>/dev/null || true
}
# Install the kubelet: download it only when the installed binary does not match the
# pinned (kubernetes.kubeletSha256) or else the published sha256, verify before it replaces
# anything, and swap it in with a rename.

url="$DOWNLOAD_BASE_URL/$KUBELET_VERSION/bin/linux/$ARCH/kubelet"
if [ -n "$PINNED_SHA256" ]; then
  expected=$PINNED_SHA256
else
  expected=$(curl -fsSL --retry 3 "$url.sha256") || fail "cannot fetch $url.sha256 (is kubernetes.downloadBaseUrl right and reachable from the node?)"
  expected=${expected%% *}
  [[ "$expected" =~ ^[0-9a-f]{64}$ ]] || fail "$url.sha256 does not hold a sha256 digest"
fi

# No early `exit`: hold.sh follows this body (a create must count itself even when it downloads nothing).
if [ -x "$KUBELET_BINARY" ] && [ "$(sha256sum "$KUBELET_BINARY" | cut -d' ' -f1)" = "$expected" ]; then
  log "kubelet $KUBELET_VERSION ($ARCH) already installed; sha256 matches, nothing downloaded"
else
  tmp=$(mktemp "$(dirname "$KUBELET_BINARY")/.kubelet.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  curl -fsSL --retry 3 -o "$tmp" "$url" || fail "download of $url failed"
  actual=$(sha256sum "$tmp" | cut -d' ' -f1)
  [ "$actual" = "$expected" ] || fail "sha256 mismatch for $url: expected $expected, got $actual; nothing was installed"
  chmod 0755 "$tmp"
  mv -f "$tmp" "$KUBELET_BINARY"
  trap - EXIT
  log "installed kubelet $KUBELET_VERSION ($ARCH) from $url, sha256 $expected"
  echo "changed $KUBELET_BINARY"
fi
# The create or update ($1) succeeded: this resource holds the step on the node (see release.sh).
hold_step "${1:-create}"
