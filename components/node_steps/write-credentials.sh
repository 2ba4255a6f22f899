# Write CA, node certificate and key (0600) and kubeconfig (0600) from the bundle on stdin.
# On a node that also runs a control plane (Kubernetes the Hard Way), the CA file is the API
# server's own --client-ca-file: the same CA is adopted and kept, another one is refused.
# shellcheck disable=SC2034  # read by lib.sh
GUARDED_PATHS=("$CA_CERT")
# shellcheck disable=SC2034
GUARDED_REASON="refusing to replace it: it holds another CA than the stack's, and homelab-kubelet did not write it (on a control-plane node it is the API server's client CA). Import that CA into the stack (pki.importCa: true with the secrets caCertPem and caKeyPem) or move the file away"
ensure_dir "${CA_CERT%/*}" "$KUBELET_DIR"
unpack_bundle
