set -euo pipefail
# homelab-kubelet: preflight on node k8s-node1
NODE_NAME=k8s-node1
STEP=preflight
STATE_DIR=/var/lib/homelab-kubelet
HOLDERS_DIR=/var/lib/homelab-kubelet/holders
OWNED_DIR=/var/lib/homelab-kubelet/owned
EXPECTED_ARCH=arm64
RUNTIME_SOCKET=/run/containerd/containerd.sock
CONTAINERD_CONFIG=/etc/containerd/config.toml
MANAGE_CONTAINERD_CGROUP_DRIVER=true
FAIL_SWAP_ON=true
HOSTNAME_CHECK=warn
RESOLV_CONF=/run/systemd/resolve/resolv.conf
RESERVED_MILLICORES=768
RESERVED_MEMORY_BYTES=1178599424
EVICTION_BASIS_POINTS=0
SYSTEM_SLICE=system.slice
SYSTEM_RESERVED_MEMORY_BYTES=268435456
ENFORCE_SYSTEM_RESERVED=true
KUBELET_BINARY=/usr/bin/kubelet
WRITE_DIRS=(/var/lib/homelab-kubelet /usr/bin /var/lib/kubernetes /var/lib/kubelet /etc/systemd/system /usr/local/libexec/homelab-kubelet /etc/containerd /etc/kubelet.d)
WRITE_KB=(1024 204800 1024 1024 1024 1024 1024 1024)
# shellcheck disable=SC2034  # some steps use only part of lib.sh
