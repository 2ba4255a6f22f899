# After start-kubelet.sh: has the node registered with the API server? Asked with the node's own
# certificate (the identity the kubelet registers with, which the Node authorizer lets read its
# own Node): GET /api/v1/nodes/<name>. Only ever a report, never a failure: a lab without a
# control plane, or a homelab whose API server is down, still converges, and the kubelet keeps
# trying to register on its own. Every command here is guarded: this part must not end the run.

# Prints curl's error line (if any) and, last, "HTTP <code>" (000 when nothing answered).
registration_answer() {
  curl -sS --connect-timeout 5 --max-time 10 --cacert "$CA_CERT" --cert "$NODE_CERT" --key "$NODE_KEY" \
    -o /dev/null -w '\nHTTP %{http_code}\n' "$API_SERVER/api/v1/nodes/$NODE_NAME" 2>&1 || true
}
registration_warning() { printf 'WARNING [%s]: %s\n' "$NODE_NAME" "$*" >&2 || true; }

registration_waited=0
while :; do
  answer=$(registration_answer)
  code=$(sed -n 's/^HTTP \([0-9][0-9][0-9]\)$/\1/p' <<<"$answer" | tail -n 1)
  # A kubelet registers within seconds of its start; give a fresh one a little longer.
  if [ "$code" != 404 ] || [ "$registration_waited" -ge "$REGISTRATION_WAIT" ]; then
    break
  fi
  sleep 2
  registration_waited=$((registration_waited + 2))
done
curl_error=$(grep -m1 '^curl: (' <<<"$answer" || true)
case "${code:-000}" in
  200) log "registered: the API server $API_SERVER has node $NODE_NAME" ;;
  404) registration_warning "node $NODE_NAME is not registered with the API server $API_SERVER" \
    "(not found after ${registration_waited}s); the kubelet keeps trying: see journalctl -u kubelet" ;;
  401) registration_warning "the API server $API_SERVER refuses the node's certificate (401 Unauthorized):" \
    "its --client-ca-file must hold the stack's CA (import the cluster's CA: pki.importCa)" ;;
  403) registration_warning "the API server $API_SERVER forbids node $NODE_NAME to read its own Node (403):" \
    "run it with --authorization-mode=Node,RBAC" ;;
  000)
    case "$curl_error" in
      "curl: (60)"*) registration_warning "the API server $API_SERVER has a certificate that the stack's CA" \
        "did not sign, so the kubelet does not trust it either (x509: certificate signed by unknown" \
        "authority): import the cluster's CA (pki.importCa) ($curl_error)" ;;
      *) registration_warning "node $NODE_NAME is not registered: no API server answers at $API_SERVER" \
        "(${curl_error:-no answer}); the kubelet registers once one does" ;;
    esac
    ;;
  *) registration_warning "the API server $API_SERVER answered HTTP $code for node $NODE_NAME" ;;
esac
