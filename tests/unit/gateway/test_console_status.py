"""The console's status (gateway/console/status.py) as a pure function of store records, its
schema, and docs/API.md, which must name every field the schema has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.gateway.console import schema
from meshllm.gateway.console.status import Here, MeshSnapshot, build_status, node_role

API_DOC = Path(__file__).resolve().parents[3] / "docs" / "API.md"
HERE = Here("a", "0.1.0", "http://127.0.0.1:9337/v1", "http://127.0.0.1:3131")


def models_in(model: type[BaseModel]) -> set[type[BaseModel]]:
    found = {model}
    for field in model.model_fields.values():
        for inner in re.findall(r"schema\.(\w+)|\b([A-Z]\w+)\b", str(field.annotation)):
            cls = getattr(schema, inner[0] or inner[1], None)
            if isinstance(cls, type) and issubclass(cls, BaseModel) and cls not in found:
                found |= models_in(cls)
    return found


def test_api_md_names_every_field_of_the_status() -> None:
    text = API_DOC.read_text()
    missing = [
        f"{m.__name__}.{name}"
        for m in models_in(schema.Status)
        for name in m.model_fields
        if f"`{name}`" not in text
    ]
    assert not missing, f"docs/API.md does not describe {missing}"
    assert len(models_in(schema.Status)) >= 10


def instance(state: int) -> pb.Instance:
    return pb.Instance(id="i", model="m", state=state)


@pytest.mark.parametrize(
    ("workers", "role"),
    [
        ([], "client"),
        ([pb.WorkerRecord()], "standby"),
        ([pb.WorkerRecord(instances=[instance(pb.INSTANCE_STATE_LOADING)])], "loading"),
        ([pb.WorkerRecord(instances=[instance(pb.INSTANCE_STATE_FAILED)])], "standby"),
        (
            [
                pb.WorkerRecord(instances=[instance(pb.INSTANCE_STATE_LOADING)]),
                pb.WorkerRecord(instances=[instance(pb.INSTANCE_STATE_READY)]),
            ],
            "serving",
        ),
    ],
)
def test_a_nodes_role(workers: list[pb.WorkerRecord], role: str) -> None:
    assert node_role(workers) == role


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        (pb.Device(uuid="GPU-1", pci_bus_id="00000000:65:00.0"), "uuid:GPU-1"),
        (pb.Device(pci_bus_id="00000000:65:00.0"), "pci:0000:65:00.0"),
        (pb.Device(kind=pb.DEVICE_KIND_CPU), "cpu:0"),
        (pb.Device(kind=pb.DEVICE_KIND_ROCM, index=2), "index:2"),
    ],
)
def test_the_status_shows_the_stable_ids_mesh_llm_gpus_prints(
    device: pb.Device, expected: str
) -> None:
    worker = pb.WorkerRecord(node="a", worker_id="w", device=device)
    shown = status_of(workers=[worker]).nodes[0].workers[0].device
    assert (shown.stable_id, shown.pinnable) == (expected, expected.startswith(("uuid", "pci")))


def status_of(**records: Any) -> schema.Status:
    return build_status(MeshSnapshot(mesh_id="m", **records), HERE, now=1.0)


def test_a_model_is_pending_then_loading_then_serving() -> None:
    entry = pb.CatalogEntry(name="m", facts=pb.ModelFacts(expert_count=8))
    entry.projector.kind = pb.MODEL_SOURCE_KIND_PATH
    placed = pb.Assignment(id="a", group_id="a", model="m", node="a", worker_id="w")
    ready = pb.Endpoint(model="m", instance_id="i", node="a", worker_id="w")
    pending = status_of(catalog=[entry]).models[0]
    loading = status_of(catalog=[entry], assignments=[placed]).models[0]
    serving = status_of(catalog=[entry], assignments=[placed], endpoints=[ready]).models[0]
    assert (pending.state, loading.state, serving.state) == ("pending", "loading", "serving")
    assert serving.capabilities == ["chat", "vision", "experts"] and serving.replicas == 1
    assert loading.placements[0].members[0].state == "assigned"


def test_reserved_memory_is_what_the_assignments_on_a_device_take() -> None:
    worker = pb.WorkerRecord(node="a", worker_id="w", device=pb.Device(memory_total_bytes=100))
    taken = [pb.Assignment(id=i, model="m", node="a", worker_id="w", memory_bytes=30) for i in "xy"]
    elsewhere = pb.Assignment(id="z", model="m", node="b", worker_id="w", memory_bytes=5)
    (node,) = status_of(workers=[worker], assignments=[*taken, elsewhere]).nodes
    assert node.workers[0].device.memory_reserved_bytes == 60


def test_a_node_running_only_a_gateway_is_a_client_and_in_flight_sums_the_models() -> None:
    services = [pb.ServiceRecord(kind="gateway", node="c", version="0.1.0")]
    routing = [
        schema.Routing(model=m, requests=5, failures=0, retries=0, failovers=0, in_flight=n)
        for m, n in (("x", 2), ("y", 1))
    ]
    status = status_of(services=services, routing=routing)
    assert [(n.id, n.role, n.services) for n in status.nodes] == [("c", "client", ["gateway"])]
    assert status.in_flight == 3 and status.this_node.role == "client"
