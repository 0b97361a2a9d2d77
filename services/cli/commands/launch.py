"""`mesh-llm goose|claude|opencode`: run an agent harness against the mesh (cli/launchers.py
builds its argv and environment).

The mesh is the one whose API answers on this machine's `--port` (or at `--api URL`, a mesh's
API elsewhere, with `--api-key` where it needs one). When none does, `--join TOKEN` or
`--auto` starts an API-only node (`mesh-llm client`) in the background for as long as the
harness runs, and stops it afterwards whatever happened (it also gets SIGTERM should this
process die). Its state (credentials, logs) stays in `$MESH_HOME/launch/<node>`, so launching
again rejoins as the same member without spending the token again."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from .common import Subcommands, add_api_key_flag, fail

if TYPE_CHECKING:
    import aiohttp

    from meshllm.core.process import ChildProcess

    from ..launchers import Launch

HARNESSES = {  # the command, and the harness it runs
    "goose": "goose (Block's agent)",
    "claude": "Claude Code",
    "opencode": "opencode",
}
NODE_READY_TIMEOUT_S = 180.0  # enrolment and the gateway's start
MODELS_TIMEOUT_S = 60.0  # a new gateway's first view of the mesh's models
NODE_STOP_GRACE_S = 30.0


def add_parser(commands: Subcommands) -> None:
    for name, what in HARNESSES.items():
        parser = commands.add_parser(
            name,
            help=f"run {what} on the mesh's models",
            description=f"Run {what} with the mesh as its model provider: the mesh whose "
            "API answers on this machine, or with --join or --auto an API-only node started "
            "for as long as it runs. Its configuration goes in its environment and command "
            "line; your own config files are left alone. Arguments after -- go to "
            f"{name}.",
        )
        parser.add_argument(
            "--model",
            default="",
            metavar="NAME",
            help="the model to use (default: the largest one the mesh serves that is good at "
            "tool calls, else the largest)",
        )
        parser.add_argument(
            "--port", type=int, default=9337, help="the port of this machine's API (default 9337)"
        )
        parser.add_argument(
            "--api",
            default="",
            metavar="URL",
            help="a mesh's API elsewhere, http(s)://host:port (default: this machine's, on --port)",
        )
        add_api_key_flag(parser)
        parser.add_argument(
            "--join",
            default="",
            metavar="TOKEN",
            help="no mesh here: join the one this invite token names as an API-only node "
            "while the harness runs",
        )
        parser.add_argument(
            "--auto",
            action="store_true",
            help="no mesh here: join the largest one announced on the local network while "
            "the harness runs",
        )
        parser.add_argument(
            "--print-config",
            action="store_true",
            help=f"print the command and environment {name} would get, and exit",
        )
        parser.add_argument("--json", action="store_true", help="with --print-config: as JSON")
        parser.add_argument(
            "harness_args", nargs="*", metavar="ARGS", help=f"arguments for {name}, after --"
        )
        parser.set_defaults(run=run, harness=name)


def run(args: argparse.Namespace) -> int:
    from meshllm.core.invite import InvalidToken, decode_token

    from ..launchers import INSTALL_HINTS, LaunchError

    if not 0 < args.port <= 65535:
        return fail(f"--port {args.port} is not a valid port")
    if args.join and args.auto:
        return fail("--join and --auto both choose the mesh: pass one of them")
    if args.api and (args.join or args.auto):
        return fail("--api names a mesh's API; --join/--auto start one here: pass one of them")
    if args.api and not args.api.startswith(("http://", "https://")):
        return fail(f"--api {args.api}: give a URL, http(s)://host:port")
    if args.join:
        try:
            decode_token(args.join)
        except InvalidToken as exc:
            return fail(f"--join: {exc.message}")
    if not args.print_config and shutil.which(args.harness) is None:
        return fail(INSTALL_HINTS[args.harness])
    try:
        return asyncio.run(_launch(args))
    except LaunchError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:  # Ctrl-C before the harness started; a node started is stopped
        return 130


async def _launch(args: argparse.Namespace) -> int:
    import aiohttp

    from ..launchers import HARNESSES as BUILDERS
    from ..launchers import Api, LaunchError, choose_model, served_models

    base = args.api.rstrip("/").removesuffix("/v1") or f"http://127.0.0.1:{args.port}"
    api = Api(base, args.api_key)
    node: ChildProcess | None = None
    headers = {"authorization": f"Bearer {api.key}"} if api.key else {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
        try:
            listing = await _models(http, base)
            if listing is None:
                if args.api:
                    raise LaunchError(f"no mesh answers on {base}/v1: is the URL right?")
                if not (args.join or args.auto):
                    raise LaunchError(
                        f"no mesh answers on {base}/v1: start one with `mesh-llm serve`, or "
                        "pass --join TOKEN (or --auto) to join one for as long as "
                        f"{args.harness} runs"
                    )
                node = await _start_client(args)
                listing = await _wait_for_models(http, base, node)
            elif args.join or args.auto:
                _say(f"a mesh already answers on {base}/v1: using it (--join/--auto unused)")
            served = served_models(listing)
            requested = await _canonical(http, base, args.model) if args.model else ""
            choice = choose_model(served, requested)
            launch = BUILDERS[args.harness](api, choice.model, served, args.harness_args)
            if args.print_config:
                _print_config(launch, base, choice.model.id, choice.reason, args.json)
                return 0
            _say(f"{args.harness} on {base}/v1 with {choice.model.id}: {choice.reason}")
            return await _run_harness(launch)
        finally:
            if node is not None:
                _say("stopping the API-only node started for it")
                await node.stop(NODE_STOP_GRACE_S)


async def _models(http: aiohttp.ClientSession, base: str) -> dict[str, Any] | None:
    """The mesh's `GET /v1/models` answer, or None when nothing answers on the port."""
    import aiohttp

    from ..launchers import LaunchError

    try:
        async with http.get(f"{base}/v1/models") as reply:
            if reply.status in (401, 403):
                given = "was refused" if "authorization" in http.headers else "was not given"
                raise LaunchError(
                    f"the API on {base}/v1 wants an API key, and one {given}: pass --api-key "
                    "KEY (or set MESH_LLM_API_KEY)"
                )
            if reply.status != 200:
                raise LaunchError(f"{base}/v1/models answered {reply.status}: is it a mesh?")
            listing: dict[str, Any] = await reply.json()
            return listing
    except (aiohttp.ClientConnectionError, TimeoutError):
        return None
    except (aiohttp.ContentTypeError, ValueError) as exc:
        raise LaunchError(f"{base}/v1/models answered something that is not JSON") from exc


