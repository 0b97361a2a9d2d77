"""`mesh-llm status` in words: what each kind of placement, member and model reads as, and
the one-line errors when the console cannot be read (against a local HTTP server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from meshllm.cli.status import (
    StatusError,
    fetch_status,
    find_model,
    member_text,
    mesh_lines,
    model_lines,
    placement_text,
)
from meshllm.gateway.console import schema


def member(**change: Any) -> schema.Member:
    fields: dict[str, Any] = dict(
        node="n1", worker="cpu0", role="solo", state="ready", memory_bytes=2_000_000_000,
        layer_share=None, experts=None, expert_ids=None, quality=None,
    )  # fmt: skip
    return schema.Member(**{**fields, **change})


def quality(passed: bool) -> schema.ShardQuality:
    return schema.ShardQuality(
        passed=passed, ppl_ratio=1.0123, same_top=0.91 if passed else 0.4, verdict="",
        measured_on="n2",
    )  # fmt: skip


def model(**change: Any) -> schema.Model:
    fields: dict[str, Any] = dict(
        id="tiny", aliases=["t"], state="serving", architecture="llama",
        size_bytes=500_000_000, context_length=4096, capabilities=["chat"], replicas=1,
        placements=[schema.Placement(kind="solo", group="g", context=2048, members=[member()])],
        demand=None, why=["placed on n1"], next=[],
    )  # fmt: skip
    return schema.Model(**{**fields, **change})


def status(*models: schema.Model) -> schema.Status:
    device = schema.Device(
        id="cpu0", name="CPU", backend="cpu", stable_id="cpu:0", pinnable=False,
        memory_total_bytes=16_000_000_000, memory_budget_bytes=8_000_000_000,
        memory_reserved_bytes=2_000_000_000, memory_used_bytes=0, bandwidth_gbps=None,
    )  # fmt: skip
    worker = schema.Worker(id="cpu0", device=device, draining=True, standby=False, instances=[])
    nodes = [
        schema.Node(id="n1", role="serving", version="1", services=["gateway"],
                    workers=[worker], rtt_ms=None),
        schema.Node(id="n2", role="standby", version="1", services=[], workers=[], rtt_ms=0.42),
    ]  # fmt: skip
    here = schema.ThisNode(
        id="n1", role="serving", version="1", llama_build="b", api_url="http://a/v1",
        console_url="http://c", addresses=[], invite_token="",
    )  # fmt: skip
    return schema.Status(
        mesh_id="m", this_node=here, nodes=nodes, models=list(models), in_flight=0,
        routing=[], updated_unix=0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "nodes", "expected"),
    [
        ("solo", ["n1"], "on n1"),
        ("split", ["n2", "n1", "n3"], "split over n1, n2, n3"),
        ("shards", ["n1", "n2"], "2 shards on n1, n2"),
    ],
)
def test_a_placement_in_words(kind: str, nodes: list[str], expected: str) -> None:
    members = [member(node=n) for n in nodes]
    placement = schema.Placement(kind=kind, group="g", context=512, members=members)  # type: ignore[arg-type]
    assert placement_text(placement) == expected


@pytest.mark.parametrize(
    ("change", "shown", "not_shown"),
    [
        ({}, "n1/cpu0  solo  ready  2.0 GB", "quality"),
        ({"role": "peer", "layer_share": 0.25}, "25% of the layers", "quality"),
        ({"role": "shard", "experts": 6, "quality": quality(True)},
         "6 experts per layer  quality passes: perplexity x1.012, same top token 91% "
         "(measured on n2)", "FAILS"),
        ({"role": "shard", "experts": 6, "quality": quality(False)}, "quality FAILS", "passes"),
        ({"role": "shard", "experts": 6}, "quality not measured yet", "passes"),
    ],
)  # fmt: skip
def test_a_member_in_words(change: dict[str, Any], shown: str, not_shown: str) -> None:
    text = member_text(member(**change))
    assert shown in text and not_shown not in text


def test_the_mesh_in_rows_with_the_reasons_of_what_waits() -> None:
    waiting = model(
        id="big", state="pending", placements=[], replicas=0,
        why=["fits no device: needs 90 GB"], next=["1 more replica: no standby"],
    )  # fmt: skip
    lines = mesh_lines(status(model(), waiting))
    text = "\n".join(lines)
    assert lines[0] == "mesh m · 2 node(s) · 2 model(s) · this node n1"
    assert "cpu: CPU, 2.0 GB of 8.0 GB draining" in text and "0.4 ms" in text
    row = next(line for line in lines if line.startswith("tiny "))
    assert row.split()[:4] == ["tiny", "serving", "1", "on"]
    assert "big is pending:\n  fits no device: needs 90 GB\n  1 more replica: no standby" in text
    assert "placed on n1" not in text  # a serving model's reasons only in its own view


def test_an_empty_mesh_says_how_to_start() -> None:
    assert mesh_lines(status())[-1].startswith("no models yet: serve one")


def test_one_model_in_full() -> None:
    demand = schema.Demand(requests_per_minute=12.5, last_request_unix=1, pinned_replicas=1,
                           mesh_replicas=2, verdict="hot: one more replica")  # fmt: skip
    text = "\n".join(model_lines(model(demand=demand, next=["wants n3"])))
    assert text.startswith("tiny · serving · llama · 0.5 GB · context 4096 · chat\n")
    assert "also called t" in text and "placement 1: solo, context 2048" in text
    assert "demand: 12.5 requests/min, 1 pinned replica(s), 2 for the traffic; hot" in text
    assert "why:\n  placed on n1" in text and "wanted next:\n  wants n3" in text
    assert "nobody has asked for it" in "\n".join(model_lines(model()))


def test_a_model_found_by_name_or_alias_or_refused_with_the_known_ones() -> None:
    mesh = status(model())
    assert find_model(mesh, "tiny").id == find_model(mesh, "t").id == "tiny"
    with pytest.raises(StatusError, match=r"no model 'other' \(it knows: tiny\)"):
        find_model(mesh, "other")


class Console(BaseHTTPRequestHandler):
    replies: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:
        key = self.headers.get("Authorization", "")
        code, body = self.replies.get(key, (401, b"{}"))
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def console() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Console)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_status_is_read_with_the_key(console: str) -> None:
    Console.replies = {
        "Bearer good": (200, status(model()).model_dump_json().encode()),
        "Bearer junk": (200, json.dumps({"hello": 1}).encode()),
    }
    assert fetch_status(console, "good").models[0].id == "tiny"
    for key, message in [
        ("", "wants an API key, and one was not given: pass --api-key"),
        ("bad", "wants an API key, and one was refused"),
        ("junk", "did not answer with a mesh's status"),
    ]:
        with pytest.raises(StatusError, match=message):
            fetch_status(console, key)


def test_no_console_says_what_to_do() -> None:
    with pytest.raises(StatusError, match=r"no console answers at http://127.0.0.1:9 .*--console"):
        fetch_status("http://127.0.0.1:9", "", timeout_s=2)
