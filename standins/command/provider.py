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
import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import queue
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar

# No type stubs for these in the venv (types-* packages are not pinned in requirements-dev.txt).
import grpc  # type: ignore[import-untyped]
import paramiko  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import hashes
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
                if msg := _type_failure(f"environment.{name}", value, "string"):
                    failures.append((f"environment.{name}", msg))
    inputs.setdefault("addPreviousOutputInEnv", True)
    return inputs, failures


# --- Diff ---------------------------------------------------------------------------------------

# Inputs whose schema says replaceOnChanges. pulumi-go-provider's infer diff applies it to each
# detailed-diff key as a whole, so only a change of the whole `triggers` value (set or unset)
# replaces here; element changes (`triggers[0]`) are replaces because the SDK registers every
# Command with replace_on_changes=["triggers[*]"] and the engine matches that.
REPLACE_ON_CHANGES = frozenset({"triggers"})
IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
PATH_PART = re.compile(r'\.?([A-Za-z_$][A-Za-z0-9_$]*)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


def _key(prefix: str, name: str) -> str:
    """A property path element as the engine spells it: `a.b`, `a["b-c"]`."""
    if IDENTIFIER.match(name):
        return f"{prefix}.{name}" if prefix else name
    return f"{prefix}[{json.dumps(name)}]"


def _parse_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    pos = 0
    while pos < len(path):
        m = PATH_PART.match(path, pos)
        if m is None or m.end() == pos:
            return []
        name, index, quoted = m.groups()
        parts.append(int(index) if index is not None else name if name is not None else json.loads(f'"{quoted}"'))
        pos = m.end()
    return parts


def _apply_ignore(olds: dict[str, Any], news: dict[str, Any], path: str) -> None:
    """news[path] = olds[path], as pulumi-go-provider does for each ignoreChanges entry."""
    parts = _parse_path(path)
    if not parts:
        return
    old: Any = olds
    new: Any = news
    try:
        for part in parts[:-1]:
            old, new = old[part], new[part]
    except (KeyError, IndexError, TypeError):
        return
    try:
        value = old[parts[-1]]
    except (KeyError, IndexError, TypeError):
        value = None  # absent and null diff alike
    with contextlib.suppress(IndexError, TypeError):
        new[parts[-1]] = value


def _detailed(path: str, old: Any, new: Any, out: dict[str, int]) -> None:
    """plugin.NewDetailedDiffFromObjectDiff: one entry per changed leaf, object key or array index."""
    kind = provider_pb2.PropertyDiff
    if is_unknown(new) or is_unknown(old):
        out[path] = kind.ADD if old is None else kind.UPDATE
    elif isinstance(old, dict) and isinstance(new, dict):
        for name in sorted(set(old) | set(new)):
            sub = _key(path, name)
            o, n = old.get(name), new.get(name)
            if o is None and n is not None:
                out[sub] = kind.ADD
            elif o is not None and n is None:
                out[sub] = kind.DELETE
            elif o != n or contains_unknown(n):
                _detailed(sub, o, n, out)
    elif isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            sub = f"{path}[{i}]"
            if i >= len(old):
                out[sub] = kind.ADD
            elif i >= len(new):
                out[sub] = kind.DELETE
            elif old[i] != new[i] or contains_unknown(new[i]):
                _detailed(sub, old[i], new[i], out)
    elif old != new:
        out[path] = kind.ADD if old is None else kind.DELETE if new is None else kind.UPDATE


def diff_inputs(olds: dict[str, Any], news: dict[str, Any], ignore: Iterable[str]) -> provider_pb2.DiffResponse:
    """pulumi-command 1.x through pulumi-go-provider's infer diff (see README: Diff)."""
    olds = json.loads(json.dumps({k: olds.get(k) for k in INPUTS}))
    news = json.loads(json.dumps({k: news.get(k) for k in INPUTS}))
    for path in ignore:
        _apply_ignore(olds, news, path)
    kinds: dict[str, int] = {}
    for key in INPUTS:
        o, n = olds.get(key), news.get(key)
        if o is None and n is not None:
            kinds[key] = provider_pb2.PropertyDiff.ADD
        elif o is not None and n is None:
            kinds[key] = provider_pb2.PropertyDiff.DELETE
        elif o != n or contains_unknown(n):
            _detailed(key, o, n, kinds)
    to_replace: dict[int, int] = {
        provider_pb2.PropertyDiff.ADD: provider_pb2.PropertyDiff.ADD_REPLACE,
        provider_pb2.PropertyDiff.DELETE: provider_pb2.PropertyDiff.DELETE_REPLACE,
        provider_pb2.PropertyDiff.UPDATE: provider_pb2.PropertyDiff.UPDATE_REPLACE,
    }
    kinds = {k: to_replace[v] if k in REPLACE_ON_CHANGES else v for k, v in kinds.items()}
    replaces = [k for k, v in kinds.items() if v in to_replace.values()]
    return provider_pb2.DiffResponse(
        changes=provider_pb2.DiffResponse.DIFF_SOME if kinds else provider_pb2.DiffResponse.DIFF_NONE,
        diffs=list(kinds),
        replaces=replaces,
        deleteBeforeReplace=False,
        detailedDiff={k: provider_pb2.PropertyDiff(kind=v, inputDiff=False) for k, v in kinds.items()},  # type: ignore[arg-type]
        hasDetailedDiff=True,
    )


# --- Go's wording ---------------------------------------------------------------------------------

GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
# x/crypto/ssh session.go: exit-signal names to the status Go reports (128 + number).
SIGNALS = {"ABRT": 6, "ALRM": 14, "FPE": 8, "HUP": 1, "ILL": 4, "INT": 2, "KILL": 9, "PIPE": 13, "QUIT": 3,
           "SEGV": 11, "TERM": 15}
CHANNEL_REJECTIONS = {1: "administratively prohibited", 2: "connect failed", 3: "unknown channel type",
                      4: "resource shortage"}
SETENV_HINT = (
    "Unable to set '{}'. This only works if your SSH server is configured to accept\n\tthese variables via "
    "AcceptEnv. Alternatively, if a Bash-like shell runs the command on the remote host, you could\n\tprefix the "
    "command itself with the variables in the form 'VAR=value command'"
)


def go_quote(text: str) -> str:
    """Go's strconv.Quote (fmt %q): what pulumi-command puts around the command in a failure."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():  # same categories as Go's unicode.IsPrint
            out.append(ch)
        elif ch in GO_ESCAPES:
            out.append(GO_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:  # a surrogateescape'd byte: Go sees invalid UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def exit_error(status: int, signal: str, reason: str) -> str | None:
    """x/crypto/ssh Session.Wait's error text for an exited command, or None for success."""
    if status == 0:
        return None
    if status == -1:
        if not signal:
            return "wait: remote command exited without exit status or exit signal"
        status = 128 + SIGNALS.get(signal, 0)
    text = f"Process exited with status {status}"
    if signal:
        text += f" from signal {signal}"
    if reason:
        text += f". Reason was: {reason}"
    return text


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _go_errno(err: OSError) -> str:
    text = err.strerror or str(err)
    return text[:1].lower() + text[1:]


def backoff_delays() -> Iterator[float]:
    """pulumi's retry.Until defaults: 100 ms, x1.5 per retry, at most 5 s."""
    delay = 0.1
    while True:
        yield min(delay, 5.0)
        delay = min(delay, 5.0) * 1.5


# --- SSH ----------------------------------------------------------------------------------------

Log = Callable[[int, str, bool], None]  # (severity, message, ephemeral)
NEVER = 10.0**9  # paramiko needs numbers for its banner timeout; Go puts none on the handshake


def fingerprint(key_type: str, key_b64: str) -> str:
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return f"{key_type} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


def load_private_key(text: str, password: str | None) -> paramiko.PKey:
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text), password=password)
        except paramiko.PasswordRequiredException as err:
            raise ProviderError(f"ssh: this private key is passphrase protected: {err}") from err
        except (paramiko.SSHException, ValueError) as err:
            errors.append(f"{cls.__name__}: {err}")
    raise ProviderError("ssh: could not parse connection.privateKey (" + "; ".join(errors) + ")")


