"""End-to-end harness: the real program, CLI and plugins against the lab VMs.

The project is copied unmodified into a temp dir with a file backend beside it, and each
operation is the CLI's in that directory, as a user's (tests/workspace.py: a LocalWorkspace on the
copy; the CLI reads its Pulumi.yaml and the stack's file, Pulumi.lab.yaml or Pulumi.lab-arm64.yaml,
the language host runs its __main__.py).
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from lab import api as lab
from lab import control_plane as lab_control_plane
from lab import paths as lab_paths
from tests.workspace import copy_project, project_stack

NODES = lab_paths.NODE_NAMES  # the lab stack's nodes (Pulumi.lab.yaml)
PASSPHRASE = "homelab-kubelet-e2e"
COMMAND_TYPE = "command:remote:Command"


@dataclass
class Run:
    """One engine operation and what it did, from its events."""

    events: list[auto.EngineEvent] = field(default_factory=list)

    def ops(self) -> dict[str, str]:
        """resource name -> operation (same, create, update, delete, ...), per resource."""
        result: dict[str, str] = {}
        for event in self.events:
            pre = event.resource_pre_event
            if pre is not None:
                result[pre.metadata.urn.rsplit("::", 1)[1]] = str(pre.metadata.op.value)
        return result

    def op_sequence(self) -> dict[str, list[str]]:
        """resource name -> every operation the engine reported for it, in order."""
        result: dict[str, list[str]] = {}
        for event in self.events:
            pre = event.resource_pre_event
            if pre is not None:
                result.setdefault(pre.metadata.urn.rsplit("::", 1)[1], []).append(str(pre.metadata.op.value))
        return result

    def changed(self) -> dict[str, str]:
        return {name: op for name, op in self.ops().items() if op not in ("same", "read")}

    def text(self) -> str:
        return "\n".join(json.dumps(_event_dict(event), default=str) for event in self.events)


def _event_dict(event: auto.EngineEvent) -> dict[str, Any]:
    return {key: value for key, value in vars(event).items() if value is not None}


class LabStack:
    def __init__(self, work: Path, info: lab.LabInfo, state_dir: Path | None = None, stack: str = "lab") -> None:
        """A checkout of the project in `work`, with its own file backend there unless `state_dir`
        names another's (two checkouts of one stack); `stack` is the lab layout's (lab, lab-arm64)."""
        self.info = info
        self.project = copy_project(work / "project", (f"Pulumi.{stack}.yaml",))
        self.state_dir = state_dir or work / "state"
        self.runs: list[Run] = []
        self.stack = project_stack(self.project, stack, self.state_dir, PASSPHRASE)
        #: The layout's nodes, the only ones `fresh_nodes` touches.
        self.nodes = [node.name for node in info.nodes]
        # Pin each VM's SSH host key: the provider then refuses any other host.
        for index, node in enumerate(info.nodes):
            self.set(f"nodes[{index}].hostKey", node.host_key("ssh-ed25519"))
        # Both lab stacks import the CA of the lab's control plane (pki.importCa), as a homelab
        # imports its cluster's: `pulumi config set --secret caKeyPem < ca-key.pem`.
        for key, pem in zip(("caCertPem", "caKeyPem"), lab_control_plane.lab_pki().ca_pems(), strict=True):
            self.set_secret_from_stdin(key, pem)

    def set_secret_from_stdin(self, key: str, value: str) -> None:
        """`pulumi config set --secret KEY` with the value on stdin (never on a command line)."""
        workspace = self.stack.workspace
        assert isinstance(workspace, auto.LocalWorkspace)
        result = subprocess.run(
            [workspace.pulumi_command.command, "config", "set", "--secret", "--stack", self.stack.name, key],
            input=value, cwd=self.project, env={**workspace.env_vars}, capture_output=True, text=True, check=False,
            timeout=120,
        )
        assert result.returncode == 0, f"pulumi config set --secret {key}: {result.stderr}"

    def set(self, path: str, value: str) -> None:
        self.stack.set_config(path, auto.ConfigValue(value), path=True)

    @property
    def stack_file(self) -> Path:
        return self.project / f"Pulumi.{self.stack.name}.yaml"

    def set_object(self, key: str, value: Any) -> None:
        """Replace a whole config object in the stack file, keeping its YAML type."""
        document = yaml.safe_load(self.stack_file.read_text())
        document["config"][f"homelab-kubelet:{key}"] = value
        self.stack_file.write_text(yaml.safe_dump(document, sort_keys=False))

    def config_object(self, key: str) -> Any:
        document = yaml.safe_load(self.stack_file.read_text())
        return copy.deepcopy(document["config"][f"homelab-kubelet:{key}"])

    def _run(self) -> Run:
        run = Run()
        self.runs.append(run)
        return run

    def event_log(self) -> str:
        return "\n".join(run.text() for run in self.runs)

    def up(self, continue_on_error: bool = False, replace: list[str] | None = None,
           target: list[str] | None = None) -> Run:
        run = self._run()
        self.stack.up(continue_on_error=continue_on_error, replace=replace, target=target,
                      on_event=run.events.append, color="never")
        return run

    def resources(self) -> list[dict[str, Any]]:
        deployment = self.stack.export_stack().deployment or {}
        return list(deployment.get("resources", []))

    def step_stdout(self, name: str) -> str:
        """The stdout a remote step reported, from the state (what the step said it did)."""
        return self.step_output(name, "stdout")

    def step_output(self, name: str, stream: str) -> str:
        """A remote step's stdout or stderr, from the state."""
        matches = [r for r in self.resources() if r["type"] == COMMAND_TYPE and r["urn"].endswith(f"::{name}")]
        assert len(matches) == 1, f"{name}: {len(matches)} resources"
        return str(matches[0].get("outputs", {}).get(stream, ""))

    def node_kubeconfigs(self) -> dict[str, str]:
        """The `kubeconfigs` output: node name -> its kubeconfig (server https://10.0.2.2:6443)."""
        return dict(self.stack.outputs()["kubeconfigs"].value)

    def nodes_output(self) -> dict[str, Any]:
        return dict(self.stack.outputs()["nodes"].value)

    def preview(self, diff: bool = False) -> tuple[Run, auto.PreviewResult]:
        run = self._run()
        result = self.stack.preview(on_event=run.events.append, color="never", diff=diff)
        return run, result

    def destroy(self, exclude_protected: bool = False) -> Run:
        run = self._run()
        self.stack.destroy(on_event=run.events.append, color="never", exclude_protected=exclude_protected)
        return run

    def forget_remote_steps(self) -> None:
        """Drop every remote command from the state, as if none had ever run.

        Goes with `reset_nodes`: wiping the nodes alone would leave the state claiming steps that
        are no longer true on them, and the next `up` would skip those steps.
        """
        exported = self.stack.export_stack()
        deployment = dict(exported.deployment or {})
        resources = deployment.get("resources", [])
        removed = {r["urn"] for r in resources if r["type"] == COMMAND_TYPE}
        kept = []
        for resource in resources:
            if resource["urn"] in removed:
                continue
            if resource.get("dependencies"):
                resource = {**resource, "dependencies": [u for u in resource["dependencies"] if u not in removed]}
            # An input taken from a step's output (the certificate's IP SANs from node-address).
            if resource.get("propertyDependencies"):
                resource = {**resource, "propertyDependencies": {
                    key: [u for u in urns if u not in removed]
                    for key, urns in resource["propertyDependencies"].items()}}
            kept.append(resource)
        deployment["resources"] = kept
        deployment.pop("pending_operations", None)
        self.stack.import_stack(auto.Deployment(version=exported.version, deployment=deployment))

    def fresh_nodes(self) -> None:
        """Bare nodes and a state that knows it: the next `up` is a fresh apply on every node."""
        reset_nodes(self.nodes)
        self.forget_remote_steps()

    def state_text(self) -> str:
        return "\n".join(path.read_text() for path in self.state_dir.rglob("*.json"))


