"""KubeletNode: the remote steps that turn one machine into a kubelet host.

Four idempotent scripts over SSH, in order:
  preflight -> install-kubelet, credentials (in parallel) -> configure-and-start.
Every step has `update` = `create` (in update mode) and no `triggers`: with pulumi-command a
`triggers` change replaces the resource, and a replacement runs the new create, then the old
delete. Values that must rerun a step are ordinary inputs (its stdin, or the note at the end of
configure-and-start's command); each delete still checks on the node that no newer create of its
step holds it (node_scripts), so a replacement for any other reason (`pulumi up --replace`, a
rename) is safe too. configure-and-start restarts the kubelet only when a file it runs on changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
from pulumi_command import remote

from components import node_scripts
from components.allocatable import node_summary_from_facts
from components.node_scripts import Hint, Step
from components.pki import NODE_ORGANIZATION, NodeCertificate
from components.settings import NodeSettings, Settings

# Bounded SSH retries: the provider dials dialErrorLimit + 1 times with a short back-off, and
# perDialTimeout bounds each TCP connect, so an unreachable node fails in about 75 s, not never.
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
            step: Step,
            depends_on: Sequence[pulumi.Resource],
            data: pulumi.Input[str] | None = None,
            note: pulumi.Input[str] = "",
            secret_outputs: list[str] | None = None,
            **extra: Any,
        ) -> remote.Command:
            def command(mode: node_scripts.Mode) -> pulumi.Output[str]:
                return pulumi.Output.from_input(note).apply(lambda text: step.command(mode, text))

            return remote.Command(
                f"{name}-{step.name}",
                connection=connection,
                create=command("create"),
                update=command("update"),
                delete=step.delete,
                stdin=step.scripts if data is None else pulumi.Output.concat(step.scripts, data),
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=list(depends_on),
                    additional_secret_outputs=secret_outputs,
                    # Stacks applied by earlier versions of this program have triggers in their
                    # state; dropping them would be a replacement, which runs the old delete.
                    ignore_changes=["triggers"],
                ),
                **extra,
            )

        preflight = step(node_scripts.preflight(settings, node), [])
        install = step(node_scripts.install_kubelet(settings, node), [preflight])
        credentials_data: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(
                ca_cert_pem, certificate.cert_pem, certificate.private_key_pem, certificate.kubeconfig
            ).apply(
                lambda pems: node_scripts.credentials_bundle(
                    node, ca_cert_pem=pems[0], cert_pem=pems[1], key_pem=pems[2], kubeconfig=pems[3]
                )
            )
        )
        credentials = step(
            node_scripts.write_credentials(node),
            [preflight],
            data=credentials_data,
            # The key travels on stdin only; nothing of it may reach the engine's log.
            logging=remote.Logging.NONE,
            secret_outputs=["stdin", "stdout", "stderr"],
        )
        # A digest of what the credentials step writes: it reveals nothing of the key, and keeps
        # the configure step's command plain, so the preview shows it.
        credentials_digest = pulumi.Output.unsecret(credentials_data.apply(node_scripts.content_hash))
        step(
            node_scripts.configure_and_start(settings, node, hints),
            [install, credentials],
            data=node_scripts.configure_bundle(settings, node),
            note=credentials_digest.apply(lambda digest: node_scripts.configure_note(settings, node, digest)),
        )

        reservations = node.reservations
        self.summary = preflight.stdout.apply(
            lambda stdout: {
                "address": f"{node.address}:{node.port}",
                "user": node.user,
                "certCommonName": node.cert_common_name,
                "certOrganization": NODE_ORGANIZATION,
                "kubeletVersion": settings.kubernetes.version,
                "arch": node.arch,
                "podCIDR": node.pod_cidr,
                "reservations": {
                    "systemReserved": reservations.system_reserved.as_kubelet_map(),
                    "kubeReserved": reservations.kube_reserved.as_kubelet_map(),
                    "evictionHard": reservations.eviction_thresholds,
                    "enforceNodeAllocatable": list(reservations.enforce_node_allocatable),
                },
                **(node_summary_from_facts(stdout, reservations) if stdout.strip() else {}),
            }
        )
        self.register_outputs({"summary": self.summary})