class _Sha1RSAKey(paramiko.RSAKey):  # type: ignore[misc]
    """Verifies `ssh-rsa` (SHA-1) host key signatures, which paramiko 4+ dropped and Go still does."""

    HASHES: ClassVar[dict[str, Any]] = {**paramiko.RSAKey.HASHES, "ssh-rsa": hashes.SHA1}


class _SocketAgent(paramiko.agent.AgentSSH):  # type: ignore[misc]
    """The SSH agent at a socket path (connection.agentSocketPath or SSH_AUTH_SOCK)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as err:
            sock.close()
            # Go's net.Dial("unix", path) error.
            raise ProviderError(f"dial unix {path}: connect: {_go_errno(err)}") from err
        self._connect(sock)


def _peek(m: paramiko.Message, read: Callable[[paramiko.Message], Any]) -> Any:
    pos = m.packet.tell()
    try:
        return read(m)
    finally:
        m.packet.seek(pos)


def _on_data(chan: paramiko.Channel, m: paramiko.Message) -> None:
    sink = getattr(chan, "standin_sink", None)
    if sink is not None:
        sink("stdout", _peek(m, lambda x: x.get_binary()))
    paramiko.Channel._feed(chan, m)


def _on_extended_data(chan: paramiko.Channel, m: paramiko.Message) -> None:
    sink = getattr(chan, "standin_sink", None)
    if sink is not None:
        code, data = _peek(m, lambda x: (x.get_int(), x.get_binary()))
        if code == 1:
            sink("stderr", data)
    paramiko.Channel._feed_extended(chan, m)


def _on_request(chan: paramiko.Channel, m: paramiko.Message) -> None:
    if _peek(m, lambda x: x.get_text()) == "exit-signal":  # paramiko ignores it; Go reports it
        m.get_text()
        m.get_boolean()
        signal, _core, reason = m.get_text(), m.get_boolean(), m.get_text()
        chan.standin_exit_signal = (signal, reason)
        return
    paramiko.Channel._handle_request(chan, m)


def _on_reply(ok: bool, default: Callable[[paramiko.Channel, paramiko.Message], None]) -> Any:
    def handler(chan: paramiko.Channel, m: paramiko.Message) -> None:
        replies = getattr(chan, "standin_replies", None)
        if replies is not None:  # our want-reply env request; paramiko would close the channel on failure
            replies.put(ok)
        else:
            default(chan, m)

    return handler


class _Transport(paramiko.Transport):  # type: ignore[misc]
    """paramiko's Transport, plus what Go's client does and paramiko does not (see the handlers)."""

    _key_info: ClassVar[dict[str, Any]] = {**paramiko.Transport._key_info, "ssh-rsa": _Sha1RSAKey}
    _channel_handler_table: ClassVar[dict[int, Any]] = {
        **paramiko.Transport._channel_handler_table,
        paramiko.common.MSG_CHANNEL_DATA: _on_data,
        paramiko.common.MSG_CHANNEL_EXTENDED_DATA: _on_extended_data,
        paramiko.common.MSG_CHANNEL_REQUEST: _on_request,
        paramiko.common.MSG_CHANNEL_SUCCESS: _on_reply(True, paramiko.Channel._request_success),
        paramiko.common.MSG_CHANNEL_FAILURE: _on_reply(False, paramiko.Channel._request_failed),
    }

    def __init__(self, sock: Any) -> None:
        super().__init__(sock)
        self.banner_timeout = NEVER
        self.handshake_timeout = NEVER
        self.auth_timeout = None
        self.channel_timeout = NEVER
        self.peer_host_key_types: list[str] = []

    def _really_parse_kex_init(self, m: paramiko.Message, ignore_first_byte: bool = False) -> dict[str, Any]:
        parsed: dict[str, Any] = super()._really_parse_kex_init(m, ignore_first_byte)
        self.peer_host_key_types = list(parsed["server_key_algo_list"])
        return parsed

    def close(self) -> None:
        super().close()
        self.packetizer.complete_handshake()  # stops its handshake timer thread


def parse_host_key(text: str) -> tuple[str, bytes]:
    parts = text.split()
    try:
        blob = base64.b64decode(parts[1], validate=True)
        embedded = paramiko.Message(blob).get_text()
    except (IndexError, ValueError, UnicodeDecodeError) as err:
        raise ProviderError(f"connection.hostKey {text!r} is not an OpenSSH public key (TYPE BASE64)") from err
    if embedded != parts[0]:
        raise ProviderError(f"connection.hostKey says {parts[0]} but holds a {embedded} key")
    return parts[0], blob


class SshConfig:
    """Go's ssh.ClientConfig as pulumi-command builds it, once per command run (SShConfig)."""

    def __init__(self, conn: dict[str, Any]) -> None:
        self.host, self.port = str(conn["host"]), int(conn.get("port", 22))
        self.user = str(conn.get("user", "root"))
        self.limit = int(conn.get("dialErrorLimit", 10))
        self.timeout = float(conn.get("perDialTimeout", 15)) or None
        self.password = str(conn["password"]) if conn.get("password") is not None else None
        self.key = (
            load_private_key(str(conn["privateKey"]), conn.get("privateKeyPassword"))
            if conn.get("privateKey") is not None
            else None
        )
        self.host_key = parse_host_key(str(conn["hostKey"])) if conn.get("hostKey") else None
        # Dialled here, before any retry, even when a key is given: a dead socket fails the run.
        agent_path = conn.get("agentSocketPath") or os.environ.get("SSH_AUTH_SOCK") or None
        self.agent = _SocketAgent(str(agent_path)) if agent_path else None

    def close(self) -> None:
        if self.agent is not None:
            self.agent._close()

    def handshake(self, sock: Any) -> paramiko.Transport:
        """ssh.NewClientConn: key exchange, host key check, authentication."""
        transport = _Transport(sock)
        try:
            if self.host_key is not None:
                # Go: HostKeyAlgorithms = [key.Type()]; for an RSA key that is SHA-1 `ssh-rsa`.
                transport.get_security_options().key_types = [self.host_key[0]]
            try:
                transport.start_client()
            except paramiko.SSHException as err:
                if "no acceptable host key" in str(err):
                    raise ProviderError(
                        "ssh: handshake failed: ssh: no common algorithm for host key; "
                        f"we offered: [{self.host_key[0] if self.host_key else ''}], "
                        f"peer offered: [{' '.join(transport.peer_host_key_types)}]"
                    ) from err
                raise ProviderError(f"ssh: handshake failed: {err or type(err).__name__}") from err
            except EOFError as err:
                raise ProviderError("ssh: handshake failed: EOF") from err
            if self.host_key is not None:
                got = transport.get_remote_server_key()
                if (got.get_name(), got.asbytes()) != self.host_key:
                    want = fingerprint(self.host_key[0], base64.b64encode(self.host_key[1]).decode())
                    raise ProviderError(
                        f"ssh: handshake failed: ssh: host key mismatch for {join_host_port(self.host, self.port)}: "
                        f"connection.hostKey is {want}, the server presented "
                        f"{fingerprint(got.get_name(), got.get_base64())}"
                    )
            self._authenticate(transport)
            return transport
        except BaseException:
            transport.close()
            raise

    def _authenticate(self, transport: paramiko.Transport) -> None:
        """x/crypto/ssh clientAuthenticate: `none`, then each configured method the server allows,
        each method name once (so agent keys are not tried after a given private key failed)."""
        tried: list[str] = []

        def attempt(method: str, run: Callable[[], Any]) -> list[str] | None:
            tried.append(method)
            try:
                run()
                return None
            except paramiko.BadAuthenticationType as err:
                return list(err.allowed_types)
            except paramiko.AuthenticationException:
                return methods
            except (paramiko.SSHException, EOFError, OSError) as err:
                raise ProviderError(f"ssh: handshake failed: {err or type(err).__name__}") from err

        def agent_keys() -> None:
            for key in self.agent.get_keys() if self.agent else ():
                try:
                    transport.auth_publickey(self.user, key)
                    return
                except paramiko.BadAuthenticationType:
                    raise
                except paramiko.AuthenticationException:
                    continue
            raise paramiko.AuthenticationException("no agent key accepted")

        methods: list[str] = []
        got = attempt("none", lambda: transport.auth_none(self.user))
        if got is None:
            return
        methods = got
        candidates: list[tuple[str, Callable[[], Any]]] = []
        if self.key is not None:
            candidates.append(("publickey", lambda: transport.auth_publickey(self.user, self.key)))
        if self.password is not None:
            password = self.password
            candidates.append(("password", lambda: transport.auth_password(self.user, password, fallback=False)))
            answer = lambda _title, _instructions, prompts: [password] * len(prompts)  # noqa: E731
            candidates.append(("keyboard-interactive", lambda: transport.auth_interactive(self.user, answer)))
        if self.agent is not None:
            candidates.append(("publickey", agent_keys))
        while True:
            nxt = next(((m, run) for m, run in candidates if m not in tried and m in methods), None)
            if nxt is None:
                raise ProviderError(
                    f"ssh: handshake failed: ssh: unable to authenticate, attempted methods [{' '.join(tried)}], "
                    "no supported methods remain"
                )
            got = attempt(*nxt)
            if got is None:
                return
            methods = got