def node_ssh(name: str, command: str, user: str = "root") -> str:
    result = lab.ssh(name, command, user=user, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"{name}: `{command}` failed ({result.returncode}): {result.stderr}")
    return str(result.stdout).strip()


def kubelet_start_stamp(name: str) -> str:
    """Changes on every (re)start of the kubelet unit (the main PID's start time)."""
    return node_ssh(name, "systemctl show -p ExecMainStartTimestampMonotonic --value kubelet.service")


def node_clock(name: str) -> int:
    return int(node_ssh(name, "date +%s"))


def kubelet_starts(name: str, since: int) -> int:
    """How often systemd started the kubelet on `name` since the node's time `since`."""
    count = node_ssh(
        name, f"journalctl -u kubelet.service --since @{since} -o cat --no-pager | grep -c '^Started kubelet' || true"
    )
    return int(count)


def reset_nodes(names: Iterable[str] = NODES) -> None:
    """Put lab nodes back to their image state as far as this program is concerned."""
    script = (
        "systemctl disable --now kubelet.service 2>/dev/null || true; "
        "rm -rf /usr/bin/kubelet /var/lib/kubelet /var/lib/kubernetes /etc/kubelet.d "
        "/etc/systemd/system/kubelet.service /etc/systemd/system/kube.slice "
        "/etc/systemd/system/system.slice.d/10-homelab-kubelet-reserved.conf "
        "/etc/systemd/system/containerd.service.d/10-homelab-kubelet-slice.conf "
        "/usr/local/libexec/homelab-kubelet; "
        # Files the project replaced go back (lib.sh, records: RECORD.orig beside a "replaced" record).
        "for record in /var/lib/homelab-kubelet/owned/*.orig; do [ -f \"$record\" ] || continue; "
        "name=${record##*/}; name=${name%.orig}; mv -f \"$record\" \"${name//%//}\"; done; "
        "if [ -f /var/lib/homelab-kubelet/containerd-config.toml.orig ]; then "
        "mv -f /var/lib/homelab-kubelet/containerd-config.toml.orig /etc/containerd/config.toml; "
        "elif [ -f /var/lib/homelab-kubelet/containerd-config-managed ]; then rm -f /etc/containerd/config.toml; fi; "
        "rm -rf /var/lib/homelab-kubelet; systemctl daemon-reload; systemctl restart containerd"
    )
    for name in names:
        node_ssh(name, script)


