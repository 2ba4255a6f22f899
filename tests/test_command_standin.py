"""The pulumi-command STAND-IN (standins/command/) through the real engine against throwaway sshds.

Needs the CLI from scripts/toolchain and the stand-in installed by scripts/install-command-standin;
either missing is a failure, not a skip. openssh-server's /usr/sbin/sshd must be present.

One engine test per behaviour of pulumi-command 1.2.1 that the stand-in copies (see
standins/command/README.md). Assertions on command output use text the command computes at run
time (`$((6*7))` -> 42), never text that also sits in the command.
"""

from __future__ import annotations

import contextlib
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


# --- without the engine ----------------------------------------------------------------------------


def test_check_defaults_and_failures() -> None:
    provider = _provider_module()
    inputs, failures = provider.check_inputs({"connection": {"host": "h"}, "create": "true"})
    assert failures == []
    assert inputs["addPreviousOutputInEnv"] is True
    assert inputs["connection"] == {"host": "h", "port": 22, "user": "root", "dialErrorLimit": 10, "perDialTimeout": 15}

    _, failures = provider.check_inputs(
        {"connection": {"port": "x"}, "logging": "loud", "bogus": 1, "create": 3, "environment": {"A": 1}}
    )
    props = {p for p, _ in failures}
    assert props == {"connection.host", "connection.port", "logging", "bogus", "create", "environment.A"}, failures
    assert provider.check_inputs({"create": "x"})[1] == [("connection", "missing required property connection")]
    # Names go to the server as SSH env requests: no shell-name rule.
    assert provider.check_inputs({"connection": {"host": "h"}, "environment": {"A-B": "1"}})[1] == []

    inputs, failures = provider.check_inputs({"connection": UNKNOWN, "create": UNKNOWN, "logging": UNKNOWN})
    assert failures == [] and inputs["connection"] == UNKNOWN


def test_diff_kinds() -> None:
    """infer's diff: detailed keys per element; replaceOnChanges (triggers) only on the whole key."""
    provider = _provider_module()
    kind = provider.provider_pb2.PropertyDiff
    base = {"connection": {"host": "h", "port": 22}, "create": "a", "triggers": ["1"], "addPreviousOutputInEnv": True}

    def diff(news: dict[str, Any], *ignore: str) -> tuple[dict[str, int], set[str], set[str]]:
        response = provider.diff_inputs(base, news, ignore)
        return {k: v.kind for k, v in response.detailedDiff.items()}, set(response.diffs), set(response.replaces)

    assert provider.diff_inputs(base, dict(base), []).changes == provider.provider_pb2.DiffResponse.DIFF_NONE
    # Elements get plain kinds; the SDK's replace_on_changes=["triggers[*]"] makes the engine replace
    # (test_triggers_change_replaces_even_with_update).
    changed = {"triggers[0]": kind.UPDATE, "triggers[1]": kind.ADD, "update": kind.ADD}
    assert diff({**base, "triggers": ["2", "3"], "update": "u"}) == (changed, set(changed), set())
    assert diff({**base, "triggers": None}) == ({"triggers": kind.DELETE_REPLACE}, {"triggers"}, {"triggers"})
    assert diff({**base, "triggers": []})[0] == {"triggers[0]": kind.DELETE}
    assert diff({**base, "connection": {"host": "h2", "port": 22}}) == (
        {"connection.host": kind.UPDATE}, {"connection.host"}, set()
    )
    assert diff({**base, "create": UNKNOWN})[0] == {"create": kind.UPDATE}
    assert diff({**base, "environment": {"A-B": "1"}})[0] == {"environment": kind.ADD}
    assert diff({**base, "environment": {"A-B": "1"}}, "environment")[0] == {}
    assert diff({**base, "connection": {"host": "h2", "port": 22}}, "connection.host")[0] == {}