def tcp_dial(host: str, port: int, timeout: float | None) -> socket.socket:
    """net.DialTimeout: perDialTimeout bounds the TCP connect only (Go's ClientConfig.Timeout)."""
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as err:
        raise ProviderError(f"dial tcp: lookup {host}: {_go_errno(err)}") from err
    except TimeoutError as err:
        raise ProviderError(f"dial tcp {join_host_port(host, port)}: i/o timeout") from err
    except OSError as err:
        raise ProviderError(f"dial tcp {join_host_port(host, port)}: connect: {_go_errno(err)}") from err


T = TypeVar("T")


def dial_with_retry(what: str, limit: int, attempt: Callable[[], T], log: Log) -> T:
    """pulumi-command's dialWithRetry over retry.Until: every error is retried, limit + 1 dials in all."""
    delays = backoff_delays()
    tries = 0
    while True:
        try:
            return attempt()
        except ProviderError as err:
            dials = tries + 1
            if limit > -1 and dials > limit:
                raise ProviderError(f"after {tries} failed attempts: {err}") from err
            log(engine_pb2.INFO, f"{what} {dials}/{limit if limit > -1 else 'inf'} failed: retrying", True)
        time.sleep(next(delays))
        tries += 1


def dial(conn: dict[str, Any], log: Log) -> tuple[paramiko.Transport, list[Any]]:
    """Connection.Dial: the SSH client to the host (through connection.proxy if set), plus what to close."""
    config = SshConfig(conn)
    closers: list[Any] = [config]
    proxy = conn.get("proxy")
    try:
        if not proxy:
            transport = dial_with_retry(
                "Dial", config.limit,
                lambda: config.handshake(tcp_dial(config.host, config.port, config.timeout)), log,
            )
            return transport, closers
        try:
            proxy_config = SshConfig(proxy)
        except ProviderError as err:
            raise ProviderError(f"proxy: {err}") from err
        closers.append(proxy_config)
        try:
            bastion = dial_with_retry(
                "Dial proxy", proxy_config.limit,
                lambda: proxy_config.handshake(tcp_dial(proxy_config.host, proxy_config.port, proxy_config.timeout)),
                log,
            )
            closers.append(bastion)

            def through_bastion() -> paramiko.Transport:
                try:
                    chan = bastion.open_channel("direct-tcpip", (config.host, config.port), ("127.0.0.1", 0))
                except paramiko.ChannelException as err:  # Go's OpenChannelError
                    reason = CHANNEL_REJECTIONS.get(err.code, f"unknown reason {err.code}")
                    raise ProviderError(f"ssh: rejected: {reason}") from err
                except (paramiko.SSHException, OSError, EOFError) as err:
                    raise ProviderError(f"ssh: {err or type(err).__name__}") from err
                return config.handshake(chan)

            return dial_with_retry("Dial", config.limit, through_bastion, log), closers
        except ProviderError as err:
            raise ProviderError(f"proxy: {err}") from err
    except BaseException:
        for c in reversed(closers):
            c.close()
        raise


