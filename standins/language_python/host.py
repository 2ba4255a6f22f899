"""Stand-in for the Pulumi Python language host `pulumi-language-python` (homelab-kubelet), NOT the real one.

The real language host is the Go module github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3,
which this project's machines cannot fetch. This stand-in serves the same gRPC `LanguageRuntime`
service (the protocol of the pinned Pulumi SDK, `pulumi.runtime.proto`) for the calls the CLI makes
for `preview`, `up`, `destroy`, `about`, `install` and plugin discovery, and runs the program the
way the real host does: the SDK's `pulumi-language-python-exec` shim (next to this host) with the
project's virtualenv python, `PULUMI_CONFIG` / `PULUMI_CONFIG_SECRET_KEYS` and the same arguments,
after the `typechecker` when one is set. Only the `pip` toolchain is implemented.

Run by the CLI as `pulumi-language-python [flags] ENGINE_ADDRESS` through the wrapper that
scripts/install-language-standin puts next to `pulumi`; it serves on 127.0.0.1 and prints the port
on stdout. See standins/language_python/README.md ("What differs from the real host").
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import enum
import importlib.metadata
import json
import os
import pty
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

import grpc  # type: ignore[import-untyped]
from google.protobuf import empty_pb2, json_format  # type: ignore[import-untyped]
from pulumi.runtime.proto import (
    engine_pb2,
    engine_pb2_grpc,
    language_pb2,
    language_pb2_grpc,
    plugin_pb2,
)

EXEC_NAME = "pulumi-language-python-exec"
CONFIG_VAR = "PULUMI_CONFIG"
CONFIG_SECRET_KEYS_VAR = "PULUMI_CONFIG_SECRET_KEYS"
# The exec shim's "an error was already shown to the user" exit code.
USER_ACTIONABLE_EXIT = 32
MAX_MESSAGE = 400 * 1024 * 1024  # rpcutil's limit
HEALTH_INTERVAL_SECONDS = 300.0  # rpcutil.Healthcheck(ctx, engine, 5*time.Minute, cancel)
GRACEFUL_STOP_SECONDS = 24 * 3600.0  # grpc's GracefulStop waits without a limit
MINIMUM_PYTHON = (3, 7, 0)
NOT_IMPLEMENTED = "not implemented by the homelab-kubelet stand-in"
# Packages known to have no plugin (the real host's packagesWithoutPlugins).
PACKAGES_WITHOUT_PLUGINS = frozenset({"pulumi-policy", "pulumi_policy", "pulumi-esc-sdk", "pulumi_esc_sdk"})
HELP = """\
pulumi-language-python (homelab-kubelet STAND-IN, not the real Pulumi language host)

Usage: pulumi-language-python [flags] [ENGINE_ADDRESS]

Started by the Pulumi CLI. Serves the LanguageRuntime gRPC service on 127.0.0.1 and prints its
port. Runs Python programs with pulumi-language-python-exec; toolchain pip only.
  -use-executor PATH   run PATH instead of the pulumi-language-python-exec next to this host
  -tracing, -virtualenv, -root, -typechecker, -toolchain: accepted (obsolete, as in the real host)
"""

# Go's flag package, as the real host's main() sees its command line: its own flags and glog's.
STRING_FLAGS = frozenset({
    "tracing", "virtualenv", "root", "typechecker", "toolchain", "use-executor",
    "v", "log_dir", "log_backtrace_at", "stderrthreshold", "vmodule",
})
BOOL_FLAGS = frozenset({"logtostderr", "alsologtostderr"})


class HostError(Exception):
    """A failure the real host returns as a Go error: the RPC fails with status UNKNOWN and this text."""


class FlagError(Exception):
    pass


class HelpRequested(Exception):
    pass


def parse_go_flags(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Go's flag.Parse: `-name value`, `-name=value`, `--name...`, bools alone; stops at the first
    non-flag argument or `--`. Returns the flags and the remaining (positional) arguments."""
    flags: dict[str, str] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        if len(arg) < 2 or not arg.startswith("-"):
            break
        if arg == "--":
            index += 1
            break
        name = arg[2:] if arg.startswith("--") else arg[1:]
        if not name or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name in ("h", "help"):
            raise HelpRequested
        if name in BOOL_FLAGS:
            flags[name] = "true" if value is None else value
        elif name in STRING_FLAGS:
            if value is None:
                index += 1
                if index >= len(argv):
                    raise FlagError(f"flag needs an argument: -{name}")
                value = argv[index]
            flags[name] = value
        else:
            raise FlagError(f"flag provided but not defined: -{name}")
        index += 1
    return flags, list(argv[index:])