def test_go_wording() -> None:
    provider = _provider_module()
    # strconv.Quote.
    assert provider.go_quote('a "b"\\\n\t\x01\x7f é\u00a0\U0001f600\u200b') == (
        '"a \\"b\\"\\\\\\n\\t\\x01\\x7f é\\u00a0\U0001f600\\u200b"'
    )
    # Session.Wait.
    assert provider.exit_error(0, "", "") is None
    assert provider.exit_error(3, "", "") == "Process exited with status 3"
    assert provider.exit_error(-1, "TERM", "") == "Process exited with status 143 from signal TERM"
    assert provider.exit_error(-1, "XCPU", "gone") == "Process exited with status 128 from signal XCPU. Reason was: gone"
    assert provider.exit_error(-1, "", "") == "wait: remote command exited without exit status or exit signal"
    # retry.Until's defaults: 100 ms, x1.5, capped at 5 s (about 0.8 s of waiting for dialErrorLimit 4).
    delays = provider.backoff_delays()
    got = [next(delays) for _ in range(12)]
    assert got[:4] == pytest.approx([0.1, 0.15, 0.225, 0.3375]) and got[-2:] == [5.0, 5.0]


# --- throwaway sshds ---------------------------------------------------------------------------------


@dataclass
class Sshd:
    port: int
    dir: Path
    log: Path
    host_key: str
    client_key: str
    user: str

    def connections(self) -> int:
        """TCP connections sshd accepted so far (LogLevel VERBOSE logs each)."""
        return self.log.read_text(errors="replace").count("Connection from ")

    def connections_after(self, before: int, expected: int) -> int:
        deadline = time.monotonic() + 3  # the preauth child may log just after the client gave up
        while (n := self.connections() - before) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        return n


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


def _keygen(path: Path, kind: str) -> None:
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    for name, kind in (("client_key", "ed25519"), ("wrong_key", "ed25519"), ("ed_host", "ed25519"), ("rsa_host", "rsa")):
        _keygen(d / name, kind)
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    return d


@contextlib.contextmanager
def _start_sshd(d: Path, keys: Path, host_key: str, extra: str = "", log_level: str = "VERBOSE") -> Iterator[Sshd]:
    if not SSHD.is_file():
        pytest.fail(f"{SSHD} missing: apt-get install -y openssh-server")
    d.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nListenAddress 127.0.0.2\nHostKey {keys / host_key}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nStrictModes no\nUsePAM no\nPidFile none\n"
        f"PermitRootLogin yes\nPasswordAuthentication no\nLogLevel {log_level}\n{extra}"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    log = d / "sshd.log"
    proc = subprocess.Popen([str(SSHD), "-D", "-E", str(log), "-f", str(d / "sshd_config")])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sshd did not start: {log.read_text() if log.exists() else ''}")
            time.sleep(0.1)
    pub = " ".join((keys / f"{host_key}.pub").read_text().split()[:2])
    try:
        yield Sshd(port, d, log, pub, (keys / "client_key").read_text(), getpass.getuser())
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory, keys: Path) -> Iterator[Sshd]:
    """ed25519 host key; accepts PULUMI_COMMAND_* and ACCEPTED_* env requests."""
    with _start_sshd(tmp_path_factory.mktemp("sshd"), keys, "ed_host", "AcceptEnv PULUMI_COMMAND_* ACCEPTED_*\n") as s:
        yield s


@pytest.fixture(scope="module")
def sshd_rsa(tmp_path_factory: pytest.TempPathFactory, keys: Path) -> Iterator[Sshd]:
    """Only an RSA host key, OpenSSH's default algorithms (no SHA-1 ssh-rsa since 8.8), no AcceptEnv."""
    with _start_sshd(tmp_path_factory.mktemp("sshd-rsa"), keys, "rsa_host") as s:
        yield s


def _stack(tmp: Path, program: Callable[[], None], env: Mapping[str, str] | None = None) -> auto.Stack:
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
                # The provider dials any agent it is given; the runner's own must not leak in.
                "SSH_AUTH_SOCK": "",
                **(env or {}),
            },
            project_settings=auto.ProjectSettings(name="standin-test", runtime="python"),
        ),
    )


