"""Run the real `__main__.py` under Pulumi's mock engine and record what it registers.

The mocks stand in for the tls and command providers: tls resources are made for real with
`cryptography` (deterministically, keys derived from the resource name, so two runs of the same
config give the same certificates and the steps' inputs can be compared), and remote
commands return canned output (preflight: a facts JSON of a 4-CPU, 8 GiB arm64 node;
node-address: the node's address from NODE_ADDRESSES). The program's read of its own stack's
previous outputs (a StackReference) returns `previous_outputs`.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pulumi_command import remote

from components import node_scripts

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
FIXED_TIME = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
FACTS = {
    "node": "",
    "hostname": "",
    "arch": "arm64",
    "kernel": "6.1.0-mock",
    "cgroupVersion": "v2",
    "cpus": 4,
    "memoryBytes": 8 * 2**30,
    "systemSliceMemoryBytes": 150 * 2**20,
    "swapOn": False,
    "containerdSystemdCgroup": "true",
    "warnings": [],
}
# What the node-address step reports per node (the address its kubelet registers).
NODE_ADDRESSES = {"k8s-master": "192.168.10.10", "k8s-node1": "192.168.10.11", "k8s-node2": "192.168.10.12"}
STACK_REFERENCE = "pulumi:pulumi:StackReference"


def address_facts(node: str, address: str | None = None) -> dict[str, Any]:
    address = address or NODE_ADDRESSES.get(node, "192.168.10.99")
    return {"node": node, "addresses": [address], "primaryAddress": address,
            "primaryAddressSource": "the default route (eth0)", "warnings": []}


def unwrap(value: Any) -> Any:
    """Mock inputs wrap secrets as {sig: ..., value: ...}; give the plain value."""
    if isinstance(value, dict):
        if value.get("4dabf18193072939515e22adb298388d") == SECRET_SIG:
            return unwrap(value["value"])
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def has_unknown(value: Any) -> bool:
    """An input the engine does not know yet (a preview, before what it comes from ran)."""
    if isinstance(value, pulumi.output.Unknown) or value == pulumi.runtime.rpc.UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(has_unknown(item) for item in value.values())
    if isinstance(value, list):
        return any(has_unknown(item) for item in value)
    return False


def is_secret_input(value: Any) -> bool:
    return isinstance(value, dict) and value.get("4dabf18193072939515e22adb298388d") == SECRET_SIG


def _key_for(name: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(hashlib.sha256(name.encode()).digest(), "big") % (2**255)
    return ec.derive_private_key(scalar or 1, ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _load_key(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


_SUBJECT_OIDS = {
    "commonName": NameOID.COMMON_NAME,
    "country": NameOID.COUNTRY_NAME,
    "province": NameOID.STATE_OR_PROVINCE_NAME,
    "locality": NameOID.LOCALITY_NAME,
    "organization": NameOID.ORGANIZATION_NAME,
    "organizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME,
}


def _name(subject: dict[str, Any]) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(oid, str(subject[key])) for key, oid in _SUBJECT_OIDS.items() if subject.get(key)]
    )


_EXTENDED = {"client_auth": ExtendedKeyUsageOID.CLIENT_AUTH, "server_auth": ExtendedKeyUsageOID.SERVER_AUTH}


def _build_cert(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: Any,
    signing_key: ec.EllipticCurvePrivateKey,
    uses: list[str],
    is_ca: bool,
    hours: float,
    sans: list[x509.GeneralName],
    serial_seed: str,
) -> str:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(int.from_bytes(hashlib.sha256(serial_seed.encode()).digest()[:16], "big"))
        .not_valid_before(FIXED_TIME)
        .not_valid_after(FIXED_TIME + datetime.timedelta(hours=hours))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature="digital_signature" in uses,
                content_commitment=False,
                key_encipherment="key_encipherment" in uses,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign="cert_signing" in uses,
                crl_sign="crl_signing" in uses,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    extended = [_EXTENDED[use] for use in uses if use in _EXTENDED]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signing_key, hashes.SHA256(), ecdsa_deterministic=True).public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)


class ProviderMocks(pulumi.runtime.Mocks):
    """Emulated tls and command providers (see the module docstring)."""

    def __init__(
        self,
        previous_outputs: dict[str, Any] | None = None,
        unknown_steps: tuple[str, ...] = (),
        addresses: dict[str, str] | None = None,
    ) -> None:
        # The stack's outputs of the previous deployment, as the StackReference reads them.
        self.previous_outputs = previous_outputs or {}
        # Per node, the address the node-address step reports instead of NODE_ADDRESSES'.
        self.addresses = addresses or {}
        # Steps (name suffixes) whose stdout is unknown, as in a preview before they ran.
        self.unknown_steps = unknown_steps
        self.resources: list[Registered] = []
        # Every resource the program constructed (run_program records it in the SDK), also those
        # whose registration had not reached the mocks when the program failed.
        self.declared: list[Declared] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        plain = unwrap(inputs)
        outputs: dict[str, Any] = dict(inputs)
        if args.typ.startswith("tls:") and has_unknown(plain):
            # As the provider answers a preview: what it would compute from unknown inputs is unknown.
            for name in ("certRequestPem", "certPem", "validityStartTime", "validityEndTime", "readyForRenewal"):
                outputs[name] = pulumi.UNKNOWN
        elif args.typ == "tls:index/privateKey:PrivateKey":
            key = _key_for(args.name)
            outputs["privateKeyPem"] = _pem_key(key)
            outputs["publicKeyPem"] = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
        elif args.typ == "tls:index/selfSignedCert:SelfSignedCert":
            key = _load_key(plain["privateKeyPem"])
            subject = _name(plain.get("subject", {}))
            outputs["certPem"] = _build_cert(
                subject, subject, key.public_key(), key, plain["allowedUses"],
                bool(plain.get("isCaCertificate")), plain["validityPeriodHours"], [], args.name,
            )
        elif args.typ == "tls:index/certRequest:CertRequest":
            key = _load_key(plain["privateKeyPem"])
            sans: list[x509.GeneralName] = [x509.DNSName(n) for n in plain.get("dnsNames", [])]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in plain.get("ipAddresses", [])]
            builder = x509.CertificateSigningRequestBuilder().subject_name(_name(plain.get("subject", {})))
            if sans:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            outputs["certRequestPem"] = (
                builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
            )
        elif args.typ == "tls:index/locallySignedCert:LocallySignedCert":
            request = x509.load_pem_x509_csr(plain["certRequestPem"].encode())
            ca_cert = x509.load_pem_x509_certificate(plain["caCertPem"].encode())
            try:
                sans = list(request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
            except x509.ExtensionNotFound:
                sans = []
            outputs["certPem"] = _build_cert(
                request.subject, ca_cert.subject, request.public_key(), _load_key(plain["caPrivateKeyPem"]),
                plain["allowedUses"], bool(plain.get("isCaCertificate")), plain["validityPeriodHours"],
                sans, args.name,
            )
            # As pulumi-tls reports them (RFC 3339; Go prints nanoseconds).
            end = FIXED_TIME + datetime.timedelta(hours=plain["validityPeriodHours"])
            outputs["validityStartTime"] = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%S.000000001Z")
            outputs["validityEndTime"] = end.strftime("%Y-%m-%dT%H:%M:%S.000000001Z")
            outputs["readyForRenewal"] = False
        elif args.typ == STACK_REFERENCE:
            outputs = {"name": args.name, "outputs": self.previous_outputs, "secretOutputNames": []}
        elif args.typ == "command:remote:Command":
            stdout: Any = ""
            if args.name.endswith(f"-{node_scripts.PREFLIGHT}"):
                node = args.name.removesuffix(f"-{node_scripts.PREFLIGHT}")
                stdout = json.dumps({**FACTS, "node": node, "hostname": node})
            elif args.name.endswith(f"-{node_scripts.NODE_ADDRESS}"):
                node = args.name.removesuffix(f"-{node_scripts.NODE_ADDRESS}")
                stdout = json.dumps(address_facts(node, self.addresses.get(node)))
            if any(args.name.endswith(f"-{step}") for step in self.unknown_steps):
                stdout = pulumi.UNKNOWN
            outputs.update(stdout=stdout, stderr="")
        self.resources.append(Registered(args.typ, args.name, inputs, outputs))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


@dataclass
class Declared:
    """A resource as the program declared it (type, name, options), recorded in the SDK."""

    type: str
    name: str
    parent: str | None
    depends_on: list[str]
    protect: bool
    additional_secret_outputs: list[str]
    ignore_changes: list[str]
    replace_on_changes: list[str]


@dataclass
class ProgramRun:
    mocks: ProviderMocks
    declared: list[Declared]
    outputs: dict[str, Any]
    secret_outputs: dict[str, bool]
    # Per ConnectionArgs the program built: is its private_key a secret Output (None: no key)?
    # The SDK wraps the whole connection as a secret, so the mock inputs cannot tell.
    private_key_secret: list[bool | None] = field(default_factory=list)

    def resources(self, type_: str) -> list[Registered]:
        return [r for r in self.mocks.resources if r.type == type_]

    def resource(self, name: str) -> Registered:
        matches = [r for r in self.mocks.resources if r.name == name]
        assert len(matches) == 1, f"{name}: {len(matches)} resources"
        return matches[0]

    def declaration(self, name: str) -> Declared:
        return next(d for d in self.declared if d.name == name)


def _config_strings(config: dict[str, Any]) -> dict[str, str]:
    return {
        f"homelab-kubelet:{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in config.items()
    }


def run_program(
    config: dict[str, Any],
    secrets: dict[str, str] | None = None,
    monkeypatch: Any = None,
    extra_config: dict[str, str] | None = None,
    mocks: ProviderMocks | None = None,
    preview: bool = False,
) -> ProgramRun:
    """Run __main__.py with this stack config under the mocks; wait for every output.

    `extra_config`: more keys as written in a stack file ("namespace:key" -> value). Pass your
    own `mocks` to see what was registered when the program fails. `preview`: run as a preview
    (outputs a mock leaves unknown stay unknown; see ProviderMocks.unknown_steps)."""
    secrets = secrets or {}
    mocks = mocks or ProviderMocks()
    # "organization": the default organization of a file backend (what the real engine reports).
    pulumi.runtime.set_mocks(mocks, project="homelab-kubelet", stack="test", preview=preview, organization="organization")
    all_config = (
        _config_strings(config) | {f"homelab-kubelet:{k}": v for k, v in secrets.items()} | (extra_config or {})
    )
    pulumi.runtime.set_all_config(all_config, [f"homelab-kubelet:{k}" for k in secrets])

    declared = mocks.declared
    original_init = pulumi.Resource.__init__

    def recording_init(self: pulumi.Resource, t: str, name: str, custom: bool, props: Any = None,
                       opts: pulumi.ResourceOptions | None = None, *args: Any, **kwargs: Any) -> None:
        opts = opts or pulumi.ResourceOptions()
        parent = opts.parent
        declared.append(
            Declared(
                type=t,
                name=name,
                parent=getattr(parent, "_name", None) if parent is not None else None,
                depends_on=[getattr(d, "_name", "?") for d in (opts.depends_on or [])]
                if isinstance(opts.depends_on, list) else [],
                protect=bool(opts.protect),
                additional_secret_outputs=list(opts.additional_secret_outputs or []),
                ignore_changes=list(opts.ignore_changes or []),
                replace_on_changes=list(opts.replace_on_changes or []),
            )
        )
        original_init(self, t, name, custom, props, opts, *args, **kwargs)

    exports: dict[str, pulumi.Output[Any]] = {}
    original_export = pulumi.export

    def recording_export(name: str, value: Any) -> None:
        exports[name] = pulumi.Output.from_input(value)

    resolved: dict[str, Any] = {}
    secret_flags: dict[str, bool] = {}
    key_flags: list[pulumi.Output[bool | None]] = []
    key_secret: list[bool | None] = []
    original_connection = remote.ConnectionArgs.__init__

    def recording_connection(self: remote.ConnectionArgs, *args: Any, **kwargs: Any) -> None:
        key = kwargs.get("private_key")
        key_flags.append(pulumi.Output.from_input(None) if key is None
                         else pulumi.Output.from_input(pulumi.Output.from_input(key).is_secret()))
        original_connection(self, *args, **kwargs)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def body() -> pulumi.Output[Any]:
        runpy.run_path(str(PROJECT_DIR / "__main__.py"), run_name="__main__")
        names = sorted(exports)
        flags: list[pulumi.Output[bool]] = [
            pulumi.Output.from_input(exports[name].is_secret()) for name in names
        ]

        def collect(values: list[Any]) -> None:
            resolved.update(dict(zip(names, values[: len(names)], strict=True)))
            secret_flags.update(dict(zip(names, values[len(names) : 2 * len(names)], strict=True)))
            key_secret.extend(values[2 * len(names) :])

        return pulumi.Output.all(*(exports[name] for name in names), *flags, *key_flags).apply(collect)

    pulumi.Resource.__init__ = recording_init  # type: ignore[method-assign]
    pulumi.export = recording_export
    remote.ConnectionArgs.__init__ = recording_connection  # type: ignore[method-assign,assignment]
    try:
        body()
    finally:
        pulumi.Resource.__init__ = original_init  # type: ignore[method-assign]
        pulumi.export = original_export
        remote.ConnectionArgs.__init__ = original_connection  # type: ignore[method-assign]
    return ProgramRun(mocks, declared, resolved, secret_flags, key_secret)
