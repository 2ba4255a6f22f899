"""Stand-in for the pulumi-command resource provider plugin (homelab-kubelet), NOT the real provider.

The real `pulumi-resource-command` plugin is built from github.com/pulumi/pulumi-command/provider,
which this project's machines cannot fetch. This stand-in implements just enough of it for the
program to run through the real Pulumi engine against real SSH hosts: the `command:remote:Command`
resource (Check/Diff/Create/Update/Delete/Read), over SSH with paramiko. Every other resource type
or function fails with "not implemented by the homelab-kubelet stand-in".

Run by the engine as `pulumi-resource-command <engine address> [flags]`: it serves the gRPC
ResourceProvider service on 127.0.0.1 and prints the port on stdout. See standins/command/README.md.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import secrets
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

# No type stubs for these in the venv (types-* packages are not pinned in requirements-dev.txt).
import grpc  # type: ignore[import-untyped]
import paramiko  # type: ignore[import-untyped]
from google.protobuf import empty_pb2, json_format, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc, plugin_pb2, provider_pb2, provider_pb2_grpc

HERE = Path(__file__).resolve().parent
SCHEMA_PATH = HERE / "command.schema.json"
RESOURCE_TYPE = "command:remote:Command"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
NOT_IMPLEMENTED = "not implemented by the homelab-kubelet stand-in"
HELP = """\
pulumi-resource-command (homelab-kubelet STAND-IN, not the real pulumi-command provider)

Usage: pulumi-resource-command ENGINE_ADDRESS [engine flags...]

Started by the Pulumi engine. Serves the ResourceProvider gRPC service on 127.0.0.1 and prints
its port. Implements only command:remote:Command, over SSH with paramiko.
"""

CONNECTION_STRINGS = ("host", "user", "password", "privateKey", "privateKeyPassword", "hostKey", "agentSocketPath")
CONNECTION_INTS = ("dialErrorLimit", "perDialTimeout")
CONNECTION_DEFAULTS: dict[str, Any] = {"port": 22, "user": "root", "dialErrorLimit": 10, "perDialTimeout": 15}
INPUT_STRINGS = ("create", "update", "delete", "stdin")
INPUTS = (*INPUT_STRINGS, "environment", "logging", "connection", "addPreviousOutputInEnv", "triggers")
LOGGING = ("stdout", "stderr", "stdoutAndStderr", "none")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

log = logging.getLogger("command-standin")


class ProviderError(Exception):
    """A failure reported to the engine as the RPC's error message."""


def plugin_version() -> str:
    """The plugin version that the installed pulumi_command package requests (its pulumi-plugin.json)."""
    spec = importlib.util.find_spec("pulumi_command")
    if spec is None or not spec.submodule_search_locations:
        return "1.2.1"
    meta = json.loads((Path(spec.submodule_search_locations[0]) / "pulumi-plugin.json").read_text())
    return str(meta["version"])


# --- values -------------------------------------------------------------------------------------


def to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return unwrap_secrets(json_format.MessageToDict(struct))  # type: ignore[no-any-return]


