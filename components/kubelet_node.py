"""KubeletNode: the remote steps that turn one machine into a kubelet host.

Four idempotent scripts over SSH, in order:
  preflight -> install-kubelet, credentials (in parallel) -> configure-and-start.
Every step has `update` = `create`, so a change reruns the script in place and never
replaces the resource (a replacement would run the old resource's delete after the new
create, removing what was just written). configure-and-start reruns, and so restarts the
kubelet, when its stdin (config and units) or its triggers (the binary's version, a hash of the
credentials) change: an unchanged node is never restarted, a changed one is, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
from pulumi_command import remote

from components import node_scripts
from components.allocatable import node_summary_from_facts
from components.node_scripts import Hint, StepScripts
from components.pki import NodeCertificate
from components.settings import NodeSettings, Settings

# Bounded SSH retries, so an unreachable node fails in about a minute instead of hanging.
DIAL_ERROR_LIMIT = 4
PER_DIAL_TIMEOUT = 15


def connection_args(
    node: NodeSettings, private_key: pulumi.Input[str] | None
) -> remote.ConnectionArgs:
    return remote.ConnectionArgs(
        host=node.address,
        port=node.port,
        user=node.user,
        private_key=private_key,
        host_key=node.host_key,
        dial_error_limit=DIAL_ERROR_LIMIT,
        per_dial_timeout=PER_DIAL_TIMEOUT,
    )


class KubeletNode(pulumi.ComponentResource):
    """One kubelet host: preflight, binary, credentials, configuration, service."""

    summary: pulumi.Output[dict[str, Any]]

    def __init__(
        self,
        name: str,
        settings: Settings,
        node: NodeSettings,
        certificate: NodeCertificate,
        ca_cert_pem: pulumi.Input[str],
        ssh_private_key: pulumi.Input[str] | None,
        hints: Sequence[Hint] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("homelab-kubelet:node:KubeletNode", name, None, opts)
        connection = connection_args(node, ssh_private_key)

        def step(
            step_name: str,
            scripts: StepScripts,
            depends_on: Sequence[pulumi.Resource],
            **extra: Any,
        ) -> remote.Command:
            return remote.Command(
                f"{name}-{step_name}",
                connection=connection,
                create=scripts.create,
                update=scripts.create,
                delete=scripts.delete,
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on),
                                            additional_secret_outputs=extra.pop("secret_outputs", None)),
                **extra,
            )

        preflight = step("preflight", node_scripts.preflight(settings, node), [])

        install = step(
            "install-kubelet",
            node_scripts.install_kubelet(settings, node),
            [preflight],
        )
        credentials_stdin: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(
                ca_cert_pem, certificate.cert_pem, certificate.private_key_pem, certificate.kubeconfig
            ).apply(
                lambda pems: node_scripts.credentials_bundle(
                    node, ca_cert_pem=pems[0], cert_pem=pems[1], key_pem=pems[2], kubeconfig=pems[3]
                )
            )
        )
        credentials = step(
            "credentials",
            node_scripts.write_credentials(node),
            [preflight],
            stdin=credentials_stdin,
            # The key travels on stdin only; nothing of it may reach the engine's log.
            logging=remote.Logging.NONE,
            secret_outputs=["stdin", "stdout", "stderr"],
        )
        credentials_hash = pulumi.Output.all(ca_cert_pem, certificate.cert_pem).apply(
            lambda pems: node_scripts.content_hash(*pems)
        )
        step(
            "configure-and-start",
            node_scripts.configure_and_start(settings, node, hints),
            [install, credentials],
            stdin=node_scripts.configure_bundle(settings, node),
            triggers=[
                f"kubelet={settings.kubernetes.version}/{node.arch}",
                credentials_hash.apply(lambda digest: f"credentials={digest}"),
            ],
        )

        reservations = node.reservations
        self.summary = preflight.stdout.apply(
            lambda stdout: {
                "address": f"{node.address}:{node.port}",
                "user": node.user,
                "certCommonName": node.cert_common_name,
                "certOrganization": "system:nodes",
                "kubeletVersion": settings.kubernetes.version,
                "arch": node.arch,
                "podCIDR": node.pod_cidr,
                "reservations": {
                    "systemReserved": reservations.system_reserved.as_kubelet_map(),
                    "kubeReserved": reservations.kube_reserved.as_kubelet_map(),
                    "evictionHard": dict(reservations.eviction_hard),
                    "enforceNodeAllocatable": list(reservations.enforce_node_allocatable),
                },
                **(node_summary_from_facts(stdout, reservations) if stdout.strip() else {}),
            }
        )
        self.register_outputs({"summary": self.summary})
