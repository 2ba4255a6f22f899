"""The runbook's steps as one plain script per node: the yardstick for issue 7, section 1.

The runbook (../shared/reference/kubelet-runbook.txt) downloads the kubelet, copies the CA, the
node's certificate, key and kubeconfig, writes kubelet-config.yaml and kubelet.service with
`cat | tee`, then `systemctl enable` and `start`. Its own files do not start a kubelet on the
lab (README: "Measured behaviour of the real kubelet"), so this script writes the files this
project renders for the node — the same work as `pulumi up` does, minus preflight, the
sha256 check, the atomic writes and the health check. It ends where the runbook ends, at
`systemctl start`; `wait_healthy=True` appends a loop until `/healthz` answers `ok`, which is
what a careful operator would do next by hand.
"""

from __future__ import annotations

import base64

import yaml

from components import paths, shell
from components.node_scripts import configure_files, credential_paths
from components.settings import NodeSettings, Settings

END = "RUNBOOK_FILE_END"


def credentials_from_kubeconfig(kubeconfig: str) -> tuple[str, str]:
    """The node's certificate and key PEMs, from the kubeconfig the program exports."""
    user = yaml.safe_load(kubeconfig)["users"][0]["user"]
    return (
        base64.b64decode(user["client-certificate-data"]).decode(),
        base64.b64decode(user["client-key-data"]).decode(),
    )


def _write(path: str, mode: str, content: str) -> str:
    if END in content:
        raise ValueError(f"{path}: content holds the here-document terminator")
    quoted = shell.quote(path)
    return f"mkdir -p \"$(dirname {quoted})\"\ncat > {quoted} <<'{END}'\n{content}{END}\nchmod {mode} {quoted}\n"


def plain_script(
    settings: Settings, node: NodeSettings, *, ca_pem: str, kubeconfig: str, wait_healthy: bool = False
) -> str:
    cert_pem, key_pem = credentials_from_kubeconfig(kubeconfig)
    ca_path, cert_path, key_path, kubeconfig_path = credential_paths(node)
    url = (
        f"{settings.kubernetes.download_base_url}/{settings.kubernetes.version}"
        f"/bin/linux/{node.arch}/kubelet"
    )
    parts = [
        "set -e",
        f"# the runbook's steps for {node.name}, as one plain script",
        f"curl -fsSL -o {paths.KUBELET_BINARY} {shell.quote(url)}",
        f"chmod +x {paths.KUBELET_BINARY}",
        f"install -o root -g root -m 755 -d {settings.kubelet.static_pod_path} "
        f"{paths.KUBELET_DIR} {ca_path.rsplit('/', 1)[0]}",
        _write(ca_path, "0644", ca_pem),
        _write(cert_path, "0644", cert_pem),
        _write(key_path, "0600", key_pem),
        _write(kubeconfig_path, "0600", kubeconfig),
        *(_write(file.path, file.mode, file.content) for file in configure_files(settings, node)),
        # What configure-and-start does for containerd (runc's SystemdCgroup, kube.slice).
        "containerd config default | sed -E 's/^(\\s*SystemdCgroup\\s*=\\s*)false/\\1true/' "
        f"> {paths.CONTAINERD_CONFIG}",
        "systemctl daemon-reload",
        "systemctl restart containerd.service",
        "until [ -S /run/containerd/containerd.sock ]; do sleep 0.2; done",
        "systemctl enable kubelet.service",
        "systemctl start kubelet.service",
    ]
    if wait_healthy:
        parts.append(
            f"until [ \"$(curl -fsS http://127.0.0.1:{settings.kubelet.healthz_port}/healthz 2>/dev/null)\" = ok ]; "
            "do sleep 1; done"
        )
    return "\n".join(parts) + "\n"
