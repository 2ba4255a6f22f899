"""The whole program (`__main__.py`, unmodified) under Pulumi's mock engine.

Layer 2 of the test pyramid: the resource graph, certificates, dependency order, secrecy and
which steps rerun for which change, with the tls/command providers emulated by tests/pulumi_harness.py.
"""

from __future__ import annotations

import base64
import copy
import datetime
import re
from typing import Any

import pulumi
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components import bundle, node_scripts
from tests.pulumi_harness import (
    NODE_ADDRESSES,
    ProgramRun,
    ProviderMocks,
    has_unknown,
    is_secret_input,
    run_program,
    unwrap,
)
from tests.stack_config import HOMELAB_KNOWN_HOSTS, homelab_config, homelab_known_host

NODES = ("k8s-master", "k8s-node1", "k8s-node2")
# Written out, not imported: a step's name is part of its URN, so renaming one makes Pulumi create
# the new resource and delete the old (the holders keep that safe), unless an alias says otherwise.
STEPS = ("preflight", "node-address", "install-kubelet", "credentials", "configure-and-start")
PREFLIGHT, ADDRESS, INSTALL, CREDENTIALS, CONFIGURE = STEPS
COMMAND = "command:remote:Command"
HOMELAB_SECRETS = {"sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nmock-ssh-key\n-----END OPENSSH PRIVATE KEY-----\n"}


def homelab_with_key() -> dict[str, Any]:
    config = homelab_config()
    config["ssh"] = {key: value for key, value in config["ssh"].items() if key != "agent"}
    config["ssh"]["knownHostsFile"] = str(HOMELAB_KNOWN_HOSTS)
    return config


@pytest.fixture(scope="module")
def homelab() -> ProgramRun:
    return run_program(homelab_with_key(), HOMELAB_SECRETS)


def client_cert(run: ProgramRun, node: str) -> x509.Certificate:
    kubeconfig = yaml.safe_load(run.outputs["kubeconfigs"][node])
    data = kubeconfig["users"][0]["user"]["client-certificate-data"]
    return x509.load_pem_x509_certificate(base64.b64decode(data))


def step_data(run: ProgramRun, name: str) -> str:
    """A step's stdin after its scripts (whose byte counts its create command reads)."""
    inputs = run.resource(name).inputs
    counts = [int(n) for n in re.findall(r"read -rN (\d+) ", inputs["create"])]
    return str(unwrap(inputs["stdin"])).encode()[sum(counts):].decode()


def configure_note(run: ProgramRun, node: str) -> str:
    """The last line of configure-and-start's command: what the kubelet runs on."""
    return str(run.resource(f"{node}-{CONFIGURE}").inputs["create"]).splitlines()[-1]


def test_resource_graph_per_node(homelab: ProgramRun) -> None:
    types = [resource.type for resource in homelab.mocks.resources]
    assert types.count("homelab-kubelet:pki:ClusterPki") == 1
    assert types.count("homelab-kubelet:pki:NodeCertificate") == 3
    assert types.count("homelab-kubelet:node:KubeletNode") == 3
    assert types.count("tls:index/privateKey:PrivateKey") == 4
    assert types.count("tls:index/selfSignedCert:SelfSignedCert") == 1
    assert types.count("tls:index/certRequest:CertRequest") == 3
    assert types.count("tls:index/locallySignedCert:LocallySignedCert") == 3
    for node in NODES:
        commands = sorted(r.name for r in homelab.resources(COMMAND) if r.name.startswith(f"{node}-"))
        assert commands == sorted(f"{node}-{step}" for step in STEPS)


def test_the_step_names_are_the_program_s(homelab: ProgramRun) -> None:
    assert node_scripts.STEP_NAMES == STEPS
    assert node_scripts.WRITING_STEPS == (INSTALL, CREDENTIALS, CONFIGURE)


