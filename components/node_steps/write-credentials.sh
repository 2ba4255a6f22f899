# Write CA, node certificate and key (0600) and kubeconfig (0600) from the bundle on stdin.
install -d -m 0755 "$(dirname "$CA_CERT")" "$KUBELET_DIR"
unpack_bundle
