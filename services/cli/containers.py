"""What container deployments run where `mesh-llm serve` would do it in one process:

- `mesh-llm authority`: the founding box's CA and authority, beside an etcd container that
  uses the certificate it makes (compose);
- `mesh-llm enrol`: a joining box's one-shot enrolment, its credentials written for the
  box's services (compose);
- `mesh-llm credentials issue`: a certificate from a CA given as files, for clusters whose
  CA is made by the installer (Helm) rather than by an authority.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meshllm.core import pki
from meshllm.core.errors import MeshError, Unavailable
from meshllm.core.invite import decode_token

from .membership import Founder, MembershipError, join

STORE_WAIT_S = 180.0


class DeployError(Exception):
    """One line for the user."""


async def run_authority(
    directory: Path,
    *,
    mesh_id: str,
    node: str,
    host: str,
    port: int,
    etcd: str,
    etcd_public: str,
    mesh_name: str = "",
) -> int:
    """Make the CA (once), wait for etcd, admit this box's node, then keep the door open
    until SIGTERM. The box's services read their credentials from `directory`/node."""
    founder = Founder(directory, node, host, port, credentials_dir=directory / "node")
    mesh_id = founder.prepare(mesh_id)
    print(f"authority of mesh {mesh_id}: CA in {founder.files.directory}", flush=True)
    deadline = time.monotonic() + STORE_WAIT_S
    while True:
        try:
            access = await founder.open(
                mesh_id, [etcd_public], local=[etcd], mesh_name=mesh_name, external_store=False
            )
            break
        except Unavailable as exc:
            await founder.close()
            if time.monotonic() > deadline:
                raise DeployError(exc.message) from exc
            founder = Founder(directory, node, host, port, credentials_dir=directory / "node")
        except (MeshError, MembershipError) as exc:
            raise DeployError(str(exc)) from exc
    print(
        f"node {access.node} admitted; door open on {host}:{founder.authority_port} "
        "(mint invites with: mesh-llm invite --credentials " + str(access.credentials) + ")",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await founder.close()
    return 0


async def run_enrol(token_text: str, directory: Path, node: str, host: str, as_json: bool) -> int:
    try:
        token = decode_token(token_text)
        access = await join(token, node, host, directory)
    except MeshError as exc:
        raise DeployError(exc.message) from exc
    except MembershipError as exc:
        raise DeployError(str(exc)) from exc
    if as_json:
        print(json.dumps({"mesh_id": access.mesh_id, "node": access.node, "role": access.role}))
    else:
        print(f"node {access.node} is a member of mesh {access.mesh_id} ({access.role})")
    return 0


def issue_from_files(
    ca_dir: Path, mesh_id: str, node: str, role: str, out: Path, hosts: tuple[str, ...]
) -> pki.Identity:
    """A node certificate signed by the CA in `ca_dir` (ca.crt, ca.key), saved in `out`."""
    try:
        ca = pki.load_cert((ca_dir / pki.CA_FILE).read_bytes())
        ca_key = serialization.load_pem_private_key(
            (ca_dir / pki.CA_KEY_FILE).read_bytes(), password=None
        )
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot read the CA in {ca_dir}: {exc}") from exc
    key = pki.new_key()
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise DeployError(f"the CA key in {ca_dir} is neither EC nor RSA")
    try:
        cert = pki.issue(
            ca_key,
            ca,
            key.public_key(),
            node=node,
            role=role,
            hosts=hosts,
            mesh_id=mesh_id,
        )
    except MeshError as exc:
        raise DeployError(exc.message) from exc
    pki.Credentials(out).save(ca, cert, key)
    return pki.identity_of(cert)