def test_children_are_parented_to_their_component(homelab: ProgramRun) -> None:
    for node in NODES:
        for step in STEPS:
            assert homelab.declaration(f"{node}-{step}").parent == node
        for suffix in ("key", "csr", "cert"):
            assert homelab.declaration(f"{node}-{suffix}").parent == node
    assert homelab.declaration("cluster-ca-key").parent == "cluster"
    assert homelab.declaration("cluster-ca-cert").parent == "cluster"


def test_generated_ca_is_protected_and_nothing_else(homelab: ProgramRun) -> None:
    protected = sorted(d.name for d in homelab.declared if d.protect)
    assert protected == ["cluster-ca-cert", "cluster-ca-key"]


def test_ecdsa_p256_keys(homelab: ProgramRun) -> None:
    for key in homelab.resources("tls:index/privateKey:PrivateKey"):
        assert key.inputs["algorithm"] == "ECDSA"
        assert key.inputs["ecdsaCurve"] == "P256"


@pytest.mark.parametrize("node", NODES)
def test_node_certificate_subject_sans_and_usages(homelab: ProgramRun, node: str) -> None:
    cert = client_cert(homelab, node)
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"system:node:{node}"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    assert subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "JP"
    assert subject.get_attributes_for_oid(NameOID.STATE_OR_PROVINCE_NAME)[0].value == "Sample"
    assert subject.get_attributes_for_oid(NameOID.LOCALITY_NAME)[0].value == "Tokyo"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "Kubernetes The HardWay"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [node]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(extended) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    signed = homelab.resource(f"{node}-cert").inputs
    assert "cert_signing" not in signed["allowedUses"]


def test_certificates_chain_to_the_ca(homelab: ProgramRun) -> None:
    ca = x509.load_pem_x509_certificate(homelab.outputs["caCertificate"].encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for node in NODES:
        cert = client_cert(homelab, node)
        cert.verify_directly_issued_by(ca)  # raises when the signature or issuer is wrong


def test_kubeconfig_names_the_node_user_and_server(homelab: ProgramRun) -> None:
    for node in NODES:
        kubeconfig = yaml.safe_load(homelab.outputs["kubeconfigs"][node])
        assert kubeconfig["users"][0]["name"] == f"system:node:{node}"
        assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://k8s-master:6443"
        assert kubeconfig["contexts"][0]["context"]["user"] == f"system:node:{node}"


def ip_sans(run: ProgramRun, node: str) -> list[str]:
    sans = client_cert(run, node).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(address) for address in sans.get_values_for_type(x509.IPAddress)]


def test_ip_sans_follow_node_ips() -> None:
    config = homelab_with_key()
    config["nodes"][1]["ips"] = ["192.168.1.11", "fd00::11"]
    run = run_program(config, HOMELAB_SECRETS)
    # The address the kubelet registers (the node-address step's, see the harness) comes first.
    assert ip_sans(run, "k8s-node1") == ["192.168.10.11", "192.168.1.11", "fd00::11"]


def test_each_certificate_carries_the_address_its_kubelet_registers(homelab: ProgramRun) -> None:
    # The homelab stack sets no ips: the SAN comes from what the node-address step found.
    for node in NODES:
        assert ip_sans(homelab, node) == [NODE_ADDRESSES[node]]
        unit = configure_files(homelab, node)["/etc/systemd/system/kubelet.service"]
        assert "--node-ip" not in unit  # the kubelet picks that same address itself
        summary = homelab.outputs["nodes"][node]
        assert summary["nodeIP"] == NODE_ADDRESSES[node]
        assert summary["certIPAddresses"] == [NODE_ADDRESSES[node]]


def test_node_ip_goes_to_the_certificate_and_the_kubelet() -> None:
    config = homelab_with_key()
    config["nodes"][1].update(nodeIP="192.168.2.11", ips=["192.168.2.11", "fd00::11"])
    run = run_program(config, HOMELAB_SECRETS)
    assert ip_sans(run, "k8s-node1") == ["192.168.2.11", "fd00::11"]
    assert "--node-ip=192.168.2.11" in configure_files(run, "k8s-node1")["/etc/systemd/system/kubelet.service"]
    # The node-address step checks the address is the node's.
    assert "NODE_IP=192.168.2.11\n" in str(run.resource(f"k8s-node1-{ADDRESS}").inputs["stdin"])
    assert ip_sans(run, "k8s-node2") == [NODE_ADDRESSES["k8s-node2"]]
    assert "--node-ip" not in configure_files(run, "k8s-node2")["/etc/systemd/system/kubelet.service"]


