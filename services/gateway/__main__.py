"""The gateway service: `python -m meshllm.gateway` (settings from MESH_* variables)."""

from __future__ import annotations

from meshllm.core.lifecycle import Closer, EmbeddedUvicorn
from meshllm.core.service import ServiceContext, ServiceParts, service_main
from meshllm.core.streaming import relay_session, upstream_session

from .app import GatewayApp, create_api
from .console import create_console
from .demand import DemandRecorder
from .endpoints import EndpointTable
from .guard import ApiGuard
from .proxy import Proxy
from .routing import Router
from .settings import GatewaySettings


async def build(ctx: ServiceContext) -> ServiceParts:
    settings = ctx.settings
    assert isinstance(settings, GatewaySettings)
    table = EndpointTable(ctx.store, settings.mesh_id)
    local = upstream_session()
    credentials = ctx.credentials
    relays = relay_session(credentials.client_context(check_name=False) if credentials else None)
    demand = DemandRecorder(ctx.store, settings.mesh_id, ctx.instance, settings.traffic)
    proxy = Proxy(
        settings.proxy,
        settings.node,
        table,
        Router(settings.routing),
        lambda: local,
        lambda: relays,
        demand.record,
    )
    components = [Closer(local), Closer(relays), *table.caches, demand]
    policy = settings.api_policy()
    if settings.console_port:
        console, caches = create_console(ctx.store, settings.mesh_id, table)
        guarded = ApiGuard(console, policy)
        components += [*caches, EmbeddedUvicorn(guarded, settings.bind_host, settings.console_port)]
    app = ApiGuard(GatewayApp(proxy, create_api(table)), policy)
    return ServiceParts(components=components, http_app=app)


def cli() -> None:
    # The API answers while etcd is away: 503s until the routing table has loaded.
    service_main("gateway", GatewaySettings, build, store_required=False)


if __name__ == "__main__":
    cli()
