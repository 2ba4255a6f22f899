set -euo pipefail
# homelab-kubelet: credentials on node k8s-node1
NODE_NAME=k8s-node1
STEP=credentials
STATE_DIR=/var/lib/homelab-kubelet
HOLDERS_DIR=/var/lib/homelab-kubelet/holders
OWNED_DIR=/var/lib/homelab-kubelet/owned
LOCK_FILE=/var/lib/homelab-kubelet/lock
LOCK_WAIT_SECONDS=600
CA_CERT=/var/lib/kubernetes/ca.pem
KUBELET_DIR=/var/lib/kubelet
# shellcheck disable=SC2034  # some steps use only part of lib.sh