def test_a_changed_address_reissues_that_certificate_with_the_same_key(homelab: ProgramRun) -> None:
    moved = run_program(homelab_with_key(), HOMELAB_SECRETS, mocks=ProviderMocks(addresses={"k8s-node1": "192.168.10.77"}))
    assert ip_sans(moved, "k8s-node1") == ["192.168.10.77"]
    for node in NODES:
        # The steps' inputs: the new certificate reaches the node through credentials, and the
        # kubelet restarts for it through configure-and-start's note; nothing else runs.
        assert rerun_steps(homelab, moved, node) == ([CREDENTIALS, CONFIGURE] if node == "k8s-node1" else []), node
    key = unwrap(moved.resource("k8s-node1-key").outputs["privateKeyPem"])
    assert key == unwrap(homelab.resource("k8s-node1-key").outputs["privateKeyPem"])
    assert moved.resource("k8s-node1-csr").inputs["ipAddresses"] == ["192.168.10.77"]


def test_preview_works_before_the_node_address_is_known() -> None:
    # A fresh stack's preview: nothing ran yet, so the steps' outputs are unknown.
    mocks = ProviderMocks(unknown_steps=(PREFLIGHT, ADDRESS))
    run = run_program(homelab_with_key(), HOMELAB_SECRETS, mocks=mocks, preview=True)
    for node in NODES:
        assert has_unknown(run.resource(f"{node}-csr").inputs["ipAddresses"])
        # What the steps do is known all the same: the preview shows their scripts and files.
        for step in (PREFLIGHT, ADDRESS, INSTALL, CONFIGURE):
            stdin = unwrap(run.resource(f"{node}-{step}").inputs["stdin"])
            assert isinstance(stdin, str) and not has_unknown(stdin), (node, step)
    # nodeIP is known before anything runs: that certificate needs no step.
    config = homelab_with_key()
    config["nodes"][1]["nodeIP"] = "192.168.2.11"
    run = run_program(config, HOMELAB_SECRETS, mocks=ProviderMocks(unknown_steps=(PREFLIGHT, ADDRESS)), preview=True)
    assert run.resource("k8s-node1-csr").inputs["ipAddresses"] == ["192.168.2.11"]


def configure_files(run: ProgramRun, node: str) -> dict[str, str]:
    return {f.path: f.content for f in bundle.unpack(step_data(run, f"{node}-{CONFIGURE}"))}


def test_dependency_order(homelab: ProgramRun) -> None:
    for node in NODES:
        assert homelab.declaration(f"{node}-{PREFLIGHT}").depends_on == []
        assert homelab.declaration(f"{node}-{ADDRESS}").depends_on == []
        for step in (INSTALL, CREDENTIALS):
            assert homelab.declaration(f"{node}-{step}").depends_on == [f"{node}-{PREFLIGHT}", f"{node}-{ADDRESS}"]
        assert sorted(homelab.declaration(f"{node}-{CONFIGURE}").depends_on) == sorted(
            f"{node}-{step}" for step in (INSTALL, CREDENTIALS)
        )


def test_every_step_but_preflight_cleans_up(homelab: ProgramRun) -> None:
    for command in homelab.resources(COMMAND):
        if command.name.endswith((f"-{PREFLIGHT}", f"-{ADDRESS}")):
            assert not command.inputs.get("delete"), f"{command.name} writes nothing and has no delete"
        else:
            assert command.inputs.get("delete"), f"{command.name} has no delete"