# --- options and the pip toolchain (python/toolchain of the pinned sdk/v3: toolchain.go, pip.go) ---


class Toolchain(enum.Enum):
    AUTO = "auto"
    PIP = "pip"
    POETRY = "poetry"
    UV = "uv"


class TypeChecker(enum.Enum):
    NONE = ""
    MYPY = "mypy"
    PYRIGHT = "pyright"


@dataclasses.dataclass(frozen=True)
class PythonOptions:
    root: str
    program_dir: str
    virtualenv: str = ""
    typechecker: TypeChecker = TypeChecker.NONE
    toolchain: Toolchain = Toolchain.AUTO


def parse_options(root: str, program_dir: str, options: Mapping[str, Any]) -> PythonOptions:
    """Pulumi.yaml's `runtime.options`, checked as the real host's parseOptions does."""
    virtualenv = ""
    if "virtualenv" in options:
        if not isinstance(options["virtualenv"], str):
            raise HostError("virtualenv option must be a string")
        virtualenv = options["virtualenv"]
    typechecker = TypeChecker.NONE
    if "typechecker" in options:
        value = options["typechecker"]
        if not isinstance(value, str):
            raise HostError("typechecker option must be a string")
        if value not in ("mypy", "pyright"):
            raise HostError(f"unsupported typechecker option: {value}")
        typechecker = TypeChecker(value)
    toolchain = Toolchain.AUTO
    if "toolchain" in options:
        value = options["toolchain"]
        if not isinstance(value, str):
            raise HostError("toolchain option must be a string")
        if value not in ("pip", "poetry", "uv"):
            raise HostError(f"unsupported toolchain option: {value}")
        toolchain = Toolchain(value)
    return PythonOptions(root, program_dir, virtualenv, typechecker, toolchain)


def program_options(info: language_pb2.ProgramInfo) -> PythonOptions:
    return parse_options(info.root_directory, info.program_directory, json_format.MessageToDict(info.options))


def _searchup(directory: str, name: str) -> bool:
    current = Path(directory or ".").absolute()
    while True:
        if (current / name).exists():
            return True
        if current.parent == current:
            return False
        current = current.parent


def activate_virtualenv(environ: Mapping[str, str], venv: str) -> dict[str, str]:
    """toolchain.ActivateVirtualEnv: venv/bin first on PATH, VIRTUAL_ENV set, PYTHONHOME unset."""
    venv_bin = os.path.join(venv, "bin")
    result: dict[str, str] = {}
    has_path = False
    for key, value in environ.items():
        if key.upper() == "PATH":
            has_path = True
            result[key] = f"{venv_bin}{os.pathsep}{value}"
        elif key.upper() in ("PYTHONHOME", "VIRTUAL_ENV"):
            continue
        else:
            result[key] = value
    if not has_path:
        result["PATH"] = venv_bin
    result["VIRTUAL_ENV"] = venv
    return result


def python_command_path() -> str:
    """toolchain.CommandPath: PULUMI_PYTHON_CMD, else python3, else python, on PATH."""
    names = [os.environ["PULUMI_PYTHON_CMD"]] if os.environ.get("PULUMI_PYTHON_CMD") else ["python3", "python"]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise HostError(
        f"failed to locate any of {go_quote_list(names)} on your PATH. Have you installed Python 3.6 or greater?"
    )


def go_quote_list(items: Sequence[str]) -> str:
    return "[" + " ".join(json.dumps(item) for item in items) + "]"


def is_virtualenv(directory: str) -> bool:
    return Path(directory, "bin", "python").is_file()


def virtualenv_error(option: str, full_path: str) -> HostError:
    """toolchain.NewVirtualEnvError, word for word."""
    venv_python = os.path.join(full_path, "bin", "python")
    message = "doesn't exist" if not os.path.exists(full_path) else "doesn't appear to be a virtual environment"
    commands = (
        f"    1. python3 -m venv {full_path}\n"
        f"    2. {venv_python} -m pip install --upgrade pip setuptools wheel\n"
        f"    3. {venv_python} -m pip install -r requirements.txt\n"
    )
    return HostError(
        f"The 'virtualenv' option in Pulumi.yaml is set to {json.dumps(option)}, but {json.dumps(full_path)} "
        f"{message}; run the following commands to create the virtual environment and install dependencies "
        f"into it:\n\n{commands}\n\n"
        "For more information see: https://www.pulumi.com/docs/intro/languages/python/#virtual-environments"
    )


def normalize_package_name(name: str) -> str:
    """PEP 503, as toolchain.normalizePythonPackageName."""
    return re.sub(r"[-_.]+", "-", name.lower())


