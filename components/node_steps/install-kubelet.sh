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
