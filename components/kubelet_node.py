"""KubeletNode: the remote steps that turn one machine into a kubelet host.

Five idempotent scripts over SSH, in order:
  preflight, node-address (read-only, in parallel) -> install-kubelet, credentials (in parallel)
  -> configure-and-start.
The node certificate is issued for the address node-address reports (or nodes[].nodeIP), so the
component takes a function that issues it. With `rollout.maxParallel` the writing steps also wait
for another node's configure-and-start (`after`, components/rollout.py).
Every step has `update` = `create` (in update mode) and no `triggers`: with pulumi-command a
`triggers` change replaces the resource, and a replacement runs the new create, then the old
delete. Values that must rerun a step are ordinary inputs (its stdin, or the note at the end of
configure-and-start's command); each delete still checks on the node that no newer create of its
step holds it (node_scripts), so a replacement for any other reason (`pulumi up --replace`, a
rename) is safe too. configure-and-start restarts the kubelet only when a file it runs on changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pulumi
from pulumi_command import remote

from components import node_scripts
from components.node_scripts import Hint, Step
from components.node_summary import node_summary, primary_address
from components.pki import NodeCertificate
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
    """One kubelet host: preflight, its address, binary, credentials, configuration, service."""

    summary: pulumi.Output[dict[str, Any]]
    certificate: NodeCertificate
    # The step whose success means this node's kubelet passed its health check.
    configure: remote.Command

    def __init__(
        self,
        name: str,
        settings: Settings,
        node: NodeSettings,
        issue_certificate: Callable[[pulumi.Output[str]], NodeCertificate],
        ca_cert_pem: pulumi.Input[str],
        ssh_private_key: pulumi.Input[str] | None,
        hints: Sequence[Hint] = (),
        after: Sequence[pulumi.Resource] = (),
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

        # Preflight reads the API server's /version trusting the CA, which travels on its stdin: a
        # certificate, public even when imported from a secret, so the preview shows the step.
        preflight = step(
            node_scripts.preflight(settings, node), [],
            data=pulumi.Output.unsecret(pulumi.Output.from_input(ca_cert_pem)),
        )
        address = step(node_scripts.node_address(node), [])
        # nodes[].nodeIP is known before anything runs; else the address the kubelet picks itself.
        primary: pulumi.Output[str] = (
            pulumi.Output.from_input(node.node_ip) if node.node_ip else address.stdout.apply(primary_address)
        )
        certificate = self.certificate = issue_certificate(primary)
        checked = [preflight, address, *after]
        install = step(node_scripts.install_kubelet(settings, node), checked)
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
            checked,
            data=credentials_data,
            # The key travels on stdin only; nothing of it may reach the engine's log.
            logging=remote.Logging.NONE,
            secret_outputs=["stdin", "stdout", "stderr"],
        )
        # A digest of what the credentials step writes: it reveals nothing of the key, and keeps
        # the configure step's command plain, so the preview shows it.
        credentials_digest = pulumi.Output.unsecret(credentials_data.apply(node_scripts.content_hash))
        self.configure = step(
            node_scripts.configure_and_start(settings, node, hints),
            [install, credentials, *after],
            data=node_scripts.configure_bundle(settings, node),
            note=credentials_digest.apply(lambda digest: node_scripts.configure_note(settings, node, digest)),
        )

        self.summary = pulumi.Output.all(
            preflight.stdout, address.stdout, certificate.ip_addresses, certificate.not_after
        ).apply(lambda values: node_summary(settings, node, *values))
        self.register_outputs({"summary": self.summary})
