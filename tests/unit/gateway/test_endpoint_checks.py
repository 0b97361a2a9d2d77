from __future__ import annotations

import pytest

from meshllm.core import keys
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.gateway.endpoints import endpoint_problem

WORKER = pb.WorkerRecord(
    node="box2", worker_id="gpu0", relay_url="https://10.0.0.2:9342", grpc_address="10.0.0.2:9340"
)
GOOD = pb.Endpoint(
    model="qwen",
    instance_id="i1",
    node="box2",
    worker_id="gpu0",
    local_url="http://127.0.0.1:41000",
    relay_url="https://10.0.0.2:9342",
)


def endpoint(**changes: object) -> pb.Endpoint:
    changed = pb.Endpoint()
    changed.CopyFrom(GOOD)
    for name, value in changes.items():
        setattr(changed, name, value)
    return changed


@pytest.mark.parametrize(
    ("value", "key_model", "members", "problem"),
    [
        (GOOD, "qwen", {"box2"}, None),
        (GOOD, "qwen", set(), None),  # a mesh that records no members (no authority)
        (GOOD, "llama", {"box2"}, "its key names another model"),
        (endpoint(worker_id="gpu9"), "qwen", {"box2"}, "no worker 'gpu9'"),
        (endpoint(node="box9"), "qwen", {"box2"}, "no worker 'gpu0' is registered on node"),
        (GOOD, "qwen", {"box1"}, "not a member"),
        (endpoint(relay_url="https://203.0.113.9:443"), "qwen", set(), "not its worker's"),
        (endpoint(local_url="http://203.0.113.9:80"), "qwen", set(), "not on loopback"),
        (endpoint(local_url="https://127.0.0.1:80"), "qwen", set(), "not on loopback"),
    ],
)
def test_an_endpoint_must_check_out_against_the_store(
    value: pb.Endpoint, key_model: str, members: set[str], problem: str | None
) -> None:
    key = keys.endpoint("m", key_model, value.instance_id)
    found = endpoint_problem(key, value, {("box2", "gpu0"): WORKER}, members)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_a_worker_that_announces_a_relay_elsewhere_is_not_believed() -> None:
    liar = pb.WorkerRecord()
    liar.CopyFrom(WORKER)
    liar.relay_url = "https://203.0.113.9:9342"  # its gRPC is on 10.0.0.2
    forged = endpoint(relay_url=liar.relay_url)
    key = keys.endpoint("m", "qwen", "i1")
    problem = endpoint_problem(key, forged, {("box2", "gpu0"): liar}, set())
    assert problem is not None and "not on its worker's address" in problem


def test_model_names_with_slashes_are_compared_decoded() -> None:
    value = endpoint(model="org/model")
    key = keys.endpoint("m", "org/model", "i1")
    assert endpoint_problem(key, value, {("box2", "gpu0"): WORKER}, set()) is None
