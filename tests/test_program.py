"""The whole program (`__main__.py`, unmodified) under Pulumi's mock engine.

Layer 2 of the test pyramid: the resource graph, certificates, dependency order, secrecy and
restart triggers, with the tls/command providers emulated by tests/pulumi_harness.py.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components import bundle
from tests.pulumi_harness import ProgramRun, is_secret_input, run_program, unwrap
from tests.stack_config import homelab_config

NODES = ("k8s-master", "k8s-node1", "k8s-node2")
STEPS = ("preflight", "install-kubelet", "credentials", "configure-and-start")
COMMAND = "command:remote:Command"
HOMELAB_SECRETS = {"sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nmock-ssh-key\n-----END OPENSSH PRIVATE KEY-----\n"}


def homelab_with_key() -> dict[str, Any]:
    config = homelab_config()
    config["ssh"] = {key: value for key, value in config["ssh"].items() if key != "agent"}
    return config


@pytest.fixture(scope="module")
def homelab() -> ProgramRun:
    return run_program(homelab_with_key(), HOMELAB_SECRETS)


def client_cert(run: ProgramRun, node: str) -> x509.Certificate:
    kubeconfig = yaml.safe_load(run.outputs["kubeconfigs"][node])
    data = kubeconfig["users"][0]["user"]["client-certificate-data"]
    return x509.load_pem_x509_certificate(base64.b64decode(data))


def start_triggers(run: ProgramRun, node: str) -> list[str]:
    return list(unwrap(run.resource(f"{node}-configure-and-start").inputs["triggers"]))


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


def test_ip_sans_follow_node_ips() -> None:
    config = homelab_with_key()
    config["nodes"][1]["ips"] = ["192.168.1.11", "fd00::11"]
    run = run_program(config, HOMELAB_SECRETS)
    sans = client_cert(run, "k8s-node1").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.168.1.11"),
        ipaddress.ip_address("fd00::11"),
    ]


def test_dependency_order(homelab: ProgramRun) -> None:
    for node in NODES:
        assert homelab.declaration(f"{node}-preflight").depends_on == []
        for step in ("install-kubelet", "credentials"):
            assert homelab.declaration(f"{node}-{step}").depends_on == [f"{node}-preflight"]
        assert sorted(homelab.declaration(f"{node}-configure-and-start").depends_on) == sorted(
            f"{node}-{step}" for step in ("install-kubelet", "credentials")
        )


def test_every_step_updates_in_place_and_cleans_up(homelab: ProgramRun) -> None:
    for command in homelab.resources(COMMAND):
        assert command.inputs["update"] == command.inputs["create"], command.name
        if not command.name.endswith("-preflight"):
            assert command.inputs.get("delete"), f"{command.name} has no delete"


def test_no_secret_in_any_command_string(homelab: ProgramRun) -> None:
    private_keys = [unwrap(k.outputs["privateKeyPem"]) for k in homelab.resources("tls:index/privateKey:PrivateKey")]
    key_bodies = [pem.splitlines()[1] for pem in private_keys]
    for command in homelab.resources(COMMAND):
        for field in ("create", "update", "delete"):
            text = command.inputs.get(field) or ""
            assert "PRIVATE KEY" not in text, f"{command.name}.{field}"
            assert not any(body in text for body in key_bodies), f"{command.name}.{field}"
            assert "mock-ssh-key" not in text


def test_credentials_go_on_secret_stdin_with_logging_off(homelab: ProgramRun) -> None:
    for node in NODES:
        credentials = homelab.resource(f"{node}-credentials")
        assert credentials.inputs["logging"] == "none"
        assert is_secret_input(credentials.inputs["stdin"])
        files = {f.path: f for f in bundle.unpack(unwrap(credentials.inputs["stdin"]))}
        assert files[f"/var/lib/kubelet/{node}-key.pem"].mode == "0600"
        assert files["/var/lib/kubelet/kubeconfig"].mode == "0600"
        assert "PRIVATE KEY" in files[f"/var/lib/kubelet/{node}-key.pem"].content
        assert set(homelab.declaration(f"{node}-credentials").additional_secret_outputs) >= {"stdout", "stderr"}
        # Every other step logs normally: its output is what an operator reads.
        assert homelab.resource(f"{node}-configure-and-start").inputs.get("logging") is None


def test_ssh_key_is_a_secret_connection_input(homelab: ProgramRun) -> None:
    for command in homelab.resources(COMMAND):
        connection = command.inputs["connection"]
        assert is_secret_input(connection) or is_secret_input(connection.get("privateKey"))
        assert unwrap(connection)["privateKey"] == HOMELAB_SECRETS["sshPrivateKey"]


def test_configuration_travels_on_stdin_as_yaml(homelab: ProgramRun) -> None:
    configure = homelab.resource("k8s-node1-configure-and-start")
    files = {f.path: f.content for f in bundle.unpack(configure.inputs["stdin"])}
    config = yaml.safe_load(files["/var/lib/kubelet/kubelet-config.yaml"])
    assert config["podCIDR"] == "10.200.1.0/24"
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


def test_triggers_are_stable_when_nothing_changes(homelab: ProgramRun) -> None:
    again = run_program(homelab_with_key(), HOMELAB_SECRETS)
    for node in NODES:
        assert start_triggers(again, node) == start_triggers(homelab, node)
        for step in STEPS:
            before = homelab.resource(f"{node}-{step}").inputs
            after = again.resource(f"{node}-{step}").inputs
            assert unwrap(after.get("stdin")) == unwrap(before.get("stdin")), f"{node}-{step}"
            assert after["create"] == before["create"], f"{node}-{step}"


def rerun_steps(before: ProgramRun, after: ProgramRun, node: str) -> list[str]:
    """The steps of `node` an `up` from `before` to `after` would run: any input of theirs differs."""
    changed = []
    for step in STEPS:
        old, new = before.resource(f"{node}-{step}").inputs, after.resource(f"{node}-{step}").inputs
        if any(unwrap(old.get(key)) != unwrap(new.get(key)) for key in ("create", "update", "stdin", "triggers")):
            changed.append(step)
    return changed


def test_reservation_change_reruns_two_steps_on_that_node_only(homelab: ProgramRun) -> None:
    config = homelab_with_key()
    config["nodes"][1]["reservations"] = {"kubeReserved": {"memory": "768Mi"}}
    changed = run_program(config, HOMELAB_SECRETS)
    for node in NODES:
        expected = ["preflight", "configure-and-start"] if node == "k8s-node1" else []
        assert rerun_steps(homelab, changed, node) == expected, node
        # The restart comes from the new configuration on stdin, not from the triggers.
        assert start_triggers(changed, node) == start_triggers(homelab, node)


def test_version_change_restarts_every_node() -> None:
    base = run_program(homelab_with_key(), HOMELAB_SECRETS)
    config = homelab_with_key()
    config["kubernetes"]["version"] = "v1.30.2"
    upgraded = run_program(config, HOMELAB_SECRETS)
    for node in NODES:
        old, new = start_triggers(base, node), start_triggers(upgraded, node)
        assert [t.split("=")[0] for t, u in zip(old, new, strict=True) if t != u] == ["kubelet"]
        assert rerun_steps(base, upgraded, node) == ["install-kubelet", "configure-and-start"]
        assert "KUBELET_VERSION=v1.30.2" in upgraded.resource(f"{node}-install-kubelet").inputs["create"]


def test_sudo_user_wraps_every_step() -> None:
    config = homelab_with_key()
    config["ssh"]["user"] = "kube"
    run = run_program(config, HOMELAB_SECRETS)
    for command in run.resources(COMMAND):
        assert command.inputs["create"].startswith("sudo -n true"), command.name
        assert "sudo -n bash -c" in command.inputs["create"]
        assert unwrap(command.inputs["connection"])["user"] == "kube"


def test_imported_ca_is_used_and_not_generated() -> None:
    donor = run_program(homelab_with_key(), HOMELAB_SECRETS)
    ca_cert = donor.outputs["caCertificate"]
    ca_key = unwrap(donor.resource("cluster-ca-key").outputs["privateKeyPem"])
    config = homelab_with_key()
    config["pki"] = {**config["pki"], "importCa": True}
    run = run_program(config, {**HOMELAB_SECRETS, "caCertPem": ca_cert, "caKeyPem": ca_key})
    assert not run.resources("tls:index/selfSignedCert:SelfSignedCert")
    assert len(run.resources("tls:index/privateKey:PrivateKey")) == 3
    assert run.outputs["caCertificate"] == ca_cert
    ca = x509.load_pem_x509_certificate(ca_cert.encode())
    client_cert(run, "k8s-node1").verify_directly_issued_by(ca)


def test_invalid_config_fails_before_any_resource() -> None:
    config = copy.deepcopy(homelab_with_key())
    config["nodes"][1]["podCIDR"] = "10.200.1.0/33"
    config["reservations"]["kubeReserved"]["memory"] = "256MB"
    with pytest.raises(Exception) as failure:
        run_program(config, HOMELAB_SECRETS)
    message = str(failure.value)
    assert "nodes[1].podCIDR" in message and "10.200.1.0/33" in message
    assert "reservations.kubeReserved.memory" in message and "256MB" in message
    # Nothing registered at all: the error comes before the first resource.
    assert "cluster" not in message


def test_private_key_file_is_read_as_a_secret(tmp_path: Any) -> None:
    key_file = tmp_path / "id_ed25519"
    key_file.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nfrom-file\n-----END OPENSSH PRIVATE KEY-----\n")
    config = homelab_with_key()
    config["ssh"]["privateKeyFile"] = str(key_file)
    run = run_program(config)
    connection = run.resource("k8s-node1-preflight").inputs["connection"]
    assert is_secret_input(connection) or is_secret_input(connection.get("privateKey"))
    assert "from-file" in unwrap(connection)["privateKey"]
