"""The Python language host STAND-IN (standins/language_python/) over its gRPC interface.

Each test is one behaviour of the real `pulumi-language-python` (v3.260.0) that the project relies
on, driven the way the CLI drives it: the host started as a process with the engine's address,
its port read from its first stdout line, its LanguageRuntime service called over gRPC, a fake
engine recording the log messages it sends. A recording program stands in for the exec shim
(`-use-executor`, a flag of the real host) where a test checks how the program is started. The
toolchain tests (tests/test_plain_cli.py) then drive it through the real CLI.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from google.protobuf import empty_pb2, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc, language_pb2, language_pb2_grpc

from tests.toolchain import plugin_version, pulumi_version

REPO = Path(__file__).resolve().parent.parent
HOST = REPO / "standins" / "language_python" / "host.py"
VENV = REPO / "venv"

pytestmark = pytest.mark.timeout(120)

# Writes what it was started with to $RECORD, sleeps `sleep=S` seconds, exits with `exit=N`'s code.
RECORDER = """\
import json, os, sys, time
keys = ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS", "VIRTUAL_ENV", "PATH", "PYTHONHOME")
with open(os.environ["RECORD"], "w") as f:
    json.dump({"argv": sys.argv, "executable": sys.executable, "cwd": os.getcwd(),
               "env": {k: os.environ[k] for k in keys if k in os.environ}}, f)