def to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def unwrap_secrets(value: Any) -> Any:
    """Secrets are stripped by the engine (acceptSecrets=false); unwrap any that still arrive."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return unwrap_secrets(value.get("value"))
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def is_unknown(value: Any) -> bool:
    return isinstance(value, str) and value == UNKNOWN


def contains_unknown(value: Any) -> bool:
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_unknown(v) for v in value)
    return is_unknown(value)


# --- Check --------------------------------------------------------------------------------------


def _type_failure(path: str, value: Any, kind: str) -> str | None:
    if is_unknown(value):
        return None
    ok = {
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "integer": isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer(),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
    }[kind]
    return None if ok else f"{path} must be of type {kind}, got {type(value).__name__}: {value!r}"


def check_connection(path: str, conn: Any, allow_proxy: bool) -> tuple[Any, list[tuple[str, str]]]:
    failures: list[tuple[str, str]] = []
    if is_unknown(conn):
        return conn, failures
    if not isinstance(conn, dict):
        return conn, [(path, f"{path} must be of type object")]
    known = {*CONNECTION_STRINGS, *CONNECTION_INTS, "port", *(("proxy",) if allow_proxy else ())}
    for key in conn:
        if key not in known:
            failures.append((f"{path}.{key}", f"unknown property {path}.{key} (not in the command:remote schema)"))
    if "host" not in conn or conn["host"] is None:
        failures.append((f"{path}.host", f"missing required property {path}.host"))
    for key in CONNECTION_STRINGS:
        if conn.get(key) is not None and (msg := _type_failure(f"{path}.{key}", conn[key], "string")):
            failures.append((f"{path}.{key}", msg))
    for key in CONNECTION_INTS:
        if conn.get(key) is not None and (msg := _type_failure(f"{path}.{key}", conn[key], "integer")):
            failures.append((f"{path}.{key}", msg))
    if conn.get("port") is not None and (msg := _type_failure(f"{path}.port", conn["port"], "number")):
        failures.append((f"{path}.port", msg))
    out = {k: v for k, v in conn.items() if v is not None}
    for key, default in CONNECTION_DEFAULTS.items():
        out.setdefault(key, default)
    if allow_proxy and out.get("proxy") is not None:
        out["proxy"], more = check_connection(f"{path}.proxy", out["proxy"], allow_proxy=False)
        failures.extend(more)
    return out, failures


def check_inputs(news: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Validates news against the schema's command:remote:Command inputs; applies the defaults."""
    failures: list[tuple[str, str]] = []
    inputs = {k: v for k, v in news.items() if v is not None and not k.startswith("__")}
    for key in inputs:
        if key not in INPUTS:
            failures.append((key, f"unknown property {key!r} (not an input of {RESOURCE_TYPE})"))
    if "connection" not in inputs:
        failures.append(("connection", "missing required property connection"))
    else:
        inputs["connection"], more = check_connection("connection", inputs["connection"], allow_proxy=True)
        failures.extend(more)
    for key in INPUT_STRINGS:
        if key in inputs and (msg := _type_failure(key, inputs[key], "string")):
            failures.append((key, msg))
    if "logging" in inputs and not is_unknown(inputs["logging"]) and inputs["logging"] not in LOGGING:
        failures.append(("logging", f"logging must be one of {', '.join(LOGGING)}; got {inputs['logging']!r}"))
    if "addPreviousOutputInEnv" in inputs and (
        msg := _type_failure("addPreviousOutputInEnv", inputs["addPreviousOutputInEnv"], "boolean")
    ):
        failures.append(("addPreviousOutputInEnv", msg))
    if "triggers" in inputs and (msg := _type_failure("triggers", inputs["triggers"], "array")):
        failures.append(("triggers", msg))
    env = inputs.get("environment")
    if env is not None and not is_unknown(env):
        if not isinstance(env, dict):
            failures.append(("environment", "environment must be of type object"))
        else:
            for name, value in env.items():
                if not ENV_NAME.match(name):
                    failures.append((f"environment.{name}", f"environment name {name!r} is not a shell variable name"))
                if msg := _type_failure(f"environment.{name}", value, "string"):
                    failures.append((f"environment.{name}", msg))
    inputs.setdefault("addPreviousOutputInEnv", True)
    return inputs, failures


# --- Diff ---------------------------------------------------------------------------------------


def diff_inputs(olds: dict[str, Any], news: dict[str, Any], ignore: Iterable[str]) -> provider_pb2.DiffResponse:
    """pulumi-command 1.x semantics: triggers → replace unless `update` is set; anything else → update."""
    ignored = set(ignore)
    detailed: dict[str, provider_pb2.PropertyDiff] = {}
    changed_top: list[str] = []
    has_update = news.get("update") is not None
    for key in INPUTS:
        if key in ignored:
            continue
        old, new = olds.get(key), news.get(key)
        if old == new and not contains_unknown(new):
            continue
        changed_top.append(key)
        replace = key == "triggers" and not has_update
        if isinstance(old, dict) and isinstance(new, dict):
            for sub in sorted(set(old) | set(new)):
                if old.get(sub) != new.get(sub) or contains_unknown(new.get(sub)):
                    detailed[f"{key}.{sub}"] = _property_diff(old.get(sub), new.get(sub), replace)
        else:
            detailed[key] = _property_diff(old, new, replace)
    if not changed_top:
        return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE, hasDetailedDiff=True)
    replaces = ["triggers"] if "triggers" in changed_top and not has_update else []
    return provider_pb2.DiffResponse(
        changes=provider_pb2.DiffResponse.DIFF_SOME,
        diffs=changed_top,
        replaces=replaces,
        deleteBeforeReplace=False,
        detailedDiff=detailed,
        hasDetailedDiff=True,
    )