# --- the lab's control plane -------------------------------------------------------------------


def control_plane(info: lab.LabInfo) -> lab_control_plane.ControlPlane:
    assert info.control_plane is not None, "the lab runs without its control plane (python -m lab up)"
    return info.control_plane


def kubectl(cp: lab_control_plane.ControlPlane, *args: str, kubeconfig: Path | None = None,
            input: str | None = None) -> str:
    """kubectl with the admin kubeconfig (or `kubeconfig`); fails the test on an error."""
    result = lab_control_plane.kubectl(cp, *args, kubeconfig=kubeconfig, input=input)
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}"
    return result.stdout


def kubectl_json(cp: lab_control_plane.ControlPlane, *args: str, kubeconfig: Path | None = None) -> Any:
    return json.loads(kubectl(cp, *args, "-o", "json", kubeconfig=kubeconfig))


def forget_registered_nodes(cp: lab_control_plane.ControlPlane, names: Iterable[str] = NODES) -> None:
    """Delete the Nodes and node Leases of `names` (a layout's nodes) from the API server (after
    reset_nodes stopped their kubelets): the next `up` registers each anew, with the stack's
    labels and taints. The other layout's node, registered with the same control plane, stays."""
    names = list(names)
    kubectl(cp, "delete", "nodes", *names, "--ignore-not-found", "--wait=true")
    kubectl(cp, "delete", "leases", *names, "-n", "kube-node-lease", "--ignore-not-found", "--wait=true")
