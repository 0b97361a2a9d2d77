"""The mesh's certificates: one CA per mesh, one certificate per node, saying who it is and
what it may do.

A node certificate's subject is `CN=<node>, OU=<role>, O=<mesh id>`. The common name is also
the node's etcd user (etcd takes a client certificate's CN as the user name), so the role's
key permissions there follow from the certificate alone. Every certificate carries the DNS
name `mesh-llm`, and peers check that name rather than an address: addresses change (DHCP,
containers, NAT) while membership is what the CA vouches for.

Files in a credentials directory: `ca.crt` (every node), `node.crt` and `node.key` (this
node), `ca.key` (the authority only). Keys are written 0600, atomically.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import InvalidRequest

SERVER_NAME = "mesh-llm"
NODE = "node"  # serves models: workers, registry, scheduler, gateway
CLIENT = "client"  # an API client: a gateway that reads the mesh and routes to it
AUTHORITY = "authority"  # the CA holder; etcd's root user
ROLES = (NODE, CLIENT, AUTHORITY)
ROOT_USER = "root"  # etcd's administrator: the authority's certificate names it
NODE_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")

CA_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
CERT_FILE = "node.crt"
KEY_FILE = "node.key"

CA_DAYS = 3650
NODE_DAYS = 825


class InvalidCredentials(InvalidRequest):
    pass


@dataclass(frozen=True)
class Identity:
    node: str
    role: str
    mesh_id: str
    serial: int


def check_node_name(name: str) -> str:
    if name == ROOT_USER or not NODE_NAME.match(name):
        raise InvalidCredentials(
            f"node name {name[:64]!r} is not allowed: use lowercase letters, digits, '.' and "
            "'-' (at most 63), and not 'root'"
        )
    return name


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def create_ca(mesh_id: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"Mesh LLM CA {mesh_id}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, mesh_id),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_csr(key: ec.EllipticCurvePrivateKey, node: str) -> x509.CertificateSigningRequest:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, check_node_name(node))])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def issue(
    ca_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,  # RSA: a CA made by an installer
    ca_cert: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey,
    *,
    node: str,
    role: str,
    hosts: tuple[str, ...] = (),
    days: int = NODE_DAYS,
    mesh_id: str = "",
) -> x509.Certificate:
    """A certificate for `node` in `role`, good as a TLS server and client alike. `hosts` are
    extra addresses or names to list (for tools that check them; peers check SERVER_NAME).
    The mesh id is the CA's O unless given (a CA made elsewhere, e.g. by Helm, has none)."""
    if role not in ROLES:
        raise InvalidCredentials(f"unknown role {role!r}")
    if role != AUTHORITY:
        check_node_name(node)
    named = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    mesh_id = mesh_id or (str(named[0].value) if named else "")
    if not mesh_id:
        raise InvalidCredentials("the CA names no mesh: give the mesh id")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, node),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(mesh_id)),
        ]
    )
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _alt_names(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(SERVER_NAME), x509.DNSName("localhost")]
    addresses = {"127.0.0.1"}
    for host in hosts:
        try:
            addresses.add(str(ipaddress.ip_address(host)))
        except ValueError:
            if host and x509.DNSName(host) not in names:
                names.append(x509.DNSName(host))
    return names + [x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(addresses)]


def identity_of(cert: x509.Certificate) -> Identity:
    def one(oid: x509.ObjectIdentifier) -> str:
        found = cert.subject.get_attributes_for_oid(oid)
        return str(found[0].value) if found else ""

    return Identity(
        node=one(NameOID.COMMON_NAME),
        role=one(NameOID.ORGANIZATIONAL_UNIT_NAME),
        mesh_id=one(NameOID.ORGANIZATION_NAME),
        serial=cert.serial_number,
    )


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate, base64url: what an invite token pins the CA by."""
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def pem(item: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return item.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pem_from_der(der: bytes) -> bytes:
    return ssl.DER_cert_to_PEM_cert(der).encode()


def load_cert(data: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise InvalidCredentials("not a PEM certificate") from exc


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise InvalidCredentials("not a PEM certificate request") from exc
    if not csr.is_signature_valid:
        raise InvalidCredentials("the certificate request's signature does not verify")
    if not isinstance(csr.public_key(), ec.EllipticCurvePublicKey):
        raise InvalidCredentials("the certificate request must carry an EC P-256 key")
    return csr


def csr_node(csr: x509.CertificateSigningRequest) -> str:
    found = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return check_node_name(str(found[0].value) if found else "")


def write_private(path: Path, data: bytes) -> None:
    """Written whole or not at all, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Credentials:
    """A node's credentials directory (ca.crt, node.crt, node.key)."""

    directory: Path

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_FILE

    @property
    def cert_path(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    def exists(self) -> bool:
        return all(p.is_file() for p in (self.ca_path, self.cert_path, self.key_path))

    def check(self) -> Credentials:
        missing = [p.name for p in (self.ca_path, self.cert_path, self.key_path) if not p.is_file()]
        if missing:
            raise InvalidCredentials(
                f"no {', '.join(missing)} in {self.directory}: join the mesh first "
                "(mesh-llm serve --join TOKEN) or point MESH_TLS_DIR at a node's credentials"
            )
        return self

    def save(
        self, ca: x509.Certificate, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> None:
        write_private(self.key_path, key_pem(key))
        write_private(self.cert_path, pem(cert))
        write_private(self.ca_path, pem(ca))

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(ca, cert, key) as PEM bytes."""
        self.check()
        return self.ca_path.read_bytes(), self.cert_path.read_bytes(), self.key_path.read_bytes()

    def identity(self) -> Identity:
        return identity_of(load_cert(self.check().cert_path.read_bytes()))

    def server_context(self, *, client_cert_required: bool = True) -> ssl.SSLContext:
        """TLS for a server that takes client certificates from this mesh's CA only, and
        (by default) requires one."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca_path))
        context.load_cert_chain(self.cert_path, self.key_path)
        context.verify_mode = ssl.CERT_REQUIRED if client_cert_required else ssl.CERT_OPTIONAL
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def client_context(self, *, check_name: bool = True) -> ssl.SSLContext:
        """TLS for a client that presents this node's certificate and trusts only the mesh's
        CA. Connect with server_hostname=SERVER_NAME; or, where a connection pool cannot say
        that, `check_name=False`: the chain to the mesh's CA is then the whole check (every
        certificate of the mesh carries SERVER_NAME, so the name adds nothing to it)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_path))
        context.check_hostname = check_name
        context.load_cert_chain(self.cert_path, self.key_path)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context