def exit_text(returncode: int) -> str:
    """Go's *exec.ExitError text."""
    if returncode < 0:
        try:
            return f"signal: {signal.Signals(-returncode).name.removeprefix('SIG').lower()}"
        except ValueError:
            return f"signal: {-returncode}"
    return f"exit status {returncode}"


Writer = Callable[[bytes], None]


@dataclasses.dataclass(frozen=True)
class Pip:
    """The `pip` toolchain: a virtualenv (absolute path, or "" for the ambient python)."""

    root: str
    virtualenv_option: str

    @property
    def virtualenv_path(self) -> str:
        if not self.virtualenv_option:
            return ""
        if os.path.isabs(self.virtualenv_option):
            return self.virtualenv_option
        return os.path.join(self.root, self.virtualenv_option)

    def command(self, *args: str) -> tuple[list[str], dict[str, str] | None]:
        """argv and environment (None: this process's) of `python ARGS`."""
        if not self.virtualenv_path:
            return [python_command_path(), *args], None
        return [os.path.join(self.virtualenv_path, "bin", "python"), *args], activate_virtualenv(
            os.environ, self.virtualenv_path
        )

    def output(self, *args: str) -> bytes:
        argv, env = self.command(*args)
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise HostError(f"calling `{' '.join(argv)}`: {exit_text(proc.returncode)}")
        return proc.stdout

    def list_packages(self, transitive: bool) -> list[tuple[str, str]]:
        """(normalized name, version) of each installed package, from `python -m pip list`."""
        args = ["-m", "pip", "list", "--format", "json"] + ([] if transitive else ["--not-required"])
        raw = _first_json(self.output(*args), f"python {' '.join(args)}")
        return [(normalize_package_name(str(p["name"])), str(p["version"])) for p in raw]

    def validate_venv(self) -> None:
        if self.virtualenv_option and not is_virtualenv(self.virtualenv_path):
            raise virtualenv_error(self.virtualenv_option, self.virtualenv_path)

    def ensure_venv(self, cwd: str, use_language_version_tools: bool, info: Writer, error: Writer) -> None:
        if not self.virtualenv_option or is_virtualenv(self.virtualenv_path):
            return
        path = Path(self.virtualenv_path)
        if path.exists() and not path.is_dir():
            raise HostError(
                f"the 'virtualenv' option in Pulumi.yaml is set to {json.dumps(self.virtualenv_path)} "
                "but it is not a directory"
            )
        if not path.exists() or not any(path.iterdir()):
            self.install_dependencies(cwd, use_language_version_tools, info, error)

    def install_dependencies(self, cwd: str, use_language_version_tools: bool, info: Writer, error: Writer) -> None:
        install_dependencies(cwd, self.virtualenv_path, use_language_version_tools, info, error)

    def about(self) -> tuple[str, str]:
        """(python executable, python version as semver) of the toolchain's python."""
        executable = self.output("-c", "import sys; print(sys.executable)").decode().strip()
        try:
            version = parse_python_version(self.output("--version").decode())
        except HostError:
            version = "0.0.0"
        return executable, version


def _first_json(output: bytes, what: str) -> list[dict[str, Any]]:
    """The first JSON value of `output` (pip -v may follow it with a trailer), as Go's json.Decoder."""
    try:
        value, _end = json.JSONDecoder().raw_decode(output.decode().lstrip())
    except ValueError as err:
        raise HostError(f"parsing `{what}` output: {err}") from err
    if not isinstance(value, list):
        raise HostError(f"parsing `{what}` output: not a list")
    return value


def parse_python_version(text: str) -> str:
    """toolchain.ParsePythonVersion, as a semver string."""
    text = text.strip().removeprefix("Python ")
    match = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:(a|b|rc|dev)(\d+))?", text)
    if not match:
        raise HostError(f"invalid Python version format: {json.dumps(text)}")
    major, minor, patch, pre, number = match.groups()
    version = f"{int(major)}.{int(minor)}.{int(patch or 0)}"
    if pre:
        version += {"a": "-alpha.", "b": "-beta.", "rc": "-rc.", "dev": "-dev."}[pre] + number
    return version


def resolve_toolchain(options: PythonOptions) -> Pip:
    toolchain = options.toolchain
    if toolchain is Toolchain.AUTO:
        if _searchup(options.program_dir, "uv.lock"):
            toolchain = Toolchain.UV
        elif _searchup(options.program_dir, "poetry.lock"):
            toolchain = Toolchain.POETRY
        else:
            toolchain = Toolchain.PIP
    if toolchain is not Toolchain.PIP:
        raise HostError(f"the {toolchain.value} toolchain is {NOT_IMPLEMENTED} (only pip is)")
    return Pip(options.root, options.virtualenv)


