"""The pulumi-command STAND-IN (standins/command/) through the real engine against a throwaway sshd.

Needs the CLI from scripts/toolchain and the stand-in installed by scripts/install-command-standin;
either missing is a failure, not a skip. openssh-server's /usr/sbin/sshd must be present.
"""

from __future__ import annotations

import getpass
import importlib.util
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pulumi
import pytest
from pulumi import automation as auto
from pulumi_command import remote

from tests.toolchain import env_with_toolchain, plugin_version, toolchain_bin_dir

pytestmark = [
    pytest.mark.toolchain,
    pytest.mark.timeout(180),
    # The SDK's inline-program runner leaves a coroutine behind when an up fails.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

SSHD = Path("/usr/sbin/sshd")
REPO = Path(__file__).resolve().parent.parent
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def _provider_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("command_standin", REPO / "standins/command/provider.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_defaults_and_failures() -> None:
    provider = _provider_module()
    inputs, failures = provider.check_inputs({"connection": {"host": "h"}, "create": "true"})
    assert failures == []
    assert inputs["addPreviousOutputInEnv"] is True
    assert inputs["connection"] == {"host": "h", "port": 22, "user": "root", "dialErrorLimit": 10, "perDialTimeout": 15}

    _, failures = provider.check_inputs(
        {"connection": {"port": "x"}, "logging": "loud", "bogus": 1, "create": 3, "environment": {"A-B": "1"}}
    )
    props = {p for p, _ in failures}
    assert props == {"connection.host", "connection.port", "logging", "bogus", "create", "environment.A-B"}, failures
    assert provider.check_inputs({"create": "x"})[1] == [("connection", "missing required property connection")]

    inputs, failures = provider.check_inputs({"connection": UNKNOWN, "create": UNKNOWN, "logging": UNKNOWN})
    assert failures == [] and inputs["connection"] == UNKNOWN


def test_diff_kinds() -> None:
    provider = _provider_module()
    base = {"connection": {"host": "h", "port": 22}, "create": "a", "triggers": ["1"], "addPreviousOutputInEnv": True}
    response = provider.diff_inputs(base, dict(base), [])
    assert response.changes == provider.provider_pb2.DiffResponse.DIFF_NONE

    response = provider.diff_inputs(base, {**base, "triggers": ["2"]}, [])
    assert list(response.replaces) == ["triggers"] and list(response.diffs) == ["triggers"]
    response = provider.diff_inputs(base, {**base, "triggers": ["2"], "update": "u"}, [])
    assert list(response.replaces) == [] and set(response.diffs) == {"triggers", "update"}

    response = provider.diff_inputs(base, {**base, "connection": {"host": "h2", "port": 22}}, [])
    assert list(response.replaces) == [] and list(response.detailedDiff) == ["connection.host"]
    assert response.changes == provider.provider_pb2.DiffResponse.DIFF_SOME
    response = provider.diff_inputs(base, {**base, "create": UNKNOWN}, [])
    assert list(response.diffs) == ["create"]


@dataclass
class Sshd:
    port: int
    dir: Path
    host_key: str
    client_key: str
    user: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _require_cli_and_standin() -> Path:
    bin_dir = toolchain_bin_dir()
    if not (bin_dir / "pulumi").is_file():
        pytest.fail(f"no Pulumi CLI at {bin_dir}/pulumi: build it with `scripts/toolchain pulumi`")
    listing = subprocess.run(
        [str(bin_dir / "pulumi"), "plugin", "ls", "--json"],
        env=env_with_toolchain(), capture_output=True, text=True, check=True,
    )
    version = plugin_version("command")
    plugins = json.loads(listing.stdout or "[]")
    if not any(p.get("name") == "command" and p.get("version") == version for p in plugins):
        pytest.fail(f"resource plugin command v{version} is not installed: run scripts/install-command-standin")
    return bin_dir


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not SSHD.is_file():
        pytest.fail(f"{SSHD} missing: apt-get install -y openssh-server")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\nUsePAM no\nPidFile none\n"
        "PermitRootLogin yes\nPasswordAuthentication no\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sshd did not start: {proc.communicate()[1]!r}")
            time.sleep(0.1)
    host_key = " ".join((d / "host_key.pub").read_text().split()[:2])
    try:
        yield Sshd(port, d, host_key, (d / "client_key").read_text(), getpass.getuser())
    finally:
        proc.kill()
        proc.wait()


def _stack(tmp: Path, program: Callable[[], None]) -> auto.Stack:
    bin_dir = _require_cli_and_standin()
    (tmp / "state").mkdir(exist_ok=True)
    return auto.create_or_select_stack(
        stack_name="standin",
        project_name="standin-test",
        program=program,
        opts=auto.LocalWorkspaceOptions(
            pulumi_command=auto.PulumiCommand(root=str(bin_dir.parent)),
            env_vars={
                **env_with_toolchain(),
                "PULUMI_BACKEND_URL": f"file://{tmp / 'state'}",
                "PULUMI_CONFIG_PASSPHRASE": "x",
                "PULUMI_SKIP_UPDATE_CHECK": "1",
            },
            project_settings=auto.ProjectSettings(name="standin-test", runtime="python"),
        ),
    )


def _changes(result: auto.UpResult) -> dict[str, int]:
    return _summary(result.summary.resource_changes)


def _summary(changes: Mapping[Any, int] | None) -> dict[str, int]:
    return {str(getattr(op, "value", op)): n for op, n in (changes or {}).items()}


def test_remote_command_lifecycle(sshd: Sshd, tmp_path: Path) -> None:
    work = sshd.dir / "work"
    work.mkdir()
    spec: dict[str, Any] = {
        "create": f"cat > {work}/created && echo made-$(cat {work}/created)",
        "delete": f'printf %s "$PULUMI_COMMAND_STDOUT" > {work}/deleted',
        "stdin": "hello",
        "host_key": sshd.host_key,
    }
    extra: dict[str, dict[str, Any]] = {}

    def program() -> None:
        def command(name: str, s: dict[str, Any]) -> remote.Command:
            return remote.Command(
                name,
                connection=remote.ConnectionArgs(
                    host="127.0.0.1", port=sshd.port, user=sshd.user,
                    private_key=pulumi.Output.secret(sshd.client_key), host_key=s["host_key"],
                    dial_error_limit=2, per_dial_timeout=5,
                ),
                create=s["create"], update=s.get("update"), delete=s.get("delete"),
                stdin=s.get("stdin"), triggers=s.get("triggers"),
            )

        main = command("main", spec)
        pulumi.export("stdout", main.stdout)
        for name, s in extra.items():
            command(name, s)

    stack = _stack(tmp_path, program)

    up = stack.up()
    assert (work / "created").read_text() == "hello"
    assert up.outputs["stdout"].value == "made-hello"
    assert _changes(up).get("create") == 2

    up = stack.up()
    assert set(_changes(up)) == {"same"}, _changes(up)

    spec["create"] = f"cat > {work}/created2 && echo second"
    preview = stack.preview(diff=True)
    assert _summary(preview.change_summary) == {"update": 1, "same": 1}, preview.change_summary
    assert re.search(r'~ create\s*: "cat > ', preview.stdout), preview.stdout
    assert not (work / "created2").exists()
    up = stack.up()
    assert _changes(up) == {"update": 1, "same": 1}, _changes(up)
    assert (work / "created2").read_text() == "hello"
    assert up.outputs["stdout"].value == "second"

    spec["update"] = f'echo "prev=$PULUMI_COMMAND_STDOUT" > {work}/updated; echo third'
    spec["triggers"] = ["t1"]
    up = stack.up()
    assert _changes(up) == {"update": 1, "same": 1}, _changes(up)
    assert (work / "updated").read_text() == "prev=second\n"
    spec["triggers"] = ["t2"]
    up = stack.up()
    assert _changes(up) == {"update": 1, "same": 1}, _changes(up)

    extra["bad"] = {"create": "echo oops-out; echo oops-err >&2; exit 3", "host_key": sshd.host_key}
    with pytest.raises(auto.CommandError) as failed:
        stack.up()
    assert "Process exited with status 3" in str(failed.value)
    assert "oops-err" in str(failed.value)

    wrong = (sshd.dir / "client_key.pub").read_text().split()
    extra["bad"] = {"create": "true", "host_key": f"{wrong[0]} {wrong[1]}"}
    with pytest.raises(auto.CommandError) as failed:
        stack.up()
    assert "host key mismatch for 127.0.0.1" in str(failed.value)
    assert "ssh-ed25519 SHA256:" in str(failed.value)

    extra.clear()
    stack.destroy()
    assert (work / "deleted").read_text() == "third"
    stack.workspace.remove_stack("standin")