async def _canonical(http: aiohttp.ClientSession, base: str, model: str) -> str:
    """The name the mesh serves `model` under (an alias resolves to it), or `model` itself."""
    from urllib.parse import quote

    import aiohttp

    try:
        async with http.get(f"{base}/v1/models/{quote(model, safe='/')}") as reply:
            if reply.status == 200:
                return str((await reply.json())["id"])
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
        pass
    return model


async def _start_client(args: argparse.Namespace) -> ChildProcess:
    """`mesh-llm client` on `--port`, in the background, once it says it is ready."""
    from meshllm.core.process import ChildProcess

    from ..launchers import LaunchError
    from ..local import default_node_name, home

    mesh = ["--join", args.join] if args.join else ["--auto"]
    argv = [sys.executable, "-m", "meshllm.cli", "client", *mesh, "--port", str(args.port)]
    # its own name: a node serving from this machine already holds the machine's name
    name = f"{default_node_name()[:50]}-{args.harness}"
    # a state directory of its own that outlives it: the next launch keeps the membership
    # (and spends no use of the token) and the credentials are not left in /tmp
    state = home() / "launch" / name
    argv += ["--node", name, "--state-dir", str(state), "--console-port", "0", "--json"]
    node = ChildProcess("mesh-llm client", argv)
    _say(f"no mesh answers on :{args.port}: starting an API-only node there")
    await node.start()
    deadline = time.monotonic() + NODE_READY_TIMEOUT_S
    try:
        while not any(_is_ready(line) for line in node.tail):
            if not node.running:
                raise LaunchError(f"the API-only node exited: {node.last_output()}")
            if time.monotonic() > deadline:
                raise LaunchError(
                    f"the API-only node was not ready in {NODE_READY_TIMEOUT_S:.0f}s: "
                    f"{node.last_output()}"
                )
            await asyncio.sleep(0.1)
    except BaseException:
        await node.stop(NODE_STOP_GRACE_S)
        raise
    return node


def _is_ready(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        return bool(json.loads(line).get("event") == "ready")
    except ValueError:
        return False


async def _wait_for_models(
    http: aiohttp.ClientSession, base: str, node: ChildProcess
) -> dict[str, Any]:
    """The models the new node's API lists, once it lists any."""
    from ..launchers import LaunchError

    deadline = time.monotonic() + MODELS_TIMEOUT_S
    while True:
        listing = await _models(http, base)
        if listing is not None and listing.get("data"):
            return listing
        if not node.running:
            raise LaunchError(f"the API-only node exited: {node.last_output()}")
        if time.monotonic() > deadline:
            raise LaunchError(f"the mesh lists no model after {MODELS_TIMEOUT_S:.0f}s")
        await asyncio.sleep(0.5)


async def _run_harness(launch: Launch) -> int:
    """Run the harness in the foreground, on this terminal, and return its exit status.
    Ctrl-C is the harness's to handle (the terminal sends it to both of us); SIGTERM and
    SIGHUP are passed on to it."""
    from ..launchers import INSTALL_HINTS, LaunchError

    loop = asyncio.get_running_loop()
    # a handler, unlike an ignored signal, is reset to the default in the harness by exec
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    try:
        env = {**os.environ, **launch.env}
        try:
            process = await asyncio.create_subprocess_exec(*launch.argv, env=env)
        except FileNotFoundError as exc:
            raise LaunchError(INSTALL_HINTS[launch.harness]) from exc
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, _pass_on, process, sig)
        code = await process.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return code if code >= 0 else 128 - code


def _pass_on(process: asyncio.subprocess.Process, sig: int) -> None:
    if process.returncode is None:
        process.send_signal(sig)


def _print_config(launch: Launch, base: str, model: str, reason: str, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "harness": launch.harness,
                    "api": f"{base}/v1",
                    "model": model,
                    "reason": reason,
                    "argv": launch.argv,
                    "env": launch.env,
                }
            )
        )
        return
    print(f"# {launch.harness} with {model}: {reason}")
    for key, value in launch.env.items():
        print(f"export {key}={shlex.quote(value)}")
    print(shlex.join(launch.argv))


def _say(text: str) -> None:
    print(f"mesh-llm: {text}", file=sys.stderr, flush=True)
