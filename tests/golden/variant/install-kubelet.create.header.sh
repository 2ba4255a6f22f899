set -euo pipefail
# homelab-kubelet: install kubelet on node k8s-node1
NODE_NAME=k8s-node1
STEP=install-kubelet
STATE_DIR=/var/lib/homelab-kubelet
HOLDERS_DIR=/var/lib/homelab-kubelet/holders
OWNED_DIR=/var/lib/homelab-kubelet/owned
LOCK_FILE=/var/lib/homelab-kubelet/lock
LOCK_WAIT_SECONDS=600
DOWNLOAD_BASE_URL=https://dl.k8s.io
KUBELET_VERSION=v1.30.1
ARCH=arm64
PINNED_SHA256=''
KUBELET_BINARY=/usr/bin/kubelet
# shellcheck disable=SC2034  # some steps use only part of lib.sh
