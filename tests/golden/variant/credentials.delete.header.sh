set -euo pipefail
# homelab-kubelet: undo credentials on node k8s-node1
NODE_NAME=k8s-node1
STEP=credentials
STATE_DIR=/var/lib/homelab-kubelet
HOLDERS_DIR=/var/lib/homelab-kubelet/holders
OWNED_DIR=/var/lib/homelab-kubelet/owned
LOCK_FILE=/var/lib/homelab-kubelet/lock
LOCK_WAIT_SECONDS=600
FILES=(/var/lib/kubernetes/ca.pem /var/lib/kubelet/k8s-node1.pem /var/lib/kubelet/k8s-node1-key.pem /var/lib/kubelet/kubeconfig)
USER_DIRS=(/etc/systemd/system /etc/kubernetes/manifests)
# shellcheck disable=SC2034  # some steps use only part of lib.sh
