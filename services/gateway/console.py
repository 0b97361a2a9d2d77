"""The console on :3131: a status page and the management API behind it (/api/status).
Read-only for now; it shows what the mesh is doing: workers, models, replicas, placement,
pipeline splits and the round-trip times between nodes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from google.protobuf.json_format import MessageToDict

from meshllm.core import keys
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, PrefixCache

from .endpoints import EndpointTable

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Mesh LLM</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;
margin-bottom:2em}td,th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}
h1{font-size:1.3em}</style></head><body><h1>Mesh LLM</h1><div id="out">loading…</div><script>
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
function table(head, rows){return '<table><tr>'+head.map(h=>'<th>'+esc(h)+'</th>').join('')+
 '</tr>'+rows.map(r=>'<tr>'+r.map(c=>'<td>'+esc(c)+'</td>').join('')+'</tr>').join('')+'</table>'}
async function refresh(){const s=await (await fetch('api/status')).json();
 document.getElementById('out').innerHTML='<h2>Models</h2>'+table(['model','replicas','nodes'],
 s.models.map(m=>[m.id,m.replicas.length,m.replicas.map(r=>r.node).join(', ')]))+
 '<h2>Workers</h2>'+table(['node','worker','device','budget GiB','instances'],
 s.workers.map(w=>[w.node,w.workerId,(w.device||{}).name||'',
 (((w.device||{}).memoryBudgetBytes||0)/2**30).toFixed(2),
 (w.instances||[]).map(i=>i.model+' '+i.state.replace('INSTANCE_STATE_','').toLowerCase()).join(', ')]))+
 '<h2>Placement</h2>'+table(['model','placed','replicas','requests/min','demand','next','why'],
 s.placement.map(p=>[p.model,p.placed?'yes':'no',p.replicas,p.requestsPerMinute.toFixed(1),
 p.demand,(p.next||[]).join('; '),(p.reasons||[]).join('; ')]))+
 '<h2>Splits</h2>'+table(['model','members'],s.groups.map(g=>[g.model,
 g.members.map(m=>m.role+' '+m.node+'/'+m.worker+' '+Math.round(m.share*100)+'%').join(', ')]))+
 '<h2>Round trips</h2>'+table(['from','to','ms'],s.rtt.flatMap(r=>
 Object.entries(r.rtt_ms).map(([to,ms])=>[r.node,to,ms.toFixed(1)])));}
refresh();setInterval(refresh,2000);</script></body></html>"""


def create_console(
    store: EtcdStore, mesh: str, table: EndpointTable
) -> tuple[FastAPI, list[PrefixCache]]:
    workers = PrefixCache(store, keys.workers(mesh), pb.WorkerRecord)
    placement = PrefixCache(store, keys.placements(mesh), pb.PlacementStatus)
    rtt = PrefixCache(store, keys.rtts(mesh), pb.RttReport)
    assignments = PrefixCache(store, keys.assignments(mesh), pb.Assignment)
    shards = PrefixCache(store, keys.shards(mesh), pb.ShardRecord)
    app = FastAPI(title="Mesh LLM console", docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        models = []
        for model, endpoints in sorted(table.served_models().items()):
            models.append(
                {
                    "id": model,
                    "replicas": [
                        {"node": e.node, "instance": e.instance_id, "worker": e.worker_id}
                        for e in endpoints
                    ],
                }
            )
        return {
            "mesh": mesh,
            "models": models,
            "workers": [MessageToDict(w) for _, w in sorted(workers.items.items())],
            "placement": [
                MessageToDict(p, always_print_fields_with_no_presence=True)
                for _, p in sorted(placement.items.items())
            ],
            "rtt": [
                {"node": r.node, "worker": r.worker_id, "rtt_ms": dict(sorted(r.rtt_ms.items()))}
                for _, r in sorted(rtt.items.items())
            ],
            "groups": split_groups(assignments.items.values()),
            "shards": shard_groups(assignments.items.values(), shards.items.values()),
        }

    return app, [workers, placement, rtt, assignments, shards]


ROLE_NAMES = {pb.ASSIGNMENT_ROLE_HOST: "host", pb.ASSIGNMENT_ROLE_PEER: "peer"}


def split_groups(assignments: Iterable[pb.Assignment]) -> list[dict[str, Any]]:
    """Each split: its model, group id and members (host first, then its peers in order)."""
    groups: dict[str, list[pb.Assignment]] = {}
    for a in assignments:
        if a.role in ROLE_NAMES:
            groups.setdefault(a.group_id, []).append(a)
    out = []
    for group_id, members in sorted(groups.items()):
        host = next((a for a in members if a.role == pb.ASSIGNMENT_ROLE_HOST), None)
        order = [host.id, *(p.assignment_id for p in host.peers)] if host else []
        members.sort(key=lambda a: order.index(a.id) if a.id in order else len(order))
        out.append(
            {
                "model": members[0].model,
                "group": group_id,
                "members": [
                    {
                        "role": ROLE_NAMES[a.role],
                        "node": a.node,
                        "worker": a.worker_id,
                        "share": round(a.share, 4),
                        "assignment": a.id,
                    }
                    for a in members
                ],
            }
        )
    return out


def shard_groups(
    assignments: Iterable[pb.Assignment], records: Iterable[pb.ShardRecord]
) -> list[dict[str, Any]]:
    """Each mixture's expert shards: where each runs, its experts per layer, and the quality
    the registry measured for it (null while it has not been measured)."""
    measured = {(r.model, r.spec.shard_id): r for r in records}
    groups: dict[str, list[pb.Assignment]] = {}
    for a in assignments:
        if a.role == pb.ASSIGNMENT_ROLE_SHARD:
            groups.setdefault(a.group_id, []).append(a)
    out = []
    for group_id, members in sorted(groups.items()):
        members.sort(key=lambda a: (a.node, a.worker_id))
        out.append({
            "model": members[0].model,
            "group": group_id,
            "planned": len(members[0].shard.plan),
            "members": [
                {
                    "node": a.node, "worker": a.worker_id, "shard": a.shard.shard_id,
                    "experts": a.shard.expert_count, "core": a.shard.core,
                    "expert_ids": [list(layer.experts) for layer in a.shard.layers],
                    "quality": _quality(measured.get((a.model, a.shard.shard_id))),
                }
                for a in members
            ],
        })  # fmt: skip
    return out


def _quality(record: pb.ShardRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "passed": record.passed,
        "ppl_ratio": round(record.ppl_ratio, 4),
        "same_top": round(record.same_top, 4),
        "verdict": record.quality,
        "measured_on": record.node,
    }
