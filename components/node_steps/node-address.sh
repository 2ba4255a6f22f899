# Node address: the node's addresses, and the one the kubelet registers as its InternalIP, as JSON
# on stdout; the node certificate carries that address (its serving certificate then verifies
# for clients that dial the kubelet by IP). Writes nothing.
#
# With nodes[].nodeIP (NODE_IP) the kubelet gets --node-ip and the address must be on one of the
# node's interfaces, or the kubelet fails ("failed to validate nodeIP"). Without it the kubelet
# v1.30 picks one itself (pkg/kubelet/nodestatus/setters.go NodeAddress, validateNodeIP in
# kubelet_node_status.go, ChooseHostInterface in k8s.io/apimachinery/pkg/util/net), and this step
# follows the same rule:
#   1. the node name (--hostname-override) when it is an IP;
#   2. else what the node name resolves to (getaddrinfo: /etc/hosts, DNS, as nsswitch.conf says):
#      the first IPv4 address (else the first IPv6 one) that is not loopback, multicast,
#      link-local or unspecified and is on an interface of the node;
#   3. else the interface of the first IPv4 default route (/proc/net/route), if it is up: its first
#      global address; then IPv6 default routes (/proc/net/ipv6_route, with a gateway) the same
#      way; a route whose interface has none gives a global address of the loopback interface.

errors=()
warnings=()

# The kubelet refuses loopback, multicast, link-local unicast and unspecified addresses
# (validateNodeIP); a route's interface address must be global unicast (IsGlobalUnicast), which
# excludes the same and 255.255.255.255. Prints v4 or v6 for an address it could use, else nothing.
usable_family() {
  local address=$1 a b rest first
  if [[ "$address" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)$ ]]; then
    a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
    [ "$a" -ne 127 ] && [ "$address" != 0.0.0.0 ] && [ "$address" != 255.255.255.255 ] || return 0
    [ "$a" -lt 224 ] || [ "$a" -gt 239 ] || return 0
    [ "$a" -ne 169 ] || [ "$b" -ne 254 ] || return 0
    echo v4
  elif [[ "$address" == *:* ]]; then
    rest=${address,,}
    case "$rest" in :: | ::1) return 0 ;; esac
    first=${rest%%:*}
    [ -n "$first" ] || first=0
    [[ "$first" =~ ^[0-9a-f]{1,4}$ ]] || return 0
    (((0x$first & 0xff00) != 0xff00 && (0x$first & 0xffc0) != 0xfe80)) || return 0
    echo v6
  fi
}

# Every address on the node's interfaces, "INTERFACE ADDRESS" per line, in the kernel's order.
interface_addresses() {
  ip -o addr show 2>/dev/null | awk '$3 == "inet" || $3 == "inet6" { sub(/\/.*/, "", $4); print $2, $4 }'
}

# The first global address of FAMILY (v4, v6) on INTERFACE if it is up, else nothing.
interface_address() {
  local interface=$1 family=$2 name address
  ip -o link show dev "$interface" 2>/dev/null | grep -Eq '<([^>]*,)?UP[,>]' || return 0
  while read -r name address; do
    [ "$name" = "$interface" ] || continue
    if [ "$(usable_family "$address")" = "$family" ]; then
      echo "$address"
      return 0
    fi
  done <<<"$local_addresses"
}

# The interfaces of the default routes of FAMILY, in the order of the route file.
default_route_interfaces() {
  if [ "$1" = v4 ]; then
    # Iface Destination Gateway ...: the destination 00000000 is a default route.
    [ ! -r "$ROUTE_FILE" ] || awk 'NR > 1 && $2 == "00000000" { print $1 }' "$ROUTE_FILE"
  else
    # destination/prefix source/prefix gateway metric refcnt use flags iface: a default route
    # has the all-zero destination and, unlike the loopback's, a gateway.
    [ ! -r "$IPV6_ROUTE_FILE" ] ||
      awk -v zero=00000000000000000000000000000000 '$1 == zero && $5 != zero { print $10 }' "$IPV6_ROUTE_FILE"
  fi
}

local_addresses=$(interface_addresses)
addresses=()
declare -A on_node=()
while read -r interface address; do
  [ -n "$address" ] || continue
  on_node[$address]=$interface
  [ -z "$(usable_family "$address")" ] || addresses+=("$address")
done <<<"$local_addresses"
[ -n "$local_addresses" ] || warnings+=("cannot list the node's addresses (ip -o addr show gave nothing; is iproute2 installed?)")

primary=""
source=""
if [ -n "$NODE_IP" ]; then
  primary=$NODE_IP
  source="nodes[].nodeIP"
  [ -n "${on_node[$NODE_IP]:-}" ] ||
    errors+=("nodeIP $NODE_IP is not an address of this node (it has: ${addresses[*]:-none}); the kubelet would fail with \"failed to validate nodeIP\": fix nodes[].nodeIP")
elif [[ "$NODE_NAME" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  # Taken as it is, unchecked (a node name is a DNS name, so never an IPv6 address).
  primary=$NODE_NAME
  source="the node name"
else
  resolved=$(getent ahosts "$NODE_NAME" 2>/dev/null | awk '!seen[$1]++ { print $1 }' || true)
  fallback=""
  while read -r address; do
    if [ -z "$address" ] || [ -z "${on_node[$address]:-}" ]; then continue; fi
    family=$(usable_family "$address")
    if [ "$family" = v4 ]; then
      primary=$address
      break
    elif [ "$family" = v6 ] && [ -z "$fallback" ]; then
      fallback=$address
    fi
  done <<<"$resolved"
  primary=${primary:-$fallback}
  [ -z "$primary" ] || source="what $NODE_NAME resolves to"
  for family in v4 v6; do
    [ -z "$primary" ] || break
    while read -r interface; do
      [ -n "$interface" ] || continue
      primary=$(interface_address "$interface" "$family")
      [ -z "$primary" ] || { source="the default route ($interface)"; break; }
      primary=$(interface_address lo "$family")
      [ -z "$primary" ] || { source="the loopback interface (default route via $interface)"; break; }
    done < <(default_route_interfaces "$family")
  done
  [ -n "$primary" ] ||
    warnings+=("cannot tell which address the kubelet registers: $NODE_NAME resolves to no address of this node and there is no default route with an address; the node certificate carries only nodes[].ips: set nodes[].nodeIP")
fi

for message in "${warnings[@]}"; do log "warning: $message"; done
if [ "${#errors[@]}" -gt 0 ]; then
  for message in "${errors[@]}"; do printf 'ERROR [%s] node-address: %s\n' "$NODE_NAME" "$message" >&2; done
  exit 1
fi
log "the kubelet registers ${primary:-an address this step cannot tell} (from ${source:-nothing})"

json_list() {
  local item out=""
  for item in "$@"; do out+="${out:+,}$(json_string "$item")"; done
  printf '[%s]' "$out"
}
printf '{"node":%s,"addresses":%s,"primaryAddress":%s,"primaryAddressSource":%s,"warnings":%s}\n' \
  "$(json_string "$NODE_NAME")" "$(json_list "${addresses[@]}")" "$(json_string "$primary")" \
  "$(json_string "$source")" "$(json_list "${warnings[@]}")"
