"""`mesh-llm status`: what the mesh looks like from this machine — its nodes, their devices
and memory, every model with where it runs, the demand behind it and the scheduler's reasons
— read from the node's console API (`/api/status`, docs/API.md) and put into words."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from pydantic import ValidationError

from meshllm.gateway.console.schema import Member, Model, Node, Placement, Status

from .tables import size_text, table_lines


class StatusError(Exception):
    """One line for the user."""


def fetch_status(console: str, api_key: str, timeout_s: float = 10) -> Status:
    """The status the console at `console` (http://host:port) reports."""
    request = urllib.request.Request(f"{console.rstrip('/')}/api/status")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            body = reply.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            given = "was refused" if api_key else "was not given"
            raise StatusError(
                f"the console at {console} wants an API key, and one {given}: pass --api-key "
                "KEY (or set MESH_LLM_API_KEY)"
            ) from None
        raise StatusError(f"the console at {console} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatusError(
            f"no console answers at {console} ({reason}): is a node running here "
            "(mesh-llm serve)? Point at another with --console URL"
        ) from None
    try:
        return Status.model_validate(json.loads(body))
    except (ValueError, ValidationError):
        raise StatusError(f"{console} did not answer with a mesh's status") from None


def find_model(status: Status, name: str) -> Model:
    """The model called `name` (its id or an alias), or StatusError naming the known ones."""
    for model in status.models:
        if name == model.id or name in model.aliases:
            return model
    known = ", ".join(m.id for m in status.models) or "none yet"
    raise StatusError(f"the mesh knows no model {name!r} (it knows: {known})")


def mesh_lines(status: Status) -> list[str]:
    """The whole mesh: a heading, a row per node, a row per model, and what waits, why."""
    here = status.this_node
    lines = [
        f"mesh {status.mesh_id} · {len(status.nodes)} node(s) · {len(status.models)} model(s) "
        f"· this node {here.id}",
        f"api {here.api_url}" + (f" · console {here.console_url}" if here.console_url else ""),
        "",
    ]
    node_rows = [
        [n.id, n.role, ", ".join(n.services) or "-", devices_text(n), rtt_text(n)]
        for n in status.nodes
    ]
    lines += table_lines(node_rows, ["NODE", "ROLE", "SERVICES", "DEVICES", "RTT"])
    if not status.models:
        return [*lines, "", "no models yet: serve one (mesh-llm serve --model NAME)"]
    model_rows = [
        [m.id, m.state, str(m.replicas), "; ".join(map(placement_text, m.placements)) or "-",
         demand_text(m)]
        for m in status.models
    ]  # fmt: skip
    lines += ["", *table_lines(model_rows, ["MODEL", "STATE", "READY", "WHERE", "REQ/MIN"])]
    waiting = [m for m in status.models if m.state != "serving" and (m.why or m.next)]
    for model in waiting:
        lines += ["", f"{model.id} is {model.state}:"]
        lines += [f"  {reason}" for reason in [*model.why, *model.next]]
    return lines


def model_lines(model: Model) -> list[str]:
    """One model in full: its facts, each placement member by member, demand and reasons."""
    facts = [model.state, model.architecture, size_text(model.size_bytes),
             f"context {model.context_length}", ", ".join(model.capabilities)]  # fmt: skip
    lines = [f"{model.id} · " + " · ".join(fact for fact in facts if fact)]
    if model.aliases:
        lines.append(f"also called {', '.join(model.aliases)}")
    for number, placement in enumerate(model.placements, start=1):
        lines.append(f"placement {number}: {placement.kind}, context {placement.context}")
        lines += [f"  {member_text(member)}" for member in placement.members]
    if not model.placements:
        lines.append("placed nowhere")
    if model.demand is not None:
        d = model.demand
        lines.append(
            f"demand: {d.requests_per_minute:.1f} requests/min, {d.pinned_replicas} pinned "
            f"replica(s), {d.mesh_replicas} for the traffic; {d.verdict}"
        )
    else:
        lines.append("demand: nobody has asked for it")
    if model.why:
        lines += ["why:", *[f"  {reason}" for reason in model.why]]
    if model.next:
        lines += ["wanted next:", *[f"  {reason}" for reason in model.next]]
    return lines


def devices_text(node: Node) -> str:
    parts = []
    for worker in node.workers:
        device = worker.device
        used = size_text(device.memory_reserved_bytes)
        budget = size_text(device.memory_budget_bytes)
        flags = " draining" if worker.draining else ""
        parts.append(f"{device.backend}: {device.name}, {used} of {budget}{flags}")
    return "; ".join(parts) or "-"


def rtt_text(node: Node) -> str:
    return "-" if node.rtt_ms is None else f"{node.rtt_ms:.1f} ms"


def placement_text(placement: Placement) -> str:
    nodes = ", ".join(sorted({member.node for member in placement.members}))
    if placement.kind == "solo":
        return f"on {nodes}"
    if placement.kind == "split":
        return f"split over {nodes}"
    return f"{len(placement.members)} shards on {nodes}"


def member_text(member: Member) -> str:
    text = f"{member.node}/{member.worker}  {member.role}  {member.state}  "
    text += size_text(member.memory_bytes)
    if member.layer_share is not None:
        text += f"  {member.layer_share:.0%} of the layers"
    if member.experts is not None:
        text += f"  {member.experts} experts per layer"
    if member.quality is not None:
        q = member.quality
        verdict = "passes" if q.passed else "FAILS"
        text += (
            f"  quality {verdict}: perplexity x{q.ppl_ratio:.3f}, same top token "
            f"{q.same_top:.0%} (measured on {q.measured_on})"
        )
    elif member.role == "shard":
        text += "  quality not measured yet"
    return text


def demand_text(model: Model) -> str:
    return "-" if model.demand is None else f"{model.demand.requests_per_minute:.1f}"