def test_no_secret_in_any_command_string(homelab: ProgramRun) -> None:
    private_keys = [unwrap(k.outputs["privateKeyPem"]) for k in homelab.resources("tls:index/privateKey:PrivateKey")]
    key_bodies = [pem.splitlines()[1] for pem in private_keys]
    for command in homelab.resources(COMMAND):
        for field in ("create", "update", "delete"):
            value = command.inputs.get(field)
            # Plain text: the preview shows the commands, and a secret would hide a leaked key.
            assert not is_secret_input(value), f"{command.name}.{field}"
            text = unwrap(value) or ""
            assert "PRIVATE KEY" not in text, f"{command.name}.{field}"
            assert not any(body in text for body in key_bodies), f"{command.name}.{field}"
            assert "mock-ssh-key" not in text


def test_credentials_go_on_secret_stdin_with_logging_off(homelab: ProgramRun) -> None:
    for node in NODES:
        credentials = homelab.resource(f"{node}-{CREDENTIALS}")
        assert credentials.inputs["logging"] == "none"
        assert is_secret_input(credentials.inputs["stdin"])
        files = {f.path: f for f in bundle.unpack(step_data(homelab, credentials.name))}
        assert files[f"/var/lib/kubelet/{node}-key.pem"].mode == "0600"
        assert files["/var/lib/kubelet/kubeconfig"].mode == "0600"
        assert "PRIVATE KEY" in files[f"/var/lib/kubelet/{node}-key.pem"].content
        assert set(homelab.declaration(f"{node}-{CREDENTIALS}").additional_secret_outputs) >= {"stdout", "stderr"}
        # Every other step logs normally: its output is what an operator reads.
        assert homelab.resource(f"{node}-{CONFIGURE}").inputs.get("logging") is None


def test_ssh_key_is_a_secret_connection_input(homelab: ProgramRun) -> None:
    for command in homelab.resources(COMMAND):
        assert unwrap(command.inputs["connection"])["privateKey"] == HOMELAB_SECRETS["sshPrivateKey"]
    # The key itself, not only the connection the SDK wraps: one connection per node.
    assert homelab.private_key_secret == [True] * len(NODES)


def test_preflight_gets_the_ca_for_the_version_check_in_plain_text() -> None:
    for run in (run_program(homelab_with_key(), HOMELAB_SECRETS), imported_ca_run()[0]):
        ca = run.outputs["caCertificate"]
        for node in NODES:
            preflight = run.resource(f"{node}-{PREFLIGHT}").inputs
            # A certificate is public: the preview shows preflight's stdin even for an imported CA.
            assert not is_secret_input(preflight["stdin"])
            assert step_data(run, f"{node}-{PREFLIGHT}") == ca
            assert "API_SERVER=https://k8s-master:6443\n" in preflight["stdin"]


def test_configuration_travels_on_stdin_as_yaml(homelab: ProgramRun) -> None:
    configure = homelab.resource(f"k8s-node1-{CONFIGURE}")
    files = {f.path: f.content for f in bundle.unpack(step_data(homelab, configure.name))}
    config = yaml.safe_load(files["/var/lib/kubelet/kubelet-config.yaml"])
    assert config["tlsCertFile"] == "/var/lib/kubelet/k8s-node1.pem"
    assert config["kubeReserved"] == {"cpu": "1024m", "memory": "1024Mi"}
    assert "--hostname-override=k8s-node1" in files["/etc/systemd/system/kubelet.service"]


def test_outputs(homelab: ProgramRun) -> None:
    assert homelab.secret_outputs["kubeconfigs"] is True
    assert homelab.outputs["caCertificate"].startswith("-----BEGIN CERTIFICATE-----")
    summary = homelab.outputs["nodes"]["k8s-node2"]
    assert summary["certCommonName"] == "system:node:k8s-node2"
    assert summary["kubeletVersion"] == "v1.30.1"
    # The mock node reports 4 CPUs and 8Gi: 4000m-256m-1024m, 8192Mi-256Mi-1024Mi-100Mi.
    assert summary["allocatable"]["cpu"] == "2720m"
    assert summary["allocatable"]["memory"] == "6812Mi"


