"""Render the kubelet's kubeconfig: CA, client certificate and key embedded, as KTHW does."""

from __future__ import annotations

import base64

from components.yaml_text import dump_yaml


def _b64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


def render_kubeconfig(
    *,
    cluster_name: str,
    server: str,
    ca_cert_pem: str,
    client_cert_pem: str,
    client_key_pem: str,
    user: str,
) -> str:
    """A kubeconfig with one cluster, one user and one current context, all data embedded."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {
                    "certificate-authority-data": _b64(ca_cert_pem),
                    "server": server,
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client_cert_pem),
                    "client-key-data": _b64(client_key_pem),
                },
            }
        ],
        "contexts": [{"name": "default", "context": {"cluster": cluster_name, "user": user}}],
        "current-context": "default",
        "preferences": {},
    }
    return dump_yaml(config)