class _Streamer:
    """Copies a child's output to a writer as it comes, the way Go's exec copies into an io.Writer."""

    def __init__(self, stream: Any, *writers: Writer) -> None:
        self._thread = threading.Thread(target=self._copy, args=(stream, writers), daemon=True)
        self._thread.start()

    @staticmethod
    def _copy(stream: Any, writers: tuple[Writer, ...]) -> None:
        fd = stream.fileno()
        while True:
            chunk = os.read(fd, 32 * 1024)
            if not chunk:
                break
            for write in writers:
                write(chunk)
        stream.close()

    def join(self) -> None:
        self._thread.join()


def _run_streaming(
    argv: list[str], cwd: str, env: dict[str, str] | None, info: Writer, error: Writer
) -> tuple[int, bytes]:
    """Run with stdout to `info`, stderr to `error` (and kept): (exit code, stderr). A writer that
    is a terminal (`TerminalWriter`) is the child's stdout itself, as Go's exec hands an *os.File
    to the child; stderr always goes through a pipe (Go: an io.MultiWriter with the buffer)."""
    kept: list[bytes] = []
    terminal = info.fd if isinstance(info, TerminalWriter) else None
    proc = subprocess.Popen(argv, cwd=cwd or None, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE if terminal is None else terminal, stderr=subprocess.PIPE)
    out = _Streamer(proc.stdout, info) if terminal is None else None
    err = _Streamer(proc.stderr, error, kept.append)
    if out:
        out.join()
    err.join()
    return proc.wait(), b"".join(kept)


@dataclasses.dataclass(frozen=True)
class TerminalWriter:
    """A writer onto a terminal's file descriptor (the pty of `_Streams`)."""

    fd: int

    def __call__(self, data: bytes) -> None:
        os.write(self.fd, data)