def test_no_step_has_triggers_or_depends_on_them(homelab: ProgramRun) -> None:
    # pulumi-command replaces a Command whose triggers change (the new create, then the old
    # delete): no step may carry them, and old stacks' triggers are ignored, not dropped.
    for command in homelab.resources(COMMAND):
        assert "triggers" not in command.inputs, command.name
        assert command.inputs["update"] == command.inputs["create"].replace(" create'", " update'"), command.name
        assert homelab.declaration(command.name).ignore_changes == ["triggers"], command.name


def test_inputs_are_stable_when_nothing_changes(homelab: ProgramRun) -> None:
    again = run_program(homelab_with_key(), HOMELAB_SECRETS)
    for node in NODES:
        for step in STEPS:
            before = homelab.resource(f"{node}-{step}").inputs
            after = again.resource(f"{node}-{step}").inputs
            for key in STEP_INPUTS:
                assert unwrap(after.get(key)) == unwrap(before.get(key)), f"{node}-{step} {key}"


STEP_INPUTS = ("create", "update", "delete", "stdin")


def rerun_steps(before: ProgramRun, after: ProgramRun, node: str) -> list[str]:
    """The steps of `node` an `up` from `before` to `after` would run: any input of theirs differs."""
    changed = []
    for step in STEPS:
        old, new = before.resource(f"{node}-{step}").inputs, after.resource(f"{node}-{step}").inputs
        if any(unwrap(old.get(key)) != unwrap(new.get(key)) for key in STEP_INPUTS):
            changed.append(step)
    return changed


def test_reservation_change_reruns_two_steps_on_that_node_only(homelab: ProgramRun) -> None:
    config = homelab_with_key()
    config["nodes"][1]["reservations"] = {"kubeReserved": {"memory": "768Mi"}}
    changed = run_program(config, HOMELAB_SECRETS)
    for node in NODES:
        expected = [PREFLIGHT, CONFIGURE] if node == "k8s-node1" else []
        assert rerun_steps(homelab, changed, node) == expected, node
        # The rerun comes from the new configuration on stdin; binary and credentials are the same.
        assert configure_note(changed, node) == configure_note(homelab, node)


def test_version_change_reruns_preflight_install_and_configure() -> None:
    base = run_program(homelab_with_key(), HOMELAB_SECRETS)
    config = homelab_with_key()
    config["kubernetes"]["version"] = "v1.30.2"
    upgraded = run_program(config, HOMELAB_SECRETS)
    for node in NODES:
        # Preflight checks the new version against the API server's (the version skew policy).
        assert rerun_steps(base, upgraded, node) == [PREFLIGHT, INSTALL, CONFIGURE]
        assert "KUBELET_VERSION=v1.30.2\n" in upgraded.resource(f"{node}-{PREFLIGHT}").inputs["stdin"]
        assert "kubelet v1.30.1 (arm64)" in configure_note(base, node)
        assert "kubelet v1.30.2 (arm64)" in configure_note(upgraded, node)
        assert "KUBELET_VERSION=v1.30.2" in upgraded.resource(f"{node}-{INSTALL}").inputs["stdin"]


def test_a_reissued_certificate_reruns_credentials_and_configure() -> None:
    base = run_program(homelab_with_key(), HOMELAB_SECRETS)
    config = homelab_with_key()
    config["nodes"][1]["ips"] = [*config["nodes"][1].get("ips", []), "192.168.1.99"]
    reissued = run_program(config, HOMELAB_SECRETS)
    assert client_cert(reissued, "k8s-node1") != client_cert(base, "k8s-node1")
    for node in NODES:
        expected = [CREDENTIALS, CONFIGURE] if node == "k8s-node1" else []
        assert rerun_steps(base, reissued, node) == expected, node
    before, after = configure_note(base, "k8s-node1"), configure_note(reissued, "k8s-node1")
    assert before.split("credentials ")[0] == after.split("credentials ")[0]
    assert before.split("credentials ")[1] != after.split("credentials ")[1]
    # The digest is not a secret, so the preview shows the configure step's command.
    assert not is_secret_input(reissued.resource(f"k8s-node1-{CONFIGURE}").inputs["create"])


