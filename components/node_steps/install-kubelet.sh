# Install the kubelet: download it only when the installed binary does not match the
# pinned (kubernetes.kubeletSha256) or else the published sha256, verify before it replaces
# anything, and swap it in with a rename. A binary that was there before is kept (lib.sh,
# records): adopted when it matches, copied when replaced.

url="$DOWNLOAD_BASE_URL/$KUBELET_VERSION/bin/linux/$ARCH/kubelet"
if [ -n "$PINNED_SHA256" ]; then
  expected=$PINNED_SHA256
else
  expected=$(curl -fsSL --retry 3 "$url.sha256") || fail "cannot fetch $url.sha256 (is kubernetes.downloadBaseUrl right and reachable from the node?)"
  expected=${expected%% *}
  [[ "$expected" =~ ^[0-9a-f]{64}$ ]] || fail "$url.sha256 does not hold a sha256 digest"
fi

# No early `exit`: hold.sh follows this body (a create must count itself even when it downloads nothing).
installed=""
[ ! -x "$KUBELET_BINARY" ] || installed=$(sha256sum <"$KUBELET_BINARY") || fail "cannot read $KUBELET_BINARY"
if [ "${installed%% *}" = "$expected" ]; then
  own_unchanged "$KUBELET_BINARY" "$expected"
  log "kubelet $KUBELET_VERSION ($ARCH) already installed; sha256 matches, nothing downloaded"
else
  tmp=$(new_temp "$KUBELET_BINARY")
  TEMP_PATHS+=("$tmp")
  curl -fsSL --retry 3 -o "$tmp" "$url" || fail "download of $url failed (df -h ${KUBELET_BINARY%/*} if it says 'Failure writing')"
  actual=$(sha256sum <"$tmp") || fail "cannot read back $tmp"
  actual=${actual%% *}
  [ "$actual" = "$expected" ] || fail "sha256 mismatch for $url: expected $expected, got $actual; nothing was installed"
  chmod 0755 "$tmp" || fail "cannot chmod $tmp"
  own_before_change "$KUBELET_BINARY" "$expected"
  land "$tmp" "$KUBELET_BINARY"
  log "installed kubelet $KUBELET_VERSION ($ARCH) from $url, sha256 $expected"
  echo "changed $KUBELET_BINARY"
fi
