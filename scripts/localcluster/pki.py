"""The local cluster's certificates: one CA, the API server's serving certificate, a client certificate
per component, and the service-account signing key. ECDSA P-256 throughout (fast to generate, accepted by
every Kubernetes component). Files are written once and kept: a restarted cluster keeps its identity, so a
kubeconfig handed out earlier stays valid.
"""
from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 3650
SERVER_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local")
SERVER_IPS = ("127.0.0.1", "10.96.0.1")
# name -> (common name = user, organisations = groups)
CLIENTS = {
    "admin": ("local-admin", ("system:masters",)),
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
    "kwok": ("kwok", ("system:masters",)),  # the node simulator writes node and pod status everywhere
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",)),
}


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organisations=()) -> x509.Name:
    return x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organisations),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS)))


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def ensure_pki(directory: Path) -> None:
    """Create every key and certificate under ``directory`` that is not there yet."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key_path, ca_path = directory / "ca.key", directory / "ca.crt"
    if not ca_path.exists():
        key = _key()
        name = _name("localcluster-ca")
        cert = (_builder(name, name, key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        _write(ca_key_path, _pem_key(key), private=True)
        _write(ca_path, _pem_cert(cert))
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())

    def issue(stem: str, subject: x509.Name, usage, sans=None) -> None:
        if (directory / f"{stem}.crt").exists():
            return
        key = _key()
        builder = (_builder(subject, ca_cert.subject, key.public_key())
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        _write(directory / f"{stem}.key", _pem_key(key), private=True)
        _write(directory / f"{stem}.crt", _pem_cert(builder.sign(ca_key, hashes.SHA256())))

    issue("apiserver", _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH,
          [*(x509.DNSName(n) for n in SERVER_NAMES), *(x509.IPAddress(ipaddress.ip_address(i)) for i in SERVER_IPS)])
    for stem, (user, groups) in CLIENTS.items():
        issue(stem, _name(user, groups), ExtendedKeyUsageOID.CLIENT_AUTH)
    sa_key = directory / "service-account.key"
    if not sa_key.exists():
        key = _key()
        _write(sa_key, _pem_key(key), private=True)
        _write(directory / "service-account.pub", key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