class Output:
    """What the command printed, in arrival order (Go tees stdout and stderr into one buffer), and the
    lines of the streams `logging` selects, split like bufio.Scanner across both streams."""

    def __init__(self, logged: set[str], on_line: Callable[[str], None]) -> None:
        self.combined = bytearray()
        self.streams = {"stdout": bytearray(), "stderr": bytearray()}
        self.logged = logged
        self.lock = threading.Lock()
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.partial = b""
        self.logger = threading.Thread(target=self._pump, args=(on_line,), daemon=True)
        self.logger.start()

    def feed(self, stream: str, data: bytes) -> None:  # on paramiko's transport thread
        with self.lock:
            self.combined += data
            self.streams[stream] += data
            if stream in self.logged:
                *lines, self.partial = (self.partial + data).split(b"\n")
                for line in lines:
                    self.lines.put(line.removesuffix(b"\r").decode("utf-8", errors="replace"))

    def close(self) -> None:
        with self.lock:
            if self.partial:
                self.lines.put(self.partial.removesuffix(b"\r").decode("utf-8", errors="replace"))
            self.lines.put(None)
        self.logger.join()

    def _pump(self, on_line: Callable[[str], None]) -> None:
        while (line := self.lines.get()) is not None:
            on_line(line)

    def text(self, stream: str) -> str:
        return self.streams[stream].decode("utf-8", errors="replace")