def _property_diff(old: Any, new: Any, replace: bool) -> provider_pb2.PropertyDiff:
    kind = provider_pb2.PropertyDiff
    if old is None:
        k = kind.ADD_REPLACE if replace else kind.ADD
    elif new is None:
        k = kind.DELETE_REPLACE if replace else kind.DELETE
    else:
        k = kind.UPDATE_REPLACE if replace else kind.UPDATE
    return provider_pb2.PropertyDiff(kind=k, inputDiff=True)


# --- SSH ----------------------------------------------------------------------------------------


def fingerprint(key_type: str, key_b64: str) -> str:
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return f"{key_type} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


def load_private_key(text: str, password: str | None) -> paramiko.PKey:
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text), password=password)
        except paramiko.PasswordRequiredException as err:
            raise ProviderError(f"connection.privateKey is encrypted and needs privateKeyPassword: {err}") from err
        except (paramiko.SSHException, ValueError) as err:
            errors.append(f"{cls.__name__}: {err}")
    raise ProviderError("could not parse connection.privateKey (" + "; ".join(errors) + ")")


class _SocketAgent(paramiko.agent.AgentSSH):  # type: ignore[misc]
    """The SSH agent at an explicit socket path (connection.agentSocketPath)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        self._connect(sock)


class HostKeyMismatch(ProviderError):
    pass


def _open_transport(conn: dict[str, Any], sock: Any) -> paramiko.Transport:
    host, port = str(conn["host"]), int(conn.get("port", 22))
    timeout = float(conn.get("perDialTimeout", 15)) or None
    if sock is None:
        sock = socket.create_connection((host, port), timeout=timeout)
    transport = paramiko.Transport(sock)
    expected = str(conn.get("hostKey") or "").split()
    if expected:
        wanted = ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if expected[0] == "ssh-rsa" else [expected[0]]
        options = transport.get_security_options()
        available = [k for k in wanted if k in options.key_types]
        if available:
            options.key_types = available
    try:
        transport.start_client(timeout=timeout)
    except BaseException:
        transport.close()
        raise
    if expected:
        server_key = transport.get_remote_server_key()
        if len(expected) < 2 or (server_key.get_name(), server_key.get_base64()) != (expected[0], expected[1]):
            transport.close()
            want = fingerprint(expected[0], expected[1]) if len(expected) >= 2 else repr(conn["hostKey"])
            raise HostKeyMismatch(
                f"ssh: host key mismatch for {host}:{port}: connection.hostKey is {want}, "
                f"the server presented {fingerprint(server_key.get_name(), server_key.get_base64())}"
            )
    _authenticate(transport, conn)
    return transport


def _authenticate(transport: paramiko.Transport, conn: dict[str, Any]) -> None:
    user = str(conn.get("user", "root"))
    tried: list[str] = []
    if conn.get("privateKey"):
        key = load_private_key(str(conn["privateKey"]), conn.get("privateKeyPassword"))
        try:
            transport.auth_publickey(user, key)
            return
        except paramiko.AuthenticationException as err:
            tried.append(f"publickey ({err})")
    if conn.get("password"):
        try:
            transport.auth_password(user, str(conn["password"]))
            return
        except paramiko.AuthenticationException as err:
            tried.append(f"password ({err})")
    agent_path = conn.get("agentSocketPath") or os.environ.get("SSH_AUTH_SOCK")
    if agent_path:
        try:
            agent = _SocketAgent(str(agent_path))
        except OSError as err:
            tried.append(f"agent at {agent_path} ({err})")
        else:
            for key in agent.get_keys():
                try:
                    transport.auth_publickey(user, key)
                    return
                except paramiko.AuthenticationException:
                    continue
            tried.append(f"agent at {agent_path} ({len(agent.get_keys())} keys)")
    transport.close()
    if not tried:
        raise ProviderError("ssh: no authentication method: set connection.privateKey, password or an SSH agent")
    raise ProviderError(f"ssh: unable to authenticate as {user!r}, attempted methods: {', '.join(tried)}")


def dial(conn: dict[str, Any]) -> tuple[paramiko.Transport, list[paramiko.Transport]]:
    """Connects (through connection.proxy if set), retrying up to dialErrorLimit times."""
    limit = int(conn.get("dialErrorLimit", 10))
    attempt = 0
    while True:
        attempt += 1
        chain: list[paramiko.Transport] = []
        try:
            sock = None
            proxy = conn.get("proxy")
            if proxy:
                bastion = _open_transport(proxy, None)
                chain.append(bastion)
                sock = bastion.open_channel(
                    "direct-tcpip",
                    (str(conn["host"]), int(conn.get("port", 22))),
                    ("127.0.0.1", 0),
                    timeout=float(conn.get("perDialTimeout", 15)) or None,
                )
            return _open_transport(conn, sock), chain
        except (ProviderError, paramiko.BadAuthenticationType):
            for t in chain:
                t.close()
            raise
        except (OSError, paramiko.SSHException, EOFError) as err:
            for t in chain:
                t.close()
            if limit >= 0 and attempt >= limit:
                raise ProviderError(
                    f"ssh: failed to dial {conn['host']}:{int(conn.get('port', 22))} after {attempt} attempts: "
                    f"{type(err).__name__}: {err}"
                ) from err
            log.info("dial attempt %d failed: %s", attempt, err)
            time.sleep(min(2 ** (attempt - 1), 5))


def env_prefix(env: dict[str, str]) -> str:
    """`export NAME='value'` lines; the login shell parses them (SSH env needs AcceptEnv)."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def run_remote(
    conn: dict[str, Any], command: str, stdin: str | None, env: dict[str, str], on_line: Callable[[str, str], None]
) -> tuple[int, str, str]:
    transport, chain = dial(conn)
    try:
        chan = transport.open_session(timeout=float(conn.get("perDialTimeout", 15)) or None)
        chan.exec_command(env_prefix(env) + command)
        out_parts: list[str] = []
        err_parts: list[str] = []

        def pump(stream: Any, parts: list[str], name: str) -> None:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace")
                parts.append(line)
                on_line(name, line.rstrip("\n"))

        readers = [
            threading.Thread(target=pump, args=(chan.makefile("rb"), out_parts, "stdout"), daemon=True),
            threading.Thread(target=pump, args=(chan.makefile_stderr("rb"), err_parts, "stderr"), daemon=True),
        ]
        for t in readers:
            t.start()
        if stdin is not None:
            chan.sendall(stdin.encode())
        chan.shutdown_write()
        status = chan.recv_exit_status()
        for t in readers:
            t.join()
        return status, "".join(out_parts), "".join(err_parts)
    finally:
        transport.close()
        for t in chain:
            t.close()