def install_dependencies(cwd: str, venv: str, use_language_version_tools: bool, info: Writer, error: Writer) -> None:
    """toolchain.InstallDependencies (pip): `python -m venv`, then pip install --upgrade pip setuptools
    wheel, then pip install -r requirements.txt when there is one, output shown."""

    def say(message: str) -> None:
        info(f"{message}\n".encode())

    if use_language_version_tools and _searchup(cwd, ".python-version") and shutil.which("pyenv"):
        raise HostError(f"installing python with pyenv is {NOT_IMPLEMENTED}")
    if venv:
        say("Creating virtual environment...")
        if not os.path.isabs(venv):
            raise HostError(f"virtual environment path must be absolute: {venv}")
        proc = subprocess.run([python_command_path(), "-m", "venv", venv], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            if proc.stdout:
                error(proc.stdout + b"\n")
            raise HostError(f"creating virtual environment at '{venv}': {exit_text(proc.returncode)}")
        say("Finished creating virtual environment")

    def pip_install(what: str, *args: str) -> None:
        for attempt in range(3):
            base = [os.path.join(venv, "bin", "python")] if venv else [python_command_path()]
            argv = [*base, "-m", "pip", "install", *args]
            code, stderr = _run_streaming(argv, cwd, activate_virtualenv(os.environ, venv), info, error)
            if code == 0:
                return
            text = stderr.decode(errors="replace").strip()
            failure = f"{what} via '{' '.join(argv)}': {exit_text(code)}" + (f": {text}" if text else "")
            if attempt < 2 and "because the GET request got Content-Type" in text:
                error(f"Retrying ({attempt + 1}/3)...\n".encode())
                continue
            raise HostError(failure)

    say("Updating pip, setuptools, and wheel in virtual environment...")
    pip_install("updating pip, setuptools, and wheel", "--upgrade", "pip", "setuptools", "wheel")
    say("Finished updating")
    if not os.path.exists(os.path.join(cwd, "requirements.txt")):
        return
    say("Installing dependencies in virtual environment...")
    pip_install("installing dependencies", "-r", "requirements.txt")
    say("Finished installing dependencies")


# --- plugins of the installed packages (the real host's GetRequiredPackages) ---------------------


def determine_plugin_version(package_version: str) -> str:
    """determinePluginVersion: a PEP 440 version as a plugin (semver) version; ValueError if it cannot."""
    if not package_version:
        raise ValueError("cannot parse empty string")
    if not package_version.isascii():
        raise ValueError("not ascii")
    if re.match(r"^\d+!", package_version):
        raise ValueError("epochs are not supported")
    match = re.match(r"^(\d+(?:\.\d+)*)", package_version)
    segments = match.group(1).split(".") if match else []
    rest = package_version[match.end():] if match else package_version
    while len(segments) < 3:
        segments.append("0")
    pre = ""
    for tag, name in (("rc", "-rc."), ("a", "-alpha."), ("b", "-beta.")):
        if rest.startswith(tag):
            number = re.match(r"^\d*", rest[len(tag):])
            assert number is not None
            pre = name + number.group(0)
            rest = rest[len(tag) + number.end():]
            break
    post = ""
    if rest.startswith(".post"):
        number = re.match(r"^\d*", rest[5:])
        assert number is not None
        post = "+post" + number.group(0)
        rest = rest[5 + number.end():]
    dev = ""
    if rest.startswith(".dev"):
        number = re.match(r"^\d*", rest[4:])
        assert number is not None
        dev = ("" if post else "+") + "dev" + number.group(0)
        rest = rest[4 + number.end():]
    if rest:
        raise ValueError(f"'{rest}' still unparsed")
    return ".".join(segments) + pre + post + dev


def read_plugin_json(name: str, location: str) -> dict[str, Any] | None:
    """<location>/<module>/pulumi-plugin.json of a package (the module: the name with `_` for `-`)."""
    path = Path(location, name.replace("-", "_"), "pulumi-plugin.json")
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    if not isinstance(value, dict):
        raise HostError(f"{path}: not a JSON object")
    return value


def package_dependency(name: str, version: str, location: str) -> plugin_pb2.PackageDependency | None:
    """determinePackageDependency: the plugin a package asks for, None when it has none."""
    found = read_plugin_json(name, location)
    if found is not None and not found.get("resource", False):
        return None
    meta = found or {}
    parameterization = None
    if meta.get("parameterization"):
        p = meta["parameterization"]
        parameterization = plugin_pb2.PackageParameterization(
            name=str(p.get("name", "")), version=str(p.get("version", "")),
            value=base64.b64decode(p.get("value") or ""),
        )
    plugin_name = str(meta.get("name") or "") or name.removeprefix("pulumi-")
    plugin_version = str(meta.get("version") or "")
    if not plugin_version:
        try:
            plugin_version = determine_plugin_version(version)
        except ValueError:
            return None
    if not plugin_version.startswith("v"):
        plugin_version = "v" + plugin_version
    return plugin_pb2.PackageDependency(
        name=plugin_name, version=plugin_version, kind="resource", server=str(meta.get("server") or ""),
        parameterization=parameterization,
    )


def required_packages(pip: Pip) -> list[plugin_pb2.PackageDependency]:
    raw = _first_json(pip.output("-m", "pip", "list", "-v", "--format", "json"), "python -m pip list -v --format json")
    result = []
    for package in raw:
        name, version = normalize_package_name(str(package["name"])), str(package["version"])
        location = str(package.get("location", ""))
        try:
            has_json = read_plugin_json(name, location) is not None
        except (HostError, ValueError):
            has_json = False
        if not (has_json or name.startswith(("pulumi_", "pulumi-"))) or name in PACKAGES_WITHOUT_PLUGINS:
            continue
        dependency = package_dependency(name, version, location)
        if dependency is not None:
            result.append(dependency)
    return result


# --- config as the real host hands it to the exec shim -------------------------------------------


def go_json(value: Any) -> str:
    """Go's json.Marshal: keys sorted, compact, <, > and & (and U+2028/9) escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def exec_arguments(request: language_pb2.RunRequest, engine_address: str, tracing: str) -> list[str]:
    """constructArguments: the exec shim's flags (each only when not empty), the entry point, the args."""
    args: list[str] = []

    def add(name: str, value: str) -> None:
        if value:
            args.extend((f"--{name}", value))

    add("monitor", request.monitor_address)
    add("engine", engine_address)
    add("project", request.project)
    add("root_directory", request.info.root_directory)
    add("stack", request.stack)
    add("pwd", request.pwd)
    add("dry_run", "true" if request.dryRun else "false")
    add("parallel", str(request.parallel))
    add("tracing", tracing)
    add("organization", request.organization)
    args.append(request.info.entry_point)
    args.extend(request.args)
    return args


def config_environment(request: language_pb2.RunRequest) -> dict[str, str]:
    """PULUMI_CONFIG (only with config) and PULUMI_CONFIG_SECRET_KEYS (always; `[]` for none)."""
    env = {}
    if request.config:
        env[CONFIG_VAR] = go_json(dict(request.config))
    env[CONFIG_SECRET_KEYS_VAR] = go_json(list(request.configSecretKeys))
    return env


def prompt_choices(*executables: str) -> list[language_pb2.RuntimeOptionPrompt.RuntimeOptionValue]:
    """plugin.MakeExecutablePromptChoices: the ones on PATH first, the others "[not found]"."""
    found = [(name, shutil.which(name) is not None) for name in executables]
    found.sort(key=lambda item: not item[1])
    string = language_pb2.RuntimeOptionPrompt.STRING
    return [
        language_pb2.RuntimeOptionPrompt.RuntimeOptionValue(
            promptType=string, stringValue=name, displayName=name if ok else f"{name} [not found]"
        )
        for name, ok in found
    ]


# --- the service --------------------------------------------------------------------------------


def _abort(context: Any, error: HostError) -> NoReturn:
    context.abort(grpc.StatusCode.UNKNOWN, str(error))
    raise AssertionError("unreachable")  # context.abort raises


class EngineLog:
    """Ephemeral log messages to the engine, one stream (the real host's logWriter)."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", MAX_MESSAGE)])
        self._engine = engine_pb2_grpc.EngineStub(self._channel)
        self._stream = random.randint(0, 2**31 - 1)

    def writer(self, severity: int) -> Writer:
        def write(data: bytes) -> None:
            self._engine.Log(engine_pb2.LogRequest(
                message=data.decode(errors="replace"), urn="", ephemeral=True, streamId=self._stream,
                severity=severity,  # type: ignore[arg-type]
            ))

        return write

    def close(self) -> None:
        self._channel.close()


class _Streams:
    """rpcutil.MakeInstallDependenciesStreams: writers that send stdout/stderr messages; with a
    terminal, one pty for both, sent as stdout."""

    def __init__(self, send: Callable[[language_pb2.InstallDependenciesResponse], None], terminal: bool) -> None:
        self._send = send
        self._pty: tuple[int, int] | None = None
        self._reader: threading.Thread | None = None
        if terminal:
            master, slave = pty.openpty()
            self._pty = (master, slave)
            self._reader = threading.Thread(target=self._copy_pty, args=(master,), daemon=True)
            self._reader.start()

    def _copy_pty(self, master: int) -> None:
        while True:
            try:
                chunk = os.read(master, 32 * 1024)
            except OSError:  # EIO once the terminal side is closed
                break
            if not chunk:
                break
            self._send(language_pb2.InstallDependenciesResponse(stdout=chunk))

    @property
    def stdout(self) -> Writer:
        if self._pty:
            return TerminalWriter(self._pty[1])
        return lambda data: self._send(language_pb2.InstallDependenciesResponse(stdout=data))

    @property
    def stderr(self) -> Writer:
        if self._pty:  # stdout == stderr on a terminal
            return TerminalWriter(self._pty[1])
        return lambda data: self._send(language_pb2.InstallDependenciesResponse(stderr=data))

    def close(self) -> None:
        if self._pty:
            master, slave = self._pty
            os.close(slave)
            if self._reader:
                self._reader.join()
            os.close(master)
            self._pty = None


class LanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
    def __init__(self, executor: str, engine_address: str, tracing: str, stop: threading.Event) -> None:
        self.executor = executor
        self.engine_address = engine_address
        self.tracing = tracing
        self._stop = stop

    # -- connection --

    def Handshake(
        self, request: language_pb2.LanguageHandshakeRequest, context: Any
    ) -> language_pb2.LanguageHandshakeResponse:
        self.engine_address = request.engine_address
        start_healthcheck(self.engine_address, self._stop)
        return language_pb2.LanguageHandshakeResponse()

    def GetPluginInfo(self, request: empty_pb2.Empty, context: Any) -> plugin_pb2.PluginInfo:
        return plugin_pb2.PluginInfo(version=host_version())

    # -- plugins --

    def GetRequiredPlugins(self, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "method GetRequiredPlugins not implemented")

    def GetRequiredPackages(
        self, request: language_pb2.GetRequiredPackagesRequest, context: Any
    ) -> language_pb2.GetRequiredPackagesResponse:
        try:
            options = program_options(request.info)
            pip = resolve_toolchain(options)
            engine = EngineLog(self.engine_address)
            try:
                pip.ensure_venv(request.info.program_directory, False,
                                engine.writer(engine_pb2.INFO), engine.writer(engine_pb2.ERROR))
            finally:
                engine.close()
            validate_version(pip)
            return language_pb2.GetRequiredPackagesResponse(packages=required_packages(pip))
        except HostError as err:
            _abort(context, err)

    # -- running the program --

    def Run(self, request: language_pb2.RunRequest, context: Any) -> language_pb2.RunResponse:
        try:
            return self._run(request, context)
        except HostError as err:
            _abort(context, err)

    def _run(self, request: language_pb2.RunRequest, context: Any) -> language_pb2.RunResponse:
        if not self.engine_address:
            raise HostError("when debugging or running explicitly, must call Handshake before Run")
        options = program_options(request.info)
        if request.attach_debugger:
            return language_pb2.RunResponse(error=f"attaching a debugger is {NOT_IMPLEMENTED}")
        pip = resolve_toolchain(options)
        pip.validate_venv()
        argv, env = pip.command(self.executor, *exec_arguments(request, self.engine_address, self.tracing))
        env = {**(os.environ if env is None else env), **config_environment(request)}
        if options.typechecker is not TypeChecker.NONE:
            typecheck(pip, options, request.info.program_directory)
        try:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
        except OSError as err:
            return language_pb2.RunResponse(
                error=f"problem executing program (could not run language executor): {err}"
            )
        # The real host's exec.CommandContext: the program is killed when the RPC is cancelled.
        context.add_callback(lambda: None if proc.poll() is not None else proc.kill())
        code = proc.wait()
        if code == 0:
            return language_pb2.RunResponse()
        if code == USER_ACTIONABLE_EXIT:
            return language_pb2.RunResponse(bail=True)
        return language_pb2.RunResponse(error=f"program exited with non-zero exit code: {code if code > 0 else -1}")

    # -- dependencies --

    def InstallDependencies(
        self, request: language_pb2.InstallDependenciesRequest, context: Any
    ) -> Iterator[language_pb2.InstallDependenciesResponse]:
        messages: queue.Queue[language_pb2.InstallDependenciesResponse | BaseException | None] = queue.Queue()

        def work() -> None:
            streams = _Streams(messages.put, request.is_terminal)
            try:
                options = program_options(request.info)
                if request.is_plugin and options.toolchain is Toolchain.PIP and not options.virtualenv:
                    options = dataclasses.replace(options, virtualenv="venv")
                streams.stdout(b"Installing dependencies...\n\n")
                pip = resolve_toolchain(options)
                pip.install_dependencies(request.info.program_directory, request.use_language_version_tools,
                                         streams.stdout, streams.stderr)
                streams.stdout(b"Finished installing dependencies\n\n")
            except BaseException as err:
                streams.close()
                messages.put(err)
                return
            streams.close()
            messages.put(None)

        threading.Thread(target=work, daemon=True).start()
        while True:
            item = messages.get()
            if item is None:
                return
            if isinstance(item, HostError):
                _abort(context, item)
            if isinstance(item, BaseException):
                raise item
            yield item

    def GetProgramDependencies(
        self, request: language_pb2.GetProgramDependenciesRequest, context: Any
    ) -> language_pb2.GetProgramDependenciesResponse:
        try:
            pip = resolve_toolchain(program_options(request.info))
            try:
                packages = pip.list_packages(request.transitiveDependencies)
            except HostError as err:
                raise HostError(f"failed to get python dependencies: {err}") from err
        except HostError as err:
            _abort(context, err)
        return language_pb2.GetProgramDependenciesResponse(
            dependencies=[language_pb2.DependencyInfo(name=name, version=version) for name, version in packages]
        )

    def About(self, request: language_pb2.AboutRequest, context: Any) -> language_pb2.AboutResponse:
        try:
            options = PythonOptions("", "", toolchain=Toolchain.PIP)
            if request.HasField("info"):
                options = program_options(request.info)
            executable, version = resolve_toolchain(options).about()
        except HostError as err:
            _abort(context, err)
        return language_pb2.AboutResponse(executable=executable, version=version)

    def RuntimeOptionsPrompts(
        self, request: language_pb2.RuntimeOptionsRequest, context: Any
    ) -> language_pb2.RuntimeOptionsResponse:
        options = json_format.MessageToDict(request.info.options)
        string = language_pb2.RuntimeOptionPrompt.STRING
        prompts = []
        if "toolchain" not in options:
            pip = language_pb2.RuntimeOptionPrompt.RuntimeOptionValue(promptType=string, stringValue="pip",
                                                                     displayName="pip")
            prompts.append(language_pb2.RuntimeOptionPrompt(
                key="toolchain", description="The toolchain to use for installing dependencies and running the program",
                promptType=string, choices=[pip, *prompt_choices("poetry", "uv")], default=pip,
            ))
        elif options["toolchain"] == "pip" and "virtualenv" not in options:
            venv = language_pb2.RuntimeOptionPrompt.RuntimeOptionValue(promptType=string, stringValue="venv")
            prompts.append(language_pb2.RuntimeOptionPrompt(
                key="virtualenv", description="The virtualenv to use", promptType=string, choices=[venv],
                default=venv,
            ))
        return language_pb2.RuntimeOptionsResponse(prompts=prompts)

    # -- not implemented here (the CLI's preview/up/destroy/about/install do not call these) --

    def _not_implemented(self, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_IMPLEMENTED)

    Template = RunPlugin = GenerateProgram = GenerateProject = GeneratePackage = Pack = Link = Cancel = _not_implemented


def typecheck(pip: Pip, options: PythonOptions, program_dir: str) -> None:
    """`python -m mypy --exclude <venv, relative> <program dir>` in the program dir, output shown;
    a failure stops the run (the real host's Run, before the program)."""
    name = options.typechecker.value
    args = ["-m", name]
    if options.typechecker is TypeChecker.MYPY:
        if not pip.virtualenv_path:
            raise HostError(f"Rel: can't make  relative to {program_dir}")
        args += ["--exclude", os.path.relpath(pip.virtualenv_path, program_dir)]
    args.append(program_dir)
    argv, env = pip.command(*args)
    if name not in {package for package, _version in pip.list_packages(True)}:
        pip_command = f"{options.virtualenv}/bin/pip install -r requirements.txt"
        raise HostError(
            f"The typechecker option is set to {name}, but {name} is not installed. "
            f"Please add an entry for {name} to requirements.txt and run `{pip_command}`"
        )
    sys.stdout.flush()
    code = subprocess.run(argv, cwd=program_dir, env=env, stdin=subprocess.DEVNULL, check=False).returncode
    if code != 0:
        raise HostError(f"{name} failed: {exit_text(code)}")


def validate_version(pip: Pip) -> None:
    """Warn on stderr (shown by the CLI) when the python is older than Pulumi supports."""
    try:
        text = pip.output("--version").decode()
    except HostError as err:
        print(f"Failed to resolve python version command: {err}", file=sys.stderr, flush=True)
        return
    version = re.sub(r"-?rc\d+$", "", text.strip().removeprefix("Python ").strip())
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    if not match:
        print(f"Failed to parse python version: '{version}'", file=sys.stderr, flush=True)
        return
    if tuple(int(part) for part in match.groups()) < MINIMUM_PYTHON:
        print(f"Pulumi does not support Python {version}. Please upgrade to at least 3.7.0",
              file=sys.stderr, flush=True)


def host_version() -> str:
    """The version the host reports: that of the pinned Pulumi SDK (the CLI is built at it)."""
    return "v" + importlib.metadata.version("pulumi")


def start_healthcheck(engine_address: str, stop: threading.Event) -> None:
    """Every 5 minutes ask the engine's health service; stop serving when it does not answer."""
    channel = grpc.insecure_channel(engine_address)
    check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=lambda _: b"", response_deserializer=lambda data: data)

    def loop() -> None:
        while not stop.wait(HEALTH_INTERVAL_SECONDS):
            try:
                check(None, timeout=60)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNIMPLEMENTED:
                    stop.set()
                    return

    threading.Thread(target=loop, daemon=True).start()


def _health_handler() -> Any:
    """grpc.health.v1.Health/Check answering SERVING, as rpcutil registers beside each service."""
    def check(request: bytes, context: Any) -> bytes:
        return b"\x08\x01"

    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=lambda data: data, response_serializer=lambda data: data),
    })