def _command(name: str, sshd: Sshd, **args: Any) -> remote.Command:
    """A Command on sshd; connection fields (host, host_key, private_key, ...) override the defaults."""
    conn: dict[str, Any] = {
        "host": "127.0.0.1", "port": sshd.port, "user": sshd.user, "private_key": pulumi.Output.secret(sshd.client_key),
        "host_key": sshd.host_key, "dial_error_limit": 1, "per_dial_timeout": 5,
    }
    args = dict(args)
    conn.update({k: args.pop(k) for k in list(args) if k in conn})
    return remote.Command(name, connection=remote.ConnectionArgs(**conn), **args)


def _program(commands: Mapping[str, tuple[Sshd, Mapping[str, Any]]]) -> None:
    for name, (server, args) in commands.items():
        _command(name, server, **args)


def _changes(result: auto.UpResult) -> dict[str, int]:
    """The up's resource changes, without the stack resource's (a create, then always same)."""
    changes = _summary(result.summary.resource_changes)
    op = "create" if changes.get("same", 0) == 0 else "same"
    changes[op] -= 1
    return {k: n for k, n in changes.items() if n}


def _summary(changes: Mapping[Any, int] | None) -> dict[str, int]:
    return {str(getattr(op, "value", op)): n for op, n in (changes or {}).items()}


def _diagnostics(events: list[auto.EngineEvent]) -> list[auto.DiagnosticEvent]:
    return [e.diagnostic_event for e in events if e.diagnostic_event is not None]


def _steps(events: list[auto.EngineEvent], name: str) -> list[auto.StepEventMetadata]:
    return [
        e.resource_pre_event.metadata
        for e in events
        if e.resource_pre_event is not None and e.resource_pre_event.metadata.urn.endswith(f"::{name}")
    ]


def _detailed(step: auto.StepEventMetadata) -> dict[str, str]:
    return {k: v.diff_kind.value for k, v in (step.detailed_diff or {}).items()}