# --- the service ----------------------------------------------------------------------------------


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable")


class CommandStandIn(provider_pb2_grpc.ResourceProviderServicer):
    """ResourceProvider for command:remote:Command only (a homelab-kubelet stand-in)."""

    def __init__(self, engine_address: str | None) -> None:
        self.version = plugin_version()
        self.engine: engine_pb2_grpc.EngineStub | None = None
        if engine_address:
            self._connect_engine(engine_address)

    def _connect_engine(self, address: str) -> None:
        try:
            self.engine = engine_pb2_grpc.EngineStub(grpc.insecure_channel(address))
        except Exception as err:  # best effort: logging only
            log.warning("no engine connection at %s: %s", address, err)

    def _log(self, urn: str, message: str, severity: int = engine_pb2.INFO) -> None:
        if self.engine is None:
            return
        try:
            self.engine.Log(engine_pb2.LogRequest(severity=severity, message=message, urn=urn, ephemeral=False))  # type: ignore[arg-type]
        except grpc.RpcError as err:
            log.debug("engine Log failed: %s", err)

    def _require_type(self, urn: str, type_: str, context: grpc.ServicerContext) -> None:
        kind = type_ or (urn.split("::")[2].split("$")[-1] if urn.count("::") >= 3 else "")
        if kind != RESOURCE_TYPE:
            _abort(context, grpc.StatusCode.UNIMPLEMENTED, f"resource type {kind!r} is {NOT_IMPLEMENTED}")

    # plumbing

    def Handshake(
        self, request: provider_pb2.ProviderHandshakeRequest, context: grpc.ServicerContext
    ) -> provider_pb2.ProviderHandshakeResponse:
        if self.engine is None and request.engine_address:
            self._connect_engine(request.engine_address)
        return provider_pb2.ProviderHandshakeResponse(
            accept_secrets=False, accept_resources=False, accept_outputs=False
        )

    def GetPluginInfo(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> plugin_pb2.PluginInfo:
        return plugin_pb2.PluginInfo(version=self.version)

    def GetSchema(
        self, request: provider_pb2.GetSchemaRequest, context: grpc.ServicerContext
    ) -> provider_pb2.GetSchemaResponse:
        return provider_pb2.GetSchemaResponse(schema=SCHEMA_PATH.read_text())

    def Cancel(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    def GetMapping(
        self, request: provider_pb2.GetMappingRequest, context: grpc.ServicerContext
    ) -> provider_pb2.GetMappingResponse:
        return provider_pb2.GetMappingResponse(provider="", data=b"")

    def GetMappings(
        self, request: provider_pb2.GetMappingsRequest, context: grpc.ServicerContext
    ) -> provider_pb2.GetMappingsResponse:
        return provider_pb2.GetMappingsResponse(providers=[])

    def CheckConfig(
        self, request: provider_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> provider_pb2.CheckResponse:
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request: provider_pb2.DiffRequest, context: grpc.ServicerContext) -> provider_pb2.DiffResponse:
        return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)

    def Configure(
        self, request: provider_pb2.ConfigureRequest, context: grpc.ServicerContext
    ) -> provider_pb2.ConfigureResponse:
        return provider_pb2.ConfigureResponse(acceptSecrets=False, supportsPreview=True, acceptResources=False)

    def Invoke(self, request: provider_pb2.InvokeRequest, context: grpc.ServicerContext) -> provider_pb2.InvokeResponse:
        _abort(context, grpc.StatusCode.UNIMPLEMENTED, f"function {request.tok!r} is {NOT_IMPLEMENTED}")

    def Call(self, request: provider_pb2.CallRequest, context: grpc.ServicerContext) -> provider_pb2.CallResponse:
        _abort(context, grpc.StatusCode.UNIMPLEMENTED, f"method {request.tok!r} is {NOT_IMPLEMENTED}")

    def Construct(
        self, request: provider_pb2.ConstructRequest, context: grpc.ServicerContext
    ) -> provider_pb2.ConstructResponse:
        _abort(context, grpc.StatusCode.UNIMPLEMENTED, f"component {request.type!r} is {NOT_IMPLEMENTED}")

    # command:remote:Command

    def Check(self, request: provider_pb2.CheckRequest, context: grpc.ServicerContext) -> provider_pb2.CheckResponse:
        self._require_type(request.urn, request.type, context)
        inputs, failures = check_inputs(to_dict(request.news))
        return provider_pb2.CheckResponse(
            inputs=to_struct(inputs),
            failures=[provider_pb2.CheckFailure(property=p, reason=r) for p, r in failures],
        )

    def Diff(self, request: provider_pb2.DiffRequest, context: grpc.ServicerContext) -> provider_pb2.DiffResponse:
        self._require_type(request.urn, request.type, context)
        olds = to_dict(request.old_inputs) if request.HasField("old_inputs") and request.old_inputs.fields else None
        if olds is None:
            olds = {k: v for k, v in to_dict(request.olds).items() if k not in ("stdout", "stderr")}
        return diff_inputs(olds, to_dict(request.news), request.ignoreChanges)

    def Create(self, request: provider_pb2.CreateRequest, context: grpc.ServicerContext) -> provider_pb2.CreateResponse:
        self._require_type(request.urn, request.type, context)
        inputs = to_dict(request.properties)
        if request.preview:
            return provider_pb2.CreateResponse(
                id="", properties=to_struct({**inputs, "stdout": UNKNOWN, "stderr": UNKNOWN})
            )
        outputs = self._run(context, request.urn, inputs, inputs.get("create"), previous=None)
        return provider_pb2.CreateResponse(
            id=f"{request.name or 'command'}{secrets.token_hex(4)}", properties=to_struct(outputs)
        )

    def Update(self, request: provider_pb2.UpdateRequest, context: grpc.ServicerContext) -> provider_pb2.UpdateResponse:
        self._require_type(request.urn, request.type, context)
        news, olds = to_dict(request.news), to_dict(request.olds)
        if request.preview:
            return provider_pb2.UpdateResponse(properties=to_struct({**news, "stdout": UNKNOWN, "stderr": UNKNOWN}))
        command = news.get("update") if news.get("update") is not None else news.get("create")
        outputs = self._run(context, request.urn, news, command, previous=olds)
        return provider_pb2.UpdateResponse(properties=to_struct(outputs))

    def Delete(self, request: provider_pb2.DeleteRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        self._require_type(request.urn, request.type, context)
        props = to_dict(request.properties)
        if props.get("delete"):
            self._run(context, request.urn, {**props, "stdin": None}, props["delete"], previous=props)
        return empty_pb2.Empty()

    def Read(self, request: provider_pb2.ReadRequest, context: grpc.ServicerContext) -> provider_pb2.ReadResponse:
        self._require_type(request.urn, request.type, context)
        return provider_pb2.ReadResponse(id=request.id, properties=request.properties, inputs=request.inputs)

    def _run(
        self,
        context: grpc.ServicerContext,
        urn: str,
        inputs: dict[str, Any],
        command: Any,
        previous: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Runs command on the host; returns inputs + stdout/stderr, or aborts the RPC with the failure."""
        if not isinstance(command, str) or not command:
            return {**inputs, "stdout": "", "stderr": ""}
        logging_mode = inputs.get("logging") or "stdoutAndStderr"
        env: dict[str, str] = {}
        if previous is not None and inputs.get("addPreviousOutputInEnv", True):
            env["PULUMI_COMMAND_STDOUT"] = str(previous.get("stdout") or "")
            env["PULUMI_COMMAND_STDERR"] = str(previous.get("stderr") or "")
        env.update({str(k): str(v) for k, v in (inputs.get("environment") or {}).items()})

        def on_line(stream: str, line: str) -> None:
            if logging_mode in (stream, "stdoutAndStderr"):
                self._log(urn, line)

        stdin = inputs.get("stdin")
        try:
            status, stdout, stderr = run_remote(
                inputs["connection"], command, stdin if isinstance(stdin, str) else None, env, on_line
            )
        except ProviderError as err:
            _abort(context, grpc.StatusCode.UNKNOWN, str(err))
        except Exception as err:
            _abort(context, grpc.StatusCode.UNKNOWN, f"ssh: {type(err).__name__}: {err}")
        stdout, stderr = stdout.removesuffix("\n"), stderr.removesuffix("\n")
        if status != 0:
            what = (
                f"Process exited with status {status}"
                if status >= 0
                else "Process exited without exit status or exit signal"
            )
            if logging_mode == "none":
                message = f"{what} (stdout and stderr not shown: logging is none)"
            else:
                message = f"{what}\nstdout:\n{stdout}\nstderr:\n{stderr}"
            _abort(context, grpc.StatusCode.UNKNOWN, message)
        return {**inputs, "stdout": stdout, "stderr": stderr}


def serve(argv: list[str]) -> None:
    if any(a in ("-h", "--help") for a in argv):
        sys.stdout.write(HELP)
        return
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="command-standin: %(message)s")
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    engine_address = next((a for a in argv if not a.startswith("-")), None)
    options = [
        ("grpc.max_receive_message_length", 400 * 1024 * 1024),
        ("grpc.max_send_message_length", 400 * 1024 * 1024),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=options)
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(CommandStandIn(engine_address), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    server.wait_for_termination()


if __name__ == "__main__":
    serve(sys.argv[1:])