def test_sudo_user_wraps_every_step() -> None:
    config = homelab_with_key()
    config["ssh"]["user"] = "kube"
    run = run_program(config, HOMELAB_SECRETS)
    for command in run.resources(COMMAND):
        assert command.inputs["create"].startswith("sudo -n true"), command.name
        assert "sudo -n bash -c" in command.inputs["create"]
        assert unwrap(command.inputs["connection"])["user"] == "kube"


def imported_ca_run() -> tuple[ProgramRun, str]:
    """The homelab stack with pki.importCa and the CA of another run as its secrets; and that CA."""
    donor = run_program(homelab_with_key(), HOMELAB_SECRETS)
    ca_cert = donor.outputs["caCertificate"]
    ca_key = unwrap(donor.resource("cluster-ca-key").outputs["privateKeyPem"])
    config = homelab_with_key()
    config["pki"] = {**config["pki"], "importCa": True}
    return run_program(config, {**HOMELAB_SECRETS, "caCertPem": ca_cert, "caKeyPem": ca_key}), ca_cert


def test_imported_ca_is_used_and_not_generated() -> None:
    run, ca_cert = imported_ca_run()
    assert not run.resources("tls:index/selfSignedCert:SelfSignedCert")
    assert len(run.resources("tls:index/privateKey:PrivateKey")) == 3
    assert run.outputs["caCertificate"] == ca_cert
    ca = x509.load_pem_x509_certificate(ca_cert.encode())
    client_cert(run, "k8s-node1").verify_directly_issued_by(ca)


def failed_run(config: dict[str, Any], secrets: dict[str, str], extra: dict[str, str] | None = None,
               ) -> tuple[str, ProviderMocks]:
    """Run the program expecting the RunError that reports bad configuration (the engine shows
    its message alone, without a traceback), and check that no resource came before it."""
    mocks = ProviderMocks()
    with pytest.raises(pulumi.RunError) as failure:
        run_program(config, secrets, extra_config=extra, mocks=mocks)
    # Exactly RunError: a SettingsError (a ValueError) that escaped would be a traceback.
    assert type(failure.value) is pulumi.RunError, repr(failure.value)
    assert failure.value.__cause__ is None and failure.value.__suppress_context__, "raised `from None`"
    assert mocks.declared == [], [d.name for d in mocks.declared]  # refused before any resource is built
    assert mocks.resources == []
    return str(failure.value), mocks


def test_invalid_config_fails_before_any_resource() -> None:
    config = copy.deepcopy(homelab_with_key())
    config["nodes"][1]["podCIDR"] = "10.200.1.0/33"
    config["reservations"]["kubeReserved"]["memory"] = "256MB"
    message, _ = failed_run(config, HOMELAB_SECRETS)
    assert "nodes[1].podCIDR" in message and "10.200.1.0/33" in message
    assert "reservations.kubeReserved.memory" in message and "256MB" in message


def test_private_key_file_is_read_as_a_secret(tmp_path: Any) -> None:
    key_file = tmp_path / "id_ed25519"
    key_file.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nfrom-file\n-----END OPENSSH PRIVATE KEY-----\n")
    config = homelab_with_key()
    config["ssh"]["privateKeyFile"] = str(key_file)
    run = run_program(config)
    connection = run.resource(f"k8s-node1-{PREFLIGHT}").inputs["connection"]
    assert "from-file" in unwrap(connection)["privateKey"]
    assert run.private_key_secret == [True] * len(NODES)


def test_a_misspelt_top_level_key_is_refused_with_the_closest_known_key() -> None:
    message, mocks = failed_run(homelab_with_key(), HOMELAB_SECRETS, {"homelab-kubelet:reservation": '{"x": 1}'})
    assert "homelab-kubelet:reservation: unknown key; did you mean homelab-kubelet:reservations?" in message
    assert mocks.resources == []  # refused before any resource is registered


def test_a_misspelt_secret_key_is_refused() -> None:
    message, mocks = failed_run(homelab_with_key(), HOMELAB_SECRETS, {"homelab-kubelet:sshPrivatekey": "k"})
    assert "homelab-kubelet:sshPrivatekey: unknown key; did you mean homelab-kubelet:sshPrivateKey?" in message
    assert mocks.resources == []