def _setenv(chan: paramiko.Channel, name: str, value: str) -> bool:
    """Session.Setenv: an `env` request with want-reply (paramiko's set_environment_variable has none)."""
    replies: queue.Queue[bool] = queue.Queue()
    chan.standin_replies = replies
    try:
        m = paramiko.Message()
        m.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
        m.add_int(chan.remote_chanid)
        m.add_string("env")
        m.add_boolean(True)
        m.add_string(name)
        m.add_string(value)
        chan.transport._send_user_message(m)
        while True:
            try:
                return replies.get(timeout=0.5)
            except queue.Empty:
                if chan.closed or not chan.transport.is_active():
                    raise ProviderError("ssh: setenv: EOF") from None
    finally:
        chan.standin_replies = None


def run_remote(
    conn: dict[str, Any],
    command: str,
    stdin: str | None,
    environment: dict[str, str],
    previous: dict[str, str],
    logged: set[str],
    log: Log,
) -> tuple[str | None, str, str, str]:
    """CommandOutputs.run: (error or None, stdout, stderr, stdout and stderr interleaved)."""
    transport, closers = dial(conn, log)
    out = Output(logged, lambda line: log(engine_pb2.INFO, line, True))
    try:
        try:
            chan = transport.open_session()
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise ProviderError(f"ssh: {err or type(err).__name__}") from err
        chan.standin_sink = out.feed
        for name, value in environment.items():
            if not _setenv(chan, name, value):
                log(engine_pb2.ERROR, SETENV_HINT.format(name), False)
                raise ProviderError(f"could not set environment variable {go_quote(name)}: ssh: setenv failed")
        for name, value in previous.items():  # optimistic: a refusal only warns
            if value and not _setenv(chan, name, value):
                log(engine_pb2.WARNING, SETENV_HINT.format(name), False)
        try:
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise ProviderError(f"ssh: command {command} failed") from err

        def drain(recv: Callable[[int], bytes]) -> None:
            while recv(32768):  # keeps the window open; the data itself arrives through `out`
                pass

        readers = [threading.Thread(target=drain, args=(r,), daemon=True) for r in (chan.recv, chan.recv_stderr)]
        for t in readers:
            t.start()
        try:
            if stdin:
                chan.sendall(stdin.encode())
            chan.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            # The command exited (the channel closed) before reading all its stdin: not a failure.
            if not (chan.closed or chan.exit_status_ready()):
                raise
        status = chan.recv_exit_status()
        for t in readers:
            t.join()
        signal, reason = getattr(chan, "standin_exit_signal", ("", ""))
    finally:
        out.close()
        transport.close()
        for c in reversed(closers):
            c.close()
    combined = out.combined.decode("utf-8", errors="replace")
    return exit_error(status, signal, reason), out.text("stdout"), out.text("stderr"), combined


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

    def _log(self, urn: str, severity: int, message: str, ephemeral: bool) -> None:
        if self.engine is None:
            return
        try:
            self.engine.Log(
                engine_pb2.LogRequest(severity=severity, message=message, urn=urn, ephemeral=ephemeral)  # type: ignore[arg-type]
            )
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
        # Like infer: the old state's input properties against the new checked inputs.
        return diff_inputs(to_dict(request.olds), to_dict(request.news), request.ignoreChanges)

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
        # The stored state: the old delete text, connection, stdin, environment and logging.
        props = to_dict(request.properties)
        if props.get("delete") is not None:
            self._run(context, request.urn, props, props["delete"], previous=props)
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
        if not isinstance(command, str):
            return {**inputs, "stdout": "", "stderr": ""}
        logging_mode = inputs.get("logging") or "stdoutAndStderr"
        logged = {s for s in ("stdout", "stderr") if logging_mode in (s, "stdoutAndStderr")}
        env_prev: dict[str, str] = {}
        if previous is not None and inputs.get("addPreviousOutputInEnv") is not False:
            env_prev["PULUMI_COMMAND_STDOUT"] = str(previous.get("stdout") or "")
            env_prev["PULUMI_COMMAND_STDERR"] = str(previous.get("stderr") or "")
        env = {str(k): str(v) for k, v in (inputs.get("environment") or {}).items()}
        stdin = inputs.get("stdin")

        def emit(severity: int, message: str, ephemeral: bool) -> None:
            self._log(urn, severity, message, ephemeral)

        try:
            failure, stdout, stderr, combined = run_remote(
                inputs["connection"], command, stdin if isinstance(stdin, str) else None, env, env_prev, logged, emit
            )
        except ProviderError as err:
            _abort(context, grpc.StatusCode.UNKNOWN, str(err))
        except Exception as err:
            _abort(context, grpc.StatusCode.UNKNOWN, f"ssh: {type(err).__name__}: {err}")
        if failure is not None:
            # Whatever `logging` says: the output goes into the error (pulumi-command does the same).
            _abort(context, grpc.StatusCode.UNKNOWN, f"{failure}: running {go_quote(command)}:\n{combined}")
        return {**inputs, "stdout": stdout.removesuffix("\n"), "stderr": stderr.removesuffix("\n")}


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
