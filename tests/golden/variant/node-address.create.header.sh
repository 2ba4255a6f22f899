set -euo pipefail
# homelab-kubelet: node address on node k8s-node1
NODE_NAME=k8s-node1
STEP=node-address
HOLDERS_DIR=/var/lib/homelab-kubelet/holders
OWNED_DIR=/var/lib/homelab-kubelet/owned
NODE_IP=192.168.1.11
ROUTE_FILE=/proc/net/route
IPV6_ROUTE_FILE=/proc/net/ipv6_route
# shellcheck disable=SC2034  # some steps use only part of lib.sh