def test_a_key_without_a_close_match_lists_the_known_keys() -> None:
    message, _ = failed_run(homelab_with_key(), HOMELAB_SECRETS, {"homelab-kubelet:cni": '"bridge"'})
    assert "homelab-kubelet:cni: unknown key; known keys: kubernetes, ssh, kubelet" in message


def test_keys_of_other_namespaces_are_left_alone() -> None:
    run = run_program(homelab_with_key(), HOMELAB_SECRETS,
                      extra_config={"command:someSetting": "x", "tls:proxy": '{"fromEnv": true}'})
    assert len(run.resources(COMMAND)) == len(STEPS) * len(NODES)


# --- SSH host keys ------------------------------------------------------------------------------


def test_host_keys_come_from_the_known_hosts_file(homelab: ProgramRun) -> None:
    for node in NODES:
        for step in STEPS:
            connection = unwrap(homelab.resource(f"{node}-{step}").inputs["connection"])
            assert connection["hostKey"] == homelab_known_host(node), (node, step)


def test_a_pinned_host_key_wins_over_known_hosts() -> None:
    config = homelab_with_key()
    pinned = homelab_known_host("k8s-master")
    config["nodes"][1]["hostKey"] = pinned
    run = run_program(config, HOMELAB_SECRETS)
    assert unwrap(run.resource(f"k8s-node1-{PREFLIGHT}").inputs["connection"])["hostKey"] == pinned


def test_a_node_without_a_known_host_key_is_refused_before_any_resource(tmp_path: Any) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(HOMELAB_KNOWN_HOSTS.read_text().replace("k8s-node1 ", "k8s-other "))
    config = homelab_with_key()
    config["ssh"]["knownHostsFile"] = str(known_hosts)
    message, mocks = failed_run(config, HOMELAB_SECRETS, {})
    assert "nodes[1].hostKey: no host key for k8s-node1 (k8s-node1)" in message
    assert "nodes[0]" not in message and "nodes[2]" not in message
    assert mocks.resources == []


def test_a_missing_known_hosts_file_is_named(tmp_path: Any) -> None:
    config = homelab_with_key()
    config["ssh"]["knownHostsFile"] = str(tmp_path / "nowhere")
    message, mocks = failed_run(config, HOMELAB_SECRETS, {})
    assert f"ssh.knownHostsFile {str(tmp_path / 'nowhere')!r}: the file does not exist" in message
    assert mocks.resources == []


def test_insecure_ignore_host_key_dials_without_a_key_and_warns(tmp_path: Any, monkeypatch: Any) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warnings.append(message))
    config = homelab_with_key()
    config["ssh"].update(knownHostsFile=str(tmp_path / "empty"), insecureIgnoreHostKey=True)
    config["nodes"][2]["hostKey"] = homelab_known_host("k8s-node2")
    run = run_program(config, HOMELAB_SECRETS)
    keys = {node: unwrap(run.resource(f"{node}-{PREFLIGHT}").inputs["connection"]).get("hostKey") for node in NODES}
    assert keys == {"k8s-master": None, "k8s-node1": None, "k8s-node2": homelab_known_host("k8s-node2")}
    assert len(warnings) == 2 and all("is NOT verified" in warning for warning in warnings), warnings
    assert "nodes[0] (k8s-master)" in warnings[0] and "nodes[1] (k8s-node1)" in warnings[1]


# --- rollout.maxParallel: the writing steps of a node wait for an earlier node's health check ------

WRITING_STEPS = (INSTALL, CREDENTIALS, CONFIGURE)


def cross_node_dependencies(run: ProgramRun) -> dict[str, list[str]]:
    """step -> the steps of other nodes it depends on, for every step that has some."""
    found = {}
    for node in NODES:
        for step in STEPS:
            others = [d for d in run.declaration(f"{node}-{step}").depends_on if not d.startswith(f"{node}-")]
            if others:
                found[f"{node}-{step}"] = others
    return found


