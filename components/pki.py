"""PKI components: the cluster CA and one kubelet certificate per node (pulumi-tls).

Conventions follow kubeadm and Kubernetes the Hard Way: the CA signs each node a key pair
whose certificate says CN `system:node:<name>`, O `system:nodes`, the subject the Node
authorizer maps to "the kubelet of node <name>".
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_tls as tls

from components.kubeconfig import render_kubeconfig
from components.settings import NodeSettings, PkiSettings

# The Node authorizer's group; the CN beside it is NODE_CN_PREFIX + the node name (NodeSettings.cert_common_name).
NODE_ORGANIZATION = "system:nodes"
CA_USES = ["cert_signing", "crl_signing", "digital_signature", "key_encipherment"]
# A kubelet certificate serves the kubelet's HTTPS port and authenticates it to the API
# server; it never signs other certificates.
NODE_USES = ["client_auth", "server_auth", "digital_signature", "key_encipherment"]


def _key_args(pki: PkiSettings) -> dict[str, Any]:
    if pki.algorithm == "ECDSA":
        # pulumi-tls defaults to P224, which Go's TLS stack (and so the kubelet) rejects.
        return {"algorithm": "ECDSA", "ecdsa_curve": pki.ecdsa_curve}
    if pki.algorithm == "RSA":
        return {"algorithm": "RSA", "rsa_bits": pki.rsa_bits}
    return {"algorithm": "ED25519"}


def _subject_fields(pki: PkiSettings) -> dict[str, Any]:
    subject = pki.subject
    fields = {
        "country": subject.country,
        "province": subject.province,
        "locality": subject.locality,
        "organizational_unit": subject.organizational_unit,
    }
    return {key: value for key, value in fields.items() if value is not None}


class ClusterPki(pulumi.ComponentResource):
    """The cluster CA: generated and protected, or imported from stack secrets."""

    ca_cert_pem: pulumi.Output[str]
    ca_private_key_pem: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        pki: PkiSettings,
        imported_ca: tuple[pulumi.Output[str], pulumi.Output[str]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("homelab-kubelet:pki:ClusterPki", name, None, opts)
        if imported_ca is not None:
            cert_pem, key_pem = imported_ca
            self.ca_cert_pem = cert_pem
            self.ca_private_key_pem = pulumi.Output.secret(key_pem)
        else:
            # protect: destroying the CA would orphan every certificate it signed.
            child = pulumi.ResourceOptions(parent=self, protect=True)
            key = tls.PrivateKey(f"{name}-ca-key", **_key_args(pki), opts=child)
            cert = tls.SelfSignedCert(
                f"{name}-ca-cert",
                private_key_pem=key.private_key_pem,
                subject=tls.SelfSignedCertSubjectArgs(
                    common_name=pki.ca_common_name,
                    organization=pki.ca_organization,
                    **_subject_fields(pki),
                ),
                is_ca_certificate=True,
                validity_period_hours=pki.ca_validity_hours,
                early_renewal_hours=pki.early_renewal_hours,
                allowed_uses=CA_USES,
                opts=child,
            )
            self.ca_cert_pem = cert.cert_pem
            self.ca_private_key_pem = key.private_key_pem
        self.register_outputs({"caCertPem": self.ca_cert_pem})


class NodeCertificate(pulumi.ComponentResource):
    """A node's key, CSR and CA-signed certificate, and the kubeconfig that embeds them.

    The IP SANs are the address the node's kubelet registers (`primary_address`: nodes[].nodeIP,
    or what the node-address step found), then `nodes[].ips`; a changed address is a new CSR and
    certificate (the same key), which the credentials step writes and configure-and-start
    restarts the kubelet for.
    """

    cert_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    ip_addresses: pulumi.Output[list[str]]
    # The certificate's notAfter (RFC 3339), as pulumi-tls reports it (validity_end_time).
    not_after: pulumi.Output[str]
    common_name: str

    def __init__(
        self,
        name: str,
        node: NodeSettings,
        pki: PkiSettings,
        ca: ClusterPki,
        api_server: str,
        primary_address: pulumi.Input[str] = "",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("homelab-kubelet:pki:NodeCertificate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.common_name = node.cert_common_name
        key = tls.PrivateKey(f"{name}-key", **_key_args(pki), opts=child)
        self.ip_addresses = pulumi.Output.from_input(primary_address).apply(
            lambda address: list(node.san_ip_addresses(address))
        )
        request = tls.CertRequest(
            f"{name}-csr",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(
                common_name=node.cert_common_name,
                organization=NODE_ORGANIZATION,
                **_subject_fields(pki),
            ),
            dns_names=list(node.san_dns_names),
            ip_addresses=self.ip_addresses,
            opts=child,
        )
        cert = tls.LocallySignedCert(
            f"{name}-cert",
            cert_request_pem=request.cert_request_pem,
            ca_cert_pem=ca.ca_cert_pem,
            ca_private_key_pem=ca.ca_private_key_pem,
            validity_period_hours=pki.validity_hours,
            early_renewal_hours=pki.early_renewal_hours,
            allowed_uses=NODE_USES,
            opts=child,
        )
        self.cert_pem = cert.cert_pem
        self.not_after = cert.validity_end_time
        self.private_key_pem = pulumi.Output.secret(key.private_key_pem)
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(ca.ca_cert_pem, cert.cert_pem, key.private_key_pem).apply(
                lambda pems: render_kubeconfig(
                    cluster_name="kubernetes",
                    server=api_server,
                    ca_cert_pem=pems[0],
                    client_cert_pem=pems[1],
                    client_key_pem=pems[2],
                    user=node.cert_common_name,
                )
            )
        )
        self.register_outputs(
            {"certPem": self.cert_pem, "commonName": self.common_name, "kubeconfig": self.kubeconfig}
        )
