"""homelab-kubelet: stack config -> cluster CA -> one KubeletNode per node -> outputs."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi

from components import rollout
from components.expiry import expiry_warnings
from components.hints import catalogue_hints
from components.kubelet_node import KubeletNode
from components.pki import ClusterPki, NodeCertificate
from components.settings import (
    OBJECT_KEYS,
    SECRET_KEYS,
    NodeSettings,
    Settings,
    SettingsError,
    parse_settings,
    resolve_host_keys,
)


def configured_keys() -> set[str]:
    """Every key of the stack's configuration, as the SDK holds it (set by the engine or mocks)."""
    return set(pulumi.runtime.config.CONFIG.get()) | set(pulumi.runtime.config.get_config_env())


def load_settings(config: pulumi.Config) -> tuple[Settings, dict[str, pulumi.Output[str]]]:
    secrets = {key: value for key in SECRET_KEYS if (value := config.get_secret(key)) is not None}
    raw = {key: config.get_object(key) for key in OBJECT_KEYS}
    try:
        # Each node's SSH host key: nodes[].hostKey, else ssh.knownHostsFile (~/.ssh/known_hosts).
        settings, warnings = resolve_host_keys(parse_settings(raw, frozenset(secrets), configured_keys()))
    except SettingsError as error:
        # RunError reports the message alone, before any resource is registered.
        raise pulumi.RunError(str(error)) from None
    for warning in warnings:
        pulumi.log.warn(warning)
    return settings, secrets


def ssh_private_key(settings: Settings, secrets: dict[str, pulumi.Output[str]]) -> pulumi.Output[str] | None:
    if settings.ssh_private_key_from_secret:
        return secrets["sshPrivateKey"]
    if settings.ssh.private_key_file is not None:
        path = Path(settings.ssh.private_key_file).expanduser()
        if not path.is_file():
            raise pulumi.RunError(f"ssh.privateKeyFile: {str(path)!r} does not exist")
        return pulumi.Output.secret(path.read_text())
    return None  # ssh.agent: the command provider uses SSH_AUTH_SOCK


def warn_of_expiring_certificates(settings: Settings) -> None:
    """A warning per node certificate inside its renewal window, from the notAfter the previous
    deployment put in this stack's `nodes` output (the preview cannot see the new certificate)."""
    previous = pulumi.StackReference(f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}")
    now = datetime.datetime.now(datetime.UTC)
    names = tuple(node.name for node in settings.nodes)

    def warn(nodes: Any) -> None:
        for warning in expiry_warnings(nodes if isinstance(nodes, dict) else None, names,
                                       settings.pki.early_renewal_hours, now):
            pulumi.log.warn(warning)

    previous.get_output("nodes").apply(warn)


settings, secrets = load_settings(pulumi.Config())
warn_of_expiring_certificates(settings)

imported_ca = (secrets["caCertPem"], secrets["caKeyPem"]) if settings.pki.import_ca else None
pki = ClusterPki("cluster", settings.pki, imported_ca)
private_key = ssh_private_key(settings, secrets)
hints = catalogue_hints()


def certificate_issuer(node: NodeSettings) -> Callable[[pulumi.Output[str]], NodeCertificate]:
    """Issues the node's certificate for the address its kubelet registers."""
    return lambda address: NodeCertificate(
        node.name, node, settings.pki, pki, settings.kubernetes.api_server, address
    )


summaries = {}
kubeconfigs = {}
kubelets: list[KubeletNode] = []
# rollout.maxParallel: node i's writing steps wait for node waits_for[i]'s health-checked start.
waits_for = rollout.predecessors(len(settings.nodes), settings.rollout.max_parallel)
for node, before in zip(settings.nodes, waits_for, strict=True):
    kubelet = KubeletNode(
        node.name, settings, node, certificate_issuer(node), pki.ca_cert_pem, private_key, hints,
        after=[] if before is None else [kubelets[before].configure],
    )
    kubelets.append(kubelet)
    summaries[node.name] = kubelet.summary
    kubeconfigs[node.name] = kubelet.certificate.kubeconfig

pulumi.export("caCertificate", pki.ca_cert_pem)
pulumi.export("kubeconfigs", pulumi.Output.secret(kubeconfigs))
pulumi.export("nodes", summaries)
