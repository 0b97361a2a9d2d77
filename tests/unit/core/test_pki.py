from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from meshllm.core import pki


@pytest.fixture(scope="module")
def ca():  # type: ignore[no-untyped-def]
    return pki.create_ca("m-pki")


def test_a_node_certificate_says_who_what_and_which_mesh(ca) -> None:  # type: ignore[no-untyped-def]
    ca_key, ca_cert = ca
    key = pki.new_key()
    cert = pki.issue(
        ca_key,
        ca_cert,
        key.public_key(),
        node="box-2",
        role=pki.CLIENT,
        hosts=("10.0.0.7", "box2.lan"),
    )
    identity = pki.identity_of(cert)
    assert (identity.node, identity.role, identity.mesh_id) == ("box-2", "client", "m-pki")
    assert identity.serial == cert.serial_number
    cert.verify_directly_issued_by(ca_cert)
    names = cert.extensions.get_extension_for_class(pki.x509.SubjectAlternativeName).value
    assert {str(n.value) for n in names} >= {
        "mesh-llm",
        "localhost",
        "127.0.0.1",
        "10.0.0.7",
        "box2.lan",
    }


def test_a_csr_names_its_node_and_proves_its_key() -> None:
    key = pki.new_key()
    csr = pki.load_csr(pki.pem(pki.make_csr(key, "box-3")))
    assert pki.csr_node(csr) == "box-3" and csr.public_key() == key.public_key()
    with pytest.raises(pki.InvalidCredentials, match="not a PEM certificate request"):
        pki.load_csr(
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        )


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("box1", True),
        ("gpu-node.lab", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("root", False),
        ("Box1", False),
        ("-box", False),
        ("", False),
        ("box 1", False),
        ("box/1", False),
    ],
)
def test_node_names(name: str, ok: bool) -> None:
    if ok:
        assert pki.check_node_name(name) == name
    else:
        with pytest.raises(pki.InvalidCredentials, match="not allowed"):
            pki.check_node_name(name)


def test_fingerprints_tell_cas_apart(ca) -> None:  # type: ignore[no-untyped-def]
    _, ca_cert = ca
    _, other = pki.create_ca("m-pki")
    assert pki.fingerprint(ca_cert) == pki.fingerprint(ca_cert)
    assert pki.fingerprint(ca_cert) != pki.fingerprint(other)
    assert len(pki.fingerprint(ca_cert)) == 43


def test_credentials_are_private_files_and_make_tls_contexts(ca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ca_key, ca_cert = ca
    key = pki.new_key()
    cert = pki.issue(ca_key, ca_cert, key.public_key(), node="box-4", role=pki.NODE)
    credentials = pki.Credentials(tmp_path / "creds")
    with pytest.raises(pki.InvalidCredentials, match="join the mesh first"):
        credentials.check()
    credentials.save(ca_cert, cert, key)
    assert credentials.exists() and credentials.identity().node == "box-4"
    assert (credentials.key_path.stat().st_mode & 0o777) == 0o600
    assert credentials.server_context().verify_mode == ssl.CERT_REQUIRED
    assert credentials.server_context(client_cert_required=False).verify_mode == ssl.CERT_OPTIONAL
    assert credentials.client_context().check_hostname
