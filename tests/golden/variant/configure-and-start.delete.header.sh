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
