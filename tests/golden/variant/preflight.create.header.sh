set -euo pipefail
# homelab-kubelet: preflight on node k8s-node1
NODE_NAME=k8s-node1
STEP=preflight
STATE_DIR=/var/lib/homelab-kubelet
HOLDERS_DIR=/var/lib/homelab-kubelet/holders
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
KUBE_SLICE=kube.slice
KUBE_RESERVED_MEMORY_BYTES=805306368
ENFORCE_KUBE_RESERVED=true
SYSTEM_RESERVED_PIDS=0
KUBE_RESERVED_PIDS=0
PID_HEADROOM=100
KUBELET_BINARY=/usr/bin/kubelet
MIN_FREE_KB=204800
# shellcheck disable=SC2034  # some steps use only part of lib.sh