time.sleep(next((float(arg[6:]) for arg in sys.argv if arg.startswith("sleep=")), 0))
sys.exit(next((int(arg[5:]) for arg in sys.argv if arg.startswith("exit=")), 0))
"""


class FakeEngine(engine_pb2_grpc.EngineServicer):
    def __init__(self) -> None:
        self.logs: list[engine_pb2.LogRequest] = []

    def Log(self, request: engine_pb2.LogRequest, context: Any) -> empty_pb2.Empty:
        self.logs.append(request)
        return empty_pb2.Empty()


@pytest.fixture
def engine() -> Iterator[tuple[FakeEngine, str]]:
    fake = FakeEngine()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    engine_pb2_grpc.add_EngineServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield fake, f"127.0.0.1:{port}"
    server.stop(None)


@dataclass
class Host:
    proc: subprocess.Popen[bytes]
    stub: language_pb2_grpc.LanguageRuntimeStub
    channel: Any
    port: int
    output: list[bytes] = field(default_factory=list)

    def stdout(self) -> str:
        return b"".join(self.output).decode()


@contextlib.contextmanager
def start_host(bin_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Host]:
    """The host as the CLI starts it: `pulumi-language-python [flags] ENGINE` from `bin_dir`."""
    proc = subprocess.Popen(
        [str(VENV / "bin" / "python"), str(HOST), f"--executable={bin_dir / 'pulumi-language-python'}", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.strip().isdigit(), f"first stdout line is not a port: {first!r}; stderr: {proc.stderr.read()!r}"  # type: ignore[union-attr]
    port = int(first)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    host = Host(proc, language_pb2_grpc.LanguageRuntimeStub(channel), channel, port)

    def drain() -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        for chunk in iter(lambda: os.read(fd, 4096), b""):
            host.output.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield host
    finally:
        channel.close()
        proc.kill()
        proc.wait()
        reader.join(5)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A directory like the toolchain's bin: the exec shim (here the recorder) beside the host."""
    directory = tmp_path / "bin"
    directory.mkdir()
    (directory / "pulumi-language-python-exec").write_text(RECORDER)
    return directory


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A program directory with the project venv as its `venv`."""
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "__main__.py").write_text("value: int = 42\n")
    (directory / "venv").symlink_to(VENV)
    return directory


def info(project: Path, **options: Any) -> language_pb2.ProgramInfo:
    struct = struct_pb2.Struct()
    struct.update(options)
    return language_pb2.ProgramInfo(
        root_directory=str(project), program_directory=str(project), entry_point=".", options=struct
    )


PIP_VENV = {"toolchain": "pip", "virtualenv": "venv"}


def run_request(directory: Path, **fields: Any) -> language_pb2.RunRequest:
    options = fields.pop("options", PIP_VENV)
    return language_pb2.RunRequest(info=info(directory, **options), pwd=str(directory), program=".", **fields)


def recorded(tmp_path: Path) -> dict[str, Any]:
    return dict(json.loads((tmp_path / "record.json").read_text()))


# --- starting ---------------------------------------------------------------------------------


def test_prints_its_port_first_and_serves_the_runtime_and_health(bin_dir: Path, engine: tuple[FakeEngine, str]) -> None:
    with start_host(bin_dir, engine[1]) as host:
        assert host.stub.GetPluginInfo(empty_pb2.Empty()).version == f"v{pulumi_version()}"
        check = host.channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=lambda _: b"",
                                         response_deserializer=lambda data: data)
        assert check(None) == b"\x08\x01"  # SERVING


def test_takes_the_flags_the_cli_passes_and_refuses_others(bin_dir: Path, engine: tuple[FakeEngine, str]) -> None:
    # The CLI puts its logging and tracing flags before the engine address (buildPluginArguments).
    with start_host(bin_dir, "--logtostderr", "-v=9", "--tracing", "http://127.0.0.1:1", engine[1]) as host:
        assert host.stub.GetPluginInfo(empty_pb2.Empty()).version
    proc = subprocess.run([str(VENV / "bin" / "python"), str(HOST), "-nope", engine[1]],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "flag provided but not defined: -nope" in proc.stderr


def test_an_executor_missing_beside_the_host_is_an_error(tmp_path: Path, engine: tuple[FakeEngine, str]) -> None:
    proc = subprocess.run(
        [str(VENV / "bin" / "python"), str(HOST), f"--executable={tmp_path / 'pulumi-language-python'}", engine[1]],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert f"error: missing executor {tmp_path / 'pulumi-language-python-exec'}" in proc.stderr


# --- plugins ----------------------------------------------------------------------------------


def test_required_packages_are_the_plugins_of_the_installed_pulumi_packages(
    bin_dir: Path, project: Path, engine: tuple[FakeEngine, str]
) -> None:
    with start_host(bin_dir, engine[1]) as host:
        with pytest.raises(grpc.RpcError) as old:
            host.stub.GetRequiredPlugins(language_pb2.GetRequiredPluginsRequest(info=info(project, **PIP_VENV)))
        assert old.value.code() == grpc.StatusCode.UNIMPLEMENTED  # the CLI then asks GetRequiredPackages
        response = host.stub.GetRequiredPackages(language_pb2.GetRequiredPackagesRequest(info=info(project, **PIP_VENV)))
    packages = {(p.name, p.version, p.kind) for p in response.packages}
    assert packages == {("tls", f"v{plugin_version('tls')}", "resource"),
                        ("command", f"v{plugin_version('command')}", "resource")}


# --- running the program ----------------------------------------------------------------------


def test_run_starts_the_exec_shim_with_the_venv_python_arguments_and_config(
    tmp_path: Path, bin_dir: Path, project: Path, engine: tuple[FakeEngine, str]
) -> None:
    with start_host(bin_dir, engine[1], env={"RECORD": str(tmp_path / "record.json")}) as host:
        response = host.stub.Run(run_request(
            project, monitor_address="127.0.0.1:7", project="proj", stack="dev", dryRun=True, parallel=4,
            organization="org", args=["extra"], config={"proj:a": "b", "proj:html": "<&>"},
            configSecretKeys=["proj:html"],
        ))
    assert response.error == "" and not response.bail
    record = recorded(tmp_path)
    assert record["argv"] == [
        str(bin_dir / "pulumi-language-python-exec"),
        "--monitor", "127.0.0.1:7", "--engine", engine[1], "--project", "proj", "--root_directory", str(project),
        "--stack", "dev", "--pwd", str(project), "--dry_run", "true", "--parallel", "4", "--organization", "org",
        ".", "extra",
    ]
    assert record["executable"] == str(project / "venv" / "bin" / "python")
    env = record["env"]
    # Go's json.Marshal of the config map: sorted keys, HTML characters escaped.
    assert env["PULUMI_CONFIG"] == '{"proj:a":"b","proj:html":"\\u003c\\u0026\\u003e"}'
    assert env["PULUMI_CONFIG_SECRET_KEYS"] == '["proj:html"]'
    assert env["VIRTUAL_ENV"] == str(project / "venv")
    assert env["PATH"].startswith(f"{project / 'venv' / 'bin'}{os.pathsep}")


def test_run_without_config_sets_no_config_but_an_empty_secret_key_list(
    tmp_path: Path, bin_dir: Path, project: Path, engine: tuple[FakeEngine, str]
) -> None:
    with start_host(bin_dir, engine[1], env={"RECORD": str(tmp_path / "record.json"), "PULUMI_CONFIG": ""}) as host:
        host.stub.Run(run_request(project, project="proj", stack="dev"))
    record = recorded(tmp_path)
    assert "--dry_run" in record["argv"] and record["argv"][record["argv"].index("--dry_run") + 1] == "false"
    assert record["argv"][record["argv"].index("--parallel") + 1] == "0"
    assert "--monitor" not in record["argv"] and "--organization" not in record["argv"]
    assert record["env"]["PULUMI_CONFIG_SECRET_KEYS"] == "[]"
    assert record["env"]["PULUMI_CONFIG"] == ""  # not set by the host: the one it inherited


def test_run_reports_the_programs_exit(tmp_path: Path, bin_dir: Path, project: Path, engine: tuple[FakeEngine, str]) -> None:
    with start_host(bin_dir, engine[1], env={"RECORD": str(tmp_path / "record.json")}) as host:
        def outcome(code: int) -> tuple[str, bool]:
            response = host.stub.Run(run_request(project, project="proj", stack="dev", args=[f"exit={code}"]))
            return response.error, response.bail

        assert outcome(0) == ("", False)
        assert outcome(32) == ("", True)  # the shim has shown the error already: the CLI says no more
        assert outcome(3) == ("program exited with non-zero exit code: 3", False)


def test_an_interrupt_lets_the_running_program_finish_then_stops_the_host(
    tmp_path: Path, bin_dir: Path, project: Path, engine: tuple[FakeEngine, str]
) -> None:
    with start_host(bin_dir, engine[1], env={"RECORD": str(tmp_path / "record.json")}) as host:
        run = host.stub.Run.future(run_request(project, args=["sleep=3"]))
        deadline = time.monotonic() + 30
        while not (tmp_path / "record.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        host.proc.send_signal(signal.SIGINT)  # the CLI's Ctrl-C reaches the whole process group
        assert run.result(timeout=60).error == ""  # not killed: graceful stop
        assert host.proc.wait(timeout=30) == 0


def test_run_needs_the_engine_address_or_a_handshake(
    tmp_path: Path, bin_dir: Path, project: Path, engine: tuple[FakeEngine, str]
) -> None:
    with start_host(bin_dir, env={"RECORD": str(tmp_path / "record.json")}) as host:
        with pytest.raises(grpc.RpcError) as failure:
            host.stub.Run(run_request(project))
        assert failure.value.details() == "when debugging or running explicitly, must call Handshake before Run"
        host.stub.Handshake(language_pb2.LanguageHandshakeRequest(engine_address=engine[1]))
        assert host.stub.Run(run_request(project)).error == ""
    assert recorded(tmp_path)["argv"][1:5] == ["--engine", engine[1], "--root_directory", str(project)]


def test_run_refuses_a_virtualenv_that_is_not_there(
    tmp_path: Path, bin_dir: Path, project: Path, engine: tuple[FakeEngine, str]
) -> None:
    record = {"RECORD": str(tmp_path / "record.json")}
    with start_host(bin_dir, engine[1], env=record) as host, pytest.raises(grpc.RpcError) as failure:
        host.stub.Run(run_request(project, options={"toolchain": "pip", "virtualenv": "missing"}))
    assert failure.value.details().startswith(
        f"The 'virtualenv' option in Pulumi.yaml is set to \"missing\", but \"{project / 'missing'}\" doesn't exist; "
        "run the following commands to create the virtual environment and install dependencies into it:"
    )
    assert not (tmp_path / "record.json").exists()


def test_mypy_runs_first_and_a_type_error_stops_the_run_with_its_output(
    tmp_path: Path, bin_dir: Path, project: Path, engine: tuple[FakeEngine, str]
) -> None:
    options = {**PIP_VENV, "typechecker": "mypy"}
    with start_host(bin_dir, engine[1], env={"RECORD": str(tmp_path / "record.json")}) as host:
        assert host.stub.Run(run_request(project, options=options)).error == ""
        assert (tmp_path / "record.json").exists()
        (tmp_path / "record.json").unlink()
        (project / "broken.py").write_text('planted: int = "a string"\n')
        with pytest.raises(grpc.RpcError) as failure:
            host.stub.Run(run_request(project, options=options))
        time.sleep(0.5)  # the output reader
        output = host.stdout()
    assert failure.value.details() == "mypy failed: exit status 1"
    assert 'broken.py:1: error: Incompatible types in assignment (expression has type "str", variable has type "int")' in output
    assert not (tmp_path / "record.json").exists(), "the program ran despite the type error"


def test_a_typechecker_that_is_not_installed_is_named(
    bin_dir: Path, project: Path, engine: tuple[FakeEngine, str]
) -> None:
    with start_host(bin_dir, engine[1]) as host, pytest.raises(grpc.RpcError) as failure:
        host.stub.Run(run_request(project, options={**PIP_VENV, "typechecker": "pyright"}))
    assert failure.value.details() == (
        "The typechecker option is set to pyright, but pyright is not installed. Please add an entry for pyright "
        "to requirements.txt and run `venv/bin/pip install -r requirements.txt`"
    )


def test_bad_runtime_options_are_refused(bin_dir: Path, project: Path, engine: tuple[FakeEngine, str]) -> None:
    with start_host(bin_dir, engine[1]) as host:
        def refusal(**options: Any) -> str:
            with pytest.raises(grpc.RpcError) as failure:
                host.stub.Run(run_request(project, options=options))
            return str(failure.value.details())

        assert refusal(typechecker="black") == "unsupported typechecker option: black"
        assert refusal(toolchain="conda") == "unsupported toolchain option: conda"
        assert refusal(virtualenv=3) == "virtualenv option must be a string"


# --- dependencies ---------------------------------------------------------------------------


@pytest.mark.parametrize("terminal", [False, True])
def test_install_dependencies_streams_its_steps_and_fails_with_the_commands_error(
    tmp_path: Path, bin_dir: Path, engine: tuple[FakeEngine, str], terminal: bool
) -> None:
    # `python3 -m venv` (here a python that refuses) comes first; on a terminal, one pty carries
    # stdout and stderr, sent as stdout (rpcutil.MakeInstallDependenciesStreams).
    python = tmp_path / "python3"
    python.write_text("#!/bin/sh\necho 'venv: refused' >&2\nexit 3\n")
    python.chmod(0o755)
    project = tmp_path / "fresh"
    project.mkdir()
    with start_host(bin_dir, engine[1], env={"PULUMI_PYTHON_CMD": str(python)}) as host:
        stream = host.stub.InstallDependencies(language_pb2.InstallDependenciesRequest(
            info=info(project, **PIP_VENV), is_terminal=terminal))
        out, err = b"", b""
        with pytest.raises(grpc.RpcError) as failure:
            for message in stream:
                out, err = out + message.stdout, err + message.stderr
    assert failure.value.details() == f"creating virtual environment at '{project / 'venv'}': exit status 3"
    text = (out + err).replace(b"\r\n", b"\n").decode()
    assert text.startswith("Installing dependencies...\n\nCreating virtual environment...\n")
    assert "venv: refused" in text
    assert (err == b"") is terminal  # a terminal has one stream


# --- about, dependencies, prompts -------------------------------------------------------------


def test_about_names_the_venv_python(bin_dir: Path, project: Path, engine: tuple[FakeEngine, str]) -> None:
    with start_host(bin_dir, engine[1]) as host:
        about = host.stub.About(language_pb2.AboutRequest(info=info(project, **PIP_VENV)))
    assert about.executable == str(project / "venv" / "bin" / "python")
    assert about.version == ".".join(str(part) for part in sys.version_info[:3])


def test_program_dependencies_are_the_venvs_packages(bin_dir: Path, project: Path, engine: tuple[FakeEngine, str]) -> None:
    with start_host(bin_dir, engine[1]) as host:
        direct = host.stub.GetProgramDependencies(language_pb2.GetProgramDependenciesRequest(
            info=info(project, **PIP_VENV), transitiveDependencies=False))
        every = host.stub.GetProgramDependencies(language_pb2.GetProgramDependenciesRequest(
            info=info(project, **PIP_VENV), transitiveDependencies=True))
    direct_names = {d.name: d.version for d in direct.dependencies}
    every_names = {d.name: d.version for d in every.dependencies}
    assert direct_names["pulumi-tls"] == plugin_version("tls")  # PEP 503 names
    assert "pulumi" not in direct_names  # required by pulumi-tls
    assert every_names["pulumi"] == pulumi_version()


def test_runtime_option_prompts(bin_dir: Path, project: Path, engine: tuple[FakeEngine, str]) -> None:
    def prompts(**options: Any) -> list[tuple[str, str, list[str]]]:
        response = host.stub.RuntimeOptionsPrompts(language_pb2.RuntimeOptionsRequest(info=info(project, **options)))
        return [(p.key, p.default.stringValue, [c.stringValue for c in p.choices]) for p in response.prompts]

    with start_host(bin_dir, engine[1]) as host:
        [(key, default, choices)] = prompts()
        assert (key, default, choices[0], sorted(choices[1:])) == ("toolchain", "pip", "pip", ["poetry", "uv"])
        assert prompts(toolchain="pip") == [("virtualenv", "venv", ["venv"])]
        assert prompts(**PIP_VENV, typechecker="mypy") == []