def _errors(events: list[auto.EngineEvent], name: str) -> str:
    return "\n".join(
        d.message for d in _diagnostics(events) if d.severity == "error" and (d.urn or "").endswith(f"::{name}")
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --- through the engine --------------------------------------------------------------------------


def test_remote_command_lifecycle(sshd: Sshd, tmp_path: Path) -> None:
    """create, same, update (create again), destroy with PULUMI_COMMAND_STDOUT."""
    work = tmp_path / "host"
    work.mkdir()
    spec: dict[str, Any] = {
        "create": f"cat > {work}/created && echo made-$(cat {work}/created)",
        "delete": f'printf %s "$PULUMI_COMMAND_STDOUT" > {work}/deleted',
        "stdin": "hello",
    }

    def program() -> None:
        main = _command("main", sshd, **spec)
        pulumi.export("stdout", main.stdout)

    stack = _stack(tmp_path, program)
    up = stack.up()
    assert (work / "created").read_text() == "hello"
    assert up.outputs["stdout"].value == "made-hello"
    assert _changes(up) == {"create": 1}, _changes(up)
    assert _changes(stack.up()) == {"same": 1}

    spec["create"] = f"cat > {work}/created2 && echo second-$((6*7))"
    preview = stack.preview(diff=True)
    assert _summary(preview.change_summary) == {"update": 1, "same": 1}, preview.change_summary
    assert re.search(r'~ create\s*: "cat > ', preview.stdout), preview.stdout
    assert not (work / "created2").exists()
    up = stack.up()
    assert _changes(up) == {"update": 1}, _changes(up)
    assert (work / "created2").read_text() == "hello"
    assert up.outputs["stdout"].value == "second-42"

    stack.destroy()
    assert (work / "deleted").read_text() == "second-42"


def test_triggers_change_replaces_even_with_update(sshd: Sshd, tmp_path: Path) -> None:
    """Fact 1: a triggers change replaces, `update` set or not; per-element detailed-diff keys."""
    log = tmp_path / "ops.log"
    spec: dict[str, Any] = {
        "create": f"echo create >> {log}", "update": f"echo update >> {log}", "delete": f"echo delete >> {log}",
        "triggers": ["t1"],
    }
    stack = _stack(tmp_path, lambda: _program({"main": (sshd, spec)}))
    stack.up()

    spec["triggers"] = ["t2", "t3"]
    events: list[auto.EngineEvent] = []
    preview = stack.preview(diff=True, on_event=events.append)
    assert _summary(preview.change_summary) == {"replace": 1, "same": 1}, preview.change_summary
    assert re.search(r"\+-command:remote:Command: \(replace\)\n\s+\[id=\S+\]\n\s+\[urn=\S+::main\]", preview.stdout)
    assert re.search(r'~ \[0\]: "t1" => "t2"\n\s+\+ \[1\]: "t3"', preview.stdout), preview.stdout
    (step,) = [s for s in _steps(events, "main") if s.op == auto.OpType.REPLACE]
    assert _detailed(step) == {"triggers[0]": "update-replace", "triggers[1]": "add-replace"}, _detailed(step)

    up = stack.up()
    assert _changes(up) == {"replace": 1}, _changes(up)
    assert _lines(log) == ["create", "create", "delete"]  # the update command never ran


def test_replacement_creates_first_then_deletes_old_with_old_inputs(sshd: Sshd, tmp_path: Path) -> None:
    """Fact 2: create-before-delete; the old delete runs last with the old delete, connection, stdin.
    Commands that exit without reading their (big) stdin do not fail."""
    log = tmp_path / "ops.log"

    def spec(tag: str, host: str) -> dict[str, Any]:
        return {
            "create": f'echo "create $(cat)" >> {log}',
            "delete": f'set -- $SSH_CONNECTION; echo "delete-{tag} $(cat) via $3" >> {log}',
            "stdin": f"stdin-{tag}", "host": host, "triggers": [tag],
        }

    specs = {"main": spec("old", "127.0.0.1")}
    big = {"create": "true", "delete": "exit 0", "stdin": "x" * 256 * 1024, "triggers": ["1"]}

    def program() -> None:
        _command("main", sshd, **specs["main"])
        _command("unread", sshd, **big)

    stack = _stack(tmp_path, program)
    stack.up()
    specs["main"] = spec("new", "127.0.0.2")
    big["triggers"] = ["2"]
    events: list[auto.EngineEvent] = []
    up = stack.up(on_event=events.append)
    assert _changes(up) == {"replace": 2}, _changes(up)
    assert _lines(log) == ["create stdin-old", "create stdin-new", "delete-old stdin-old via 127.0.0.1"]
    ops = [s.op.value for s in _steps(events, "main")]
    assert ops == ["create-replacement", "replace", "delete-replaced"], ops


def test_delete_connection_or_stdin_alone_is_an_update(sshd: Sshd, tmp_path: Path) -> None:
    """Fact 3: each is an update (which reruns create: there is no `update` command)."""
    log = tmp_path / "ops.log"
    spec: dict[str, Any] = {"create": f'echo "create $(cat)" >> {log}', "delete": "echo one", "stdin": "s1"}
    stack = _stack(tmp_path, lambda: _program({"main": (sshd, spec)}))
    stack.up()
    for change, key in (({"delete": "echo two"}, "delete"), ({"host": "127.0.0.2"}, "connection.host"),
                        ({"stdin": "s2"}, "stdin")):
        spec.update(change)
        events: list[auto.EngineEvent] = []
        up = stack.up(on_event=events.append)
        assert _changes(up) == {"update": 1}, (change, _changes(up))
        (step,) = [s for s in _steps(events, "main") if s.op == auto.OpType.UPDATE]
        assert _detailed(step) == {key: "update"}, _detailed(step)
    assert _lines(log) == ["create s1", "create s1", "create s1", "create s2"]


def test_failure_text_quotes_command_and_interleaves_output(sshd: Sshd, tmp_path: Path) -> None:
    """Fact 4: `<error>: running <%q command>:\\n<stdout and stderr as they came>`, logging none too."""
    bad = (
        'echo "out-$((6*7))"\nsleep 0.2\necho "err-$((6*8))" >&2\nsleep 0.2\n'
        'echo "out-$((6*9))"\t# "q" back\\slash bell\a nbsp\u00a0 é\nexit 3'
    )
    quoted = (
        '"echo \\"out-$((6*7))\\"\\nsleep 0.2\\necho \\"err-$((6*8))\\" >&2\\nsleep 0.2\\n'
        'echo \\"out-$((6*9))\\"\\t# \\"q\\" back\\\\slash bell\\a nbsp\\u00a0 é\\nexit 3"'
    )

    def program() -> None:
        _command("bad", sshd, create=bad, logging=remote.Logging.NONE)
        _command("killed", sshd, create="kill -TERM $$")

    events: list[auto.EngineEvent] = []
    with pytest.raises(auto.CommandError):
        _stack(tmp_path, program).up(on_event=events.append, continue_on_error=True)
    assert f"Process exited with status 3: running {quoted}:\nout-42\nerr-48\nout-54\n" in _errors(events, "bad")
    assert 'Process exited with status 143 from signal TERM: running "kill -TERM $$":\n' in _errors(events, "killed")
    # logging none: the output is in the error only, not in any log line.
    assert not [d for d in _diagnostics(events) if "out-42" in d.message and d.severity != "error"]


def test_dial_errors_are_retried_limit_plus_one_times(sshd: Sshd, keys: Path, tmp_path: Path) -> None:
    """Fact 5: every dial error is retried, host key mismatch and failed authentication included."""
    wrong_pub = " ".join((keys / "wrong_key.pub").read_text().split()[:2])
    wrong_key = (keys / "wrong_key").read_text()

    def program() -> None:
        _command("mismatch", sshd, create="true", host_key=wrong_pub, dial_error_limit=2)
        _command("badauth", sshd, create="true", private_key=pulumi.Output.secret(wrong_key), dial_error_limit=1)

    before = sshd.connections()
    events: list[auto.EngineEvent] = []
    with pytest.raises(auto.CommandError):
        _stack(tmp_path, program).up(on_event=events.append, continue_on_error=True)
    assert sshd.connections_after(before, 5) == 5  # 3 + 2
    assert "after 2 failed attempts: ssh: handshake failed: ssh: host key mismatch" in _errors(events, "mismatch")
    assert (
        "after 1 failed attempts: ssh: handshake failed: ssh: unable to authenticate, attempted methods "
        "[none publickey], no supported methods remain"
    ) in _errors(events, "badauth")
    retries = [d.message.strip() for d in _diagnostics(events) if d.ephemeral and "failed: retrying" in d.message]
    assert sorted(retries) == ["Dial 1/1 failed: retrying", "Dial 1/2 failed: retrying", "Dial 2/2 failed: retrying"]


def test_dead_agent_socket_fails_even_with_a_key(sshd: Sshd, tmp_path: Path) -> None:
    """Fact 5: SSH_AUTH_SOCK is always dialled, before any SSH dial (so not retried)."""
    dead = tmp_path / "no-agent.sock"
    before = sshd.connections()
    events: list[auto.EngineEvent] = []
    stack = _stack(tmp_path, lambda: _program({"main": (sshd, {"create": "true"})}), {"SSH_AUTH_SOCK": str(dead)})
    with pytest.raises(auto.CommandError):
        stack.up(on_event=events.append)
    assert f"dial unix {dead}: connect: no such file or directory" in _errors(events, "main")
    assert "failed attempts" not in _errors(events, "main")
    assert sshd.connections_after(before, 0) == 0


def test_ssh_rsa_pin_offers_only_sha1_ssh_rsa(sshd: Sshd, sshd_rsa: Sshd, keys: Path, tmp_path: Path) -> None:
    """Fact 5: hostKey pins the algorithm to the key's type; `ssh-rsa` is SHA-1, refused by OpenSSH >= 8.8."""
    with _start_sshd(tmp_path / "legacy", keys, "rsa_host", "HostKeyAlgorithms +ssh-rsa\n", "DEBUG1") as old_server:

        def program() -> None:
            _command("rsa", sshd_rsa, create="true", dial_error_limit=0)
            _command("rsa-legacy", old_server, create="echo rsa-$((6*7))", dial_error_limit=0)
            _command("ed", sshd, create="echo ed-$((6*7))")

        events: list[auto.EngineEvent] = []
        with pytest.raises(auto.CommandError):
            _stack(tmp_path, program).up(on_event=events.append, continue_on_error=True)
        assert sshd_rsa.host_key.startswith("ssh-rsa ")
        assert (
            "after 0 failed attempts: ssh: handshake failed: ssh: no common algorithm for host key; "
            "we offered: [ssh-rsa], peer offered: [rsa-sha2-512 rsa-sha2-256]"
        ) in _errors(events, "rsa")
        assert not _errors(events, "rsa-legacy") and not _errors(events, "ed")
        assert "host key algorithm: ssh-rsa" in old_server.log.read_text()


def test_output_lines_are_ephemeral(sshd: Sshd, tmp_path: Path) -> None:
    """Fact 6: output lines reach the engine as ephemeral INFO status lines, per `logging`."""

    def program() -> None:
        _command("both", sshd, create='echo "out-$((6*7))"; echo "err-$((6*8))" >&2')
        _command("errs", sshd, create='echo "out-$((6*9))"; echo "err-$((6*9))" >&2', logging=remote.Logging.STDERR)

    events: list[auto.EngineEvent] = []
    _stack(tmp_path, program).up(on_event=events.append)
    status = {d.message.strip() for d in _diagnostics(events) if d.ephemeral and d.severity == "info"}
    assert {"out-42", "err-48", "err-54"} <= status, status
    assert "out-54" not in status
    kept = "\n".join(d.message for d in _diagnostics(events) if not d.ephemeral)
    assert not re.search(r"out-42|err-48|err-54", kept), kept


def test_environment_is_sent_with_ssh_setenv(sshd: Sshd, sshd_rsa: Sshd, tmp_path: Path) -> None:
    """Fact 6: environment and PULUMI_COMMAND_* are SSH env requests; a refused `environment` is an error,
    a refused PULUMI_COMMAND_* only a warning."""
    spec: dict[str, Any] = {"update": "true"}
    with_refused = [True]

    def program() -> None:
        ok = _command("ok", sshd, create='echo "x=$ACCEPTED_X"', environment={"ACCEPTED_X": "yes"}, **spec)
        # sshd_rsa accepts no env requests. No hostKey: any of its host key algorithms will do.
        plain = _command("plain", sshd_rsa, create='echo "first-$((6*7))"', host_key=None, **spec)
        pulumi.export("ok", ok.stdout)
        pulumi.export("plain", plain.stdout)
        if with_refused[0]:
            _command("refused", sshd, create="true", environment={"REFUSED_X": "no"})

    stack = _stack(tmp_path, program)
    events: list[auto.EngineEvent] = []
    with pytest.raises(auto.CommandError):
        stack.up(on_event=events.append, continue_on_error=True)
    assert 'could not set environment variable "REFUSED_X": ssh: setenv failed' in _errors(events, "refused")
    assert "Unable to set 'REFUSED_X'. This only works if your SSH server is configured to accept" in _errors(
        events, "refused"
    )

    spec["update"] = 'echo "prev=[$PULUMI_COMMAND_STDOUT]"'
    with_refused[0] = False
    events.clear()
    up = stack.up(on_event=events.append)
    assert up.outputs["ok"].value == "prev=[x=yes]"
    assert up.outputs["plain"].value == "prev=[]"
    warnings = [d for d in _diagnostics(events) if d.severity == "warning" and (d.urn or "").endswith("::plain")]
    assert any("Unable to set 'PULUMI_COMMAND_STDOUT'" in d.message for d in warnings), warnings
