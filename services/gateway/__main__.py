"""The gateway service: `python -m meshllm.gateway` (settings from MESH_* variables)."""

from __future__ import annotations

from meshllm.core.lifecycle import Closer, EmbeddedUvicorn
from meshllm.core.service import VERSION, ServiceContext, ServiceParts, service_main
from meshllm.core.streaming import relay_session, upstream_session

from .app import GatewayApp, create_api
from .console.app import ConsoleView, create_console
from .console.status import Here
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
    inference = GatewayApp(proxy, create_api(table))
    if settings.console_port:
        view = ConsoleView(ctx.store, settings.mesh_id, table)
        here = Here(
            node=settings.node,
            version=VERSION,
            api_url=settings.api_url,
            console_url=settings.console_url,
            invite_token=settings.invite_token.get_secret_value(),
            client_invite_token=settings.client_invite_token.get_secret_value(),
        )
        console, feed = create_console(
            view, here, ctx.store, ctx.lease, credentials, lambda: local, inference,
            page=not settings.headless,
        )  # fmt: skip
        guarded = ApiGuard(console, policy)
        components += [
            *view.caches,
            feed,
            EmbeddedUvicorn(guarded, settings.bind_host, settings.console_port),
        ]
    return ServiceParts(components=components, http_app=ApiGuard(inference, policy))


def cli() -> None:
    # The API answers while etcd is away: 503s until the routing table has loaded.
    service_main("gateway", GatewaySettings, build, store_required=False)


if __name__ == "__main__":
    cli()