def test_without_rollout_every_node_goes_at_once(homelab: ProgramRun) -> None:
    assert cross_node_dependencies(homelab) == {}


@pytest.mark.parametrize("max_parallel", [3, 7])
def test_rollout_as_wide_as_the_stack_chains_nothing(max_parallel: int) -> None:
    config = homelab_with_key()
    config["rollout"] = {"maxParallel": max_parallel}
    assert cross_node_dependencies(run_program(config, HOMELAB_SECRETS)) == {}


def test_rollout_one_at_a_time_chains_each_node_to_the_previous_health_check() -> None:
    config = homelab_with_key()
    config["rollout"] = {"maxParallel": 1}
    run = run_program(config, HOMELAB_SECRETS)
    # In the stack's order: k8s-master first, then k8s-node1, then k8s-node2. Preflight and
    # node-address write nothing and run everywhere at once.
    assert cross_node_dependencies(run) == {
        **{f"k8s-node1-{step}": [f"k8s-master-{CONFIGURE}"] for step in WRITING_STEPS},
        **{f"k8s-node2-{step}": [f"k8s-node1-{CONFIGURE}"] for step in WRITING_STEPS},
    }
    # The chain changes only the order: every step's inputs are the same as without it.
    plain = run_program(homelab_with_key(), HOMELAB_SECRETS)
    for node in NODES:
        assert rerun_steps(plain, run, node) == [], node


def test_rollout_two_at_a_time() -> None:
    config = homelab_with_key()
    config["rollout"] = {"maxParallel": 2}
    run = run_program(config, HOMELAB_SECRETS)
    assert cross_node_dependencies(run) == {f"k8s-node2-{step}": [f"k8s-master-{CONFIGURE}"] for step in WRITING_STEPS}


# --- certificate expiry ---------------------------------------------------------------------------


def previous_nodes(**not_after: datetime.datetime) -> dict[str, Any]:
    """A previous deployment's `nodes` output with these notAfter times (Go's RFC 3339)."""
    return {"nodes": {node: {"certNotAfter": time.strftime("%Y-%m-%dT%H:%M:%S.123456789Z")}
                      for node, time in not_after.items()}}


def warnings_of(monkeypatch: Any, previous: dict[str, Any]) -> tuple[list[str], ProgramRun]:
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warnings.append(message))
    run = run_program(homelab_with_key(), HOMELAB_SECRETS, mocks=ProviderMocks(previous_outputs=previous), preview=True)
    return warnings, run


def test_nodes_output_carries_each_certificate_s_not_after(homelab: ProgramRun) -> None:
    for node in NODES:
        cert = client_cert(homelab, node)
        recorded = homelab.outputs["nodes"][node]["certNotAfter"]
        assert recorded == homelab.resource(f"{node}-cert").outputs["validityEndTime"]
        assert recorded.startswith(cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S"))


def test_a_certificate_inside_its_renewal_window_is_a_warning(monkeypatch: Any) -> None:
    now = datetime.datetime.now(datetime.UTC)
    # pki.earlyRenewalHours is 720 (30 days) in the homelab stack.
    warnings, _ = warnings_of(monkeypatch, previous_nodes(
        **{"k8s-master": now + datetime.timedelta(days=60), "k8s-node1": now + datetime.timedelta(days=10),
           "k8s-node2": now - datetime.timedelta(hours=1), "gone-node": now - datetime.timedelta(days=1)}
    ))
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("k8s-node1: its certificate expires at ")
    assert "inside its renewal window" in warnings[0] and "pki.earlyRenewalHours: 720" in warnings[0]
    assert warnings[1].startswith("k8s-node2: its certificate EXPIRED at ")
    assert all("`pulumi up` issues a new one" in warning for warning in warnings)


def test_no_previous_deployment_no_expiry_warning(monkeypatch: Any) -> None:
    warnings, run = warnings_of(monkeypatch, {})
    assert warnings == []
    assert run.resources("pulumi:pulumi:StackReference")[0].name == "organization/homelab-kubelet/test"
