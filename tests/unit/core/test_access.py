from __future__ import annotations

import pytest

from meshllm.core import access
from meshllm.core.pki import Identity

NODE = Identity("box1", "node", "m-1", 11)
CLIENT = Identity("laptop", "client", "m-1", 12)
STRANGER = Identity("box9", "node", "m-2", 13)
REVOKED = Identity("box3", "node", "m-1", 14)


@pytest.mark.parametrize(
    ("peer", "method", "refused"),
    [
        (NODE, "/mesh.v1.WorkerService/UnloadModel", None),
        (NODE, "/mesh.v1.WorkerService/GetStatus", None),
        (CLIENT, "/mesh.v1.WorkerService/GetStatus", None),
        (CLIENT, "/mesh.v1.SchedulerService/ExplainPlacement", None),
        (CLIENT, "/mesh.v1.WorkerService/UnloadModel", "needs a serving node"),
        (CLIENT, "/mesh.v1.WorkerService/DrainWorker", "needs a serving node"),
        (CLIENT, "/mesh.v1.RegistryService/RegisterModel", "needs a serving node"),
        (CLIENT, "/mesh.v1.RegistryService/InspectModel", "needs a serving node"),
        (CLIENT, "/mesh.v1.RegistryService/ReadModel", "needs a serving node"),
        (NODE, "/mesh.v1.RegistryService/ReadModel", None),
        (STRANGER, "/mesh.v1.WorkerService/GetStatus", "another mesh"),
        (REVOKED, "/mesh.v1.WorkerService/GetStatus", "revoked"),
        (None, "/mesh.v1.WorkerService/GetStatus", "no client certificate"),
        (Identity("x", "", "m-1", 15), "/mesh.v1.WorkerService/LoadModel", "role-less"),
    ],
)
def test_who_may_call_what(peer: Identity | None, method: str, refused: str | None) -> None:
    reason = access.refusal(peer, mesh_id="m-1", allowed=access.roles_for(method), revoked={14})
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("", False),
        ("box1", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert access.is_loopback(host) is loopback


def test_nothing_opens_beyond_loopback_without_credentials(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from meshllm.core.pki import Credentials

    access.check_exposure("gRPC", "127.0.0.1", None)
    access.check_exposure("gRPC", "0.0.0.0", Credentials(tmp_path))
    with pytest.raises(access.ExposedWithoutCredentials, match="MESH_TLS_DIR"):
        access.check_exposure("the worker relay", "0.0.0.0", None)


def test_revoked_serials_read_the_cache_by_key() -> None:
    items = {"/mesh-auth/m-1/revoked/14": object()}
    revoked = access.RevokedSerials("m-1", lambda: items)
    assert 14 in revoked and 1 not in revoked and 4 not in revoked