def fail(message: str, code: int = 1) -> NoReturn:
    """cmdutil.Exit: an error line on stderr, then exit."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def main(argv: list[str]) -> int:
    # The wrapper passes its own path first: the real host finds the exec shim next to itself.
    executable = str(Path(__file__).resolve())
    if argv and argv[0].startswith("--executable="):
        executable = argv.pop(0).split("=", 1)[1]
    try:
        flags, args = parse_go_flags(argv)
    except HelpRequested:
        sys.stderr.write(HELP)
        return 0
    except FlagError as err:
        sys.stderr.write(f"{err}\n{HELP}")
        return 2
    executor = flags.get("use-executor", "")
    if not executor:
        executor = os.path.join(os.path.dirname(executable), EXEC_NAME)
        if not os.path.exists(executor):
            fail(f"missing executor {executor}: stat {executor}: no such file or directory")
    engine_address = args[0] if args else ""
    stop = threading.Event()

    def interrupted(*_: object) -> None:
        # signal.NotifyContext: the first interrupt stops serving, a second one kills (the default).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        stop.set()

    signal.signal(signal.SIGINT, interrupted)
    if engine_address:
        start_healthcheck(engine_address, stop)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[("grpc.max_receive_message_length", MAX_MESSAGE)],
    )
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(
        LanguageHost(executor, engine_address, flags.get("tracing", ""), stop), server
    )
    server.add_generic_rpc_handlers((_health_handler(),))
    try:
        port = server.add_insecure_port("127.0.0.1:0")
    except RuntimeError as err:
        fail(f"could not start language host RPC server: {err}")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    stop.wait()
    # GracefulStop: no new calls, the ones running (a Run whose program got the interrupt too) finish.
    server.stop(grace=GRACEFUL_STOP_SECONDS).wait()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
