"""Who may call what: the one policy every gRPC service and the worker relay apply to the
peer a mutual-TLS connection proves.

Reading (status, plans, model facts) is open to every member of the mesh, API clients
included; anything that changes the mesh (load, unload, drain, register) needs a serving node.
A peer must belong to this mesh (its certificate's O is the mesh id) and must not be revoked.
Without TLS (a service bound to loopback for development) there is no identity to check: the
bind rule in `check_exposure` is what keeps that mode off the network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Container, Mapping
from functools import lru_cache
from typing import Any

from . import keys
from .errors import InvalidRequest
from .pki import AUTHORITY, CLIENT, NODE, Credentials, Identity, identity_of, load_cert

MEMBERS = frozenset({NODE, CLIENT, AUTHORITY})
SERVING = frozenset({NODE, AUTHORITY})

# Methods an API client may call; every other method needs SERVING.
READ_METHODS = frozenset(
    {
        "/mesh.v1.WorkerService/GetStatus",
        "/mesh.v1.SchedulerService/GetPlan",
        "/mesh.v1.SchedulerService/ExplainPlacement",
        "/mesh.v1.RegistryService/ListModels",
        "/mesh.v1.RegistryService/LocateModel",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
    }
)


def roles_for(method: str) -> frozenset[str]:
    return MEMBERS if method in READ_METHODS else SERVING


def refusal(
    peer: Identity | None,
    *,
    mesh_id: str,
    allowed: frozenset[str],
    revoked: Container[int],
) -> str | None:
    """None when `peer` may go on, else why not (one line, safe to send back)."""
    if peer is None:
        return "no client certificate: this service takes only members of its mesh"
    if peer.mesh_id != mesh_id:
        return "the client certificate belongs to another mesh"
    if peer.serial in revoked:
        return f"node '{peer.node}' has been revoked from this mesh"
    if peer.role not in allowed:
        return f"a {peer.role or 'role-less'} certificate may not do this (needs a serving node)"
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ExposedWithoutCredentials(InvalidRequest):
    pass


def check_exposure(what: str, host: str, credentials: Credentials | None) -> None:
    """A door of the mesh (gRPC, the worker relay, etcd) opens beyond loopback only with
    mutual TLS: without credentials it must listen on loopback."""
    if credentials is None and not is_loopback(host):
        raise ExposedWithoutCredentials(
            f"{what} would listen on {host} without TLS: give the node's credentials "
            "(MESH_TLS_DIR) or listen on 127.0.0.1"
        )


def scope_identity(scope: Mapping[str, Any]) -> Identity | None:
    """The identity an ASGI request's TLS client certificate proves (core/httpserver.py puts
    it in the scope); None on a plain connection."""
    chain = scope.get("extensions", {}).get("tls", {}).get("client_cert_chain") or []
    return cert_identity(chain[0]) if chain else None


@lru_cache(maxsize=1024)
def cert_identity(cert_pem: str | bytes) -> Identity:
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    return identity_of(load_cert(data))


class RevokedSerials(Container[int]):
    """The serials revoked in the mesh, read from a cache of /mesh-auth/<mesh>/revoked/ keyed
    by store key: a lookup of the serial's own key, not a scan (it runs on every call)."""

    def __init__(self, mesh_id: str, items: Callable[[], Mapping[str, object]]) -> None:
        self._mesh_id = mesh_id
        self._items = items

    def __contains__(self, serial: object) -> bool:
        return isinstance(serial, int) and keys.revocation(self._mesh_id, serial) in self._items()
