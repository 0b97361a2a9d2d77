"""`mesh-llm serve` and `mesh-llm client`: run this machine's part of a mesh (cli/serve.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .common import Subcommands, fail

if TYPE_CHECKING:
    from ..serve_options import ServeOptions


def add_parser(commands: Subcommands) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the mesh's services on this machine and serve models",
        description="Serve models from this machine. Without --join this starts a new mesh "
        "(its etcd runs here) and prints an invite token; with --join TOKEN it adds this "
        "machine to that mesh. Runs until Ctrl-C.",
    )
    serve.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME",
        help="a model name: a built-in (smollm2) or NAME.gguf in ~/.mesh-llm/models (repeatable)",
    )
    serve.add_argument(
        "--gguf",
        action="append",
        default=[],
        metavar="PATH",
        help="a GGUF model file to serve (repeatable)",
    )
    serve.add_argument(
        "--draft",
        default="",
        metavar="MODEL",
        help="a smaller model of the same family (a name or GGUF path) that drafts tokens "
        "for the one --model/--gguf (speculative decoding: the same answers, sooner); "
        "`auto`: the catalog's draft for a catalog model; for several models set `draft` per "
        "model in config.toml",
    )
    add_mesh_flags(serve)
    serve.add_argument(
        "--etcd",
        default="",
        metavar="HOST:PORT",
        help="a new mesh: use this etcd instead of starting one here",
    )
    serve.add_argument(
        "--mesh-name", default="", help="a name for a new mesh; announces it on the local network"
    )
    serve.add_argument(
        "--publish",
        action="store_true",
        help="announce a new mesh on the local network, so `--auto` finds it "
        "(anyone there may then join)",
    )
    serve.add_argument(
        "--device",
        default="auto",
        help="where this node runs workers, one per device: 'auto' (every GPU, else the CPU), "
        "'cpu', or GPU indexes / UUIDs separated by commas",
    )
    serve.add_argument(
        "--cpu-memory",
        type=float,
        default=0.0,
        metavar="GIB",
        help="memory the CPU device may use for models (default: half of free RAM)",
    )
    serve.add_argument(
        "--max-vram",
        type=float,
        default=0.0,
        metavar="GB",
        help="cap the memory this node offers the mesh, GPU or CPU alike (a model bigger "
        "than what the nodes offer is split across them)",
    )
    serve.add_argument(
        "--tunnel-port",
        type=int,
        default=0,
        metavar="PORT",
        help="the port other nodes reach this node's rpc-servers on, through mutual TLS "
        "(default: a free one; set it to open it in a firewall)",
    )
    serve.add_argument(
        "--split",
        action="store_true",
        help="split this node's models across peers even where they fit one node "
        "(for testing and benchmarking pipeline splits)",
    )
    serve.add_argument(
        "--config",
        default="",
        metavar="PATH",
        help="the startup config (default ~/.mesh-llm/config.toml, or $MESH_HOME/config.toml): "
        "its [[models]] are served when no --model/--gguf is given",
    )
    serve.add_argument(
        "--standby",
        action="store_true",
        help="serve no model of this node's own: the mesh gives it models its requests ask "
        "for (one nobody serves, or more replicas of a busy one) and takes them back when "
        "the requests stop",
    )
    serve.add_argument(
        "--context", type=int, default=0, help="context size per model (default 4096)"
    )
    serve.add_argument("--parallel", type=int, default=4, help="slots per llama-server (default 4)")
    serve.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads per llama-server (default: llama.cpp's choice)",
    )
    client = commands.add_parser(
        "client",
        help="join a mesh as an API-only node (no models, no GPU needed)",
        description="Run only the gateway: this machine gets the mesh's API on "
        "localhost:9337 and sends every request to the nodes that serve the model.",
    )
    add_mesh_flags(client)
    serve.set_defaults(run=run, parser=serve)
    client.set_defaults(run=run)


def add_mesh_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--join", default="", metavar="TOKEN", help="join the mesh this invite token names"
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="join the largest mesh announced on the local network (serve: or start a new "
        "one if there is none; with no model given, a new mesh serves the largest catalog "
        "model that fits this machine, and a node joining one is a standby)",
    )
    parser.add_argument("--port", type=int, default=9337, help="API port (default 9337)")
    parser.add_argument(
        "--console-port", type=int, default=3131, help="console port (default 3131; 0 turns it off)"
    )
    parser.add_argument(
        "--headless",
        action="store_true",
        help="serve the console's API (/api/status, /api/events …) without its web page",
    )
    parser.add_argument(
        "--api-host", default="127.0.0.1", help="address the API listens on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="require this key (Authorization: Bearer KEY, or x-api-key) on the API (repeatable; "
        "a key shows in the process list: prefer --api-keys-file)",
    )
    parser.add_argument(
        "--api-keys-file", default="", metavar="PATH", help="require one of the keys in PATH"
    )
    parser.add_argument(
        "--no-api-key",
        action="store_true",
        help="serve the API without keys even though --api-host is not loopback",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin (https://app.example.com) whose pages may call the API (repeatable)",
    )
    parser.add_argument(
        "--host",
        default="",
        help="address other nodes reach this one on (default: the address of "
        "the default route's interface)",
    )
    parser.add_argument(
        "--node", default="", help="this machine's name in the mesh (default: hostname)"
    )
    parser.add_argument(
        "--state-dir",
        default="",
        help="where logs, etcd's data, the mesh's keys and copies of models go (default: a "
        "folder in the temp dir for this run alone, emptied but for its logs when it stops)",
    )
    parser.add_argument("--json", action="store_true", help="print events as JSON lines")
    parser.add_argument("--verbose", action="store_true", help="show the services' logs")


def run(args: argparse.Namespace) -> int:
    from meshllm.core.config import InvalidSettings
    from meshllm.core.invite import InvalidToken, decode_token

    from ..serve import serve
    from ..serve_options import ServeError, ServeOptions

    ports = [("--port", args.port), ("--console-port", args.console_port)]
    if args.command == "serve":
        ports.append(("--tunnel-port", args.tunnel_port))
        if args.max_vram < 0:
            return fail(f"--max-vram {args.max_vram:g} is below 0: give the GB this node offers")
    for flag, value in ports:
        if not 0 <= value <= 65535 or (flag == "--port" and value == 0):
            return fail(f"{flag} {value} is not a valid port")
    try:
        token = decode_token(args.join) if args.join else None
    except InvalidToken as exc:
        return fail(f"--join: {exc.message}")
    serving = args.command == "serve"
    if not serving and not (token or args.auto):
        return fail("client needs a mesh: pass --join TOKEN or --auto")
    if token is not None and args.auto:
        return fail("--join and --auto both choose the mesh: pass one of them")
    if serving and token is not None and (args.etcd or args.mesh_name or args.publish):
        return fail("--etcd, --mesh-name and --publish make a new mesh; not with --join")
    for path in getattr(args, "gguf", []):
        if not Path(path).is_file():
            return fail(f"--gguf {path}: no such file")
    problem = api_problem(args)
    if problem:
        return fail(problem)
    opts = ServeOptions(
        port=args.port,
        console_port=args.console_port,
        headless=args.headless,
        join=token,
        client_only=not serving,
        node=args.node,
        host=args.host,
        api_host=args.api_host,
        api_keys=args.api_key,
        api_keys_file=args.api_keys_file,
        open_api=args.no_api_key,
        cors_origins=args.cors_origin,
        state_dir=args.state_dir,
        json=args.json,
        verbose=args.verbose,
        auto=args.auto,
    )
    if serving:
        problem = _startup_models(args, opts)
        if problem:
            return fail(problem)
        if not opts.models and not (args.standby or token or args.auto):
            print(
                "⚠️  nothing to serve: pass --model NAME or --gguf PATH, list models in "
                f"{_config_path(args)}, or start a standby node with --standby\n",
                file=sys.stderr,
            )
            args.parser.print_help()
            return 0
        opts.etcd, opts.mesh_name = args.etcd, args.mesh_name
        opts.cpu_memory_gib, opts.context = args.cpu_memory, args.context
        opts.parallel, opts.threads = args.parallel, args.threads
        opts.publish = args.publish
        opts.max_vram_gb, opts.split = args.max_vram, args.split
        opts.tunnel_port = args.tunnel_port
    try:
        return asyncio.run(serve(opts))
    except ServeError as exc:
        return fail(str(exc))
    except InvalidSettings as exc:  # a bad MESH_* variable in this environment
        return fail(exc.message)


def _config_path(args: argparse.Namespace) -> Path:
    from ..local import home

    return Path(args.config).expanduser() if args.config else home() / "config.toml"


def _startup_models(args: argparse.Namespace, opts: ServeOptions) -> str:
    """The models, their contexts and their devices from the flags and the config file (see
    cli/config_file.py for the precedence); a one-line problem, or ""."""
    from meshllm.worker.gpus import nvidia_devices, worker_devices

    from ..config_file import ConfigError, enabled_plugins, load, startup_models
    from ..plugins import command_problem
    from ..serve_options import node_workers

    flags = [*args.model, *args.gguf]
    if args.standby and flags:
        return (
            "--standby serves what the mesh asks for, not models of its own: drop --standby "
            "or --model/--gguf"
        )
    if args.draft and len(flags) != 1:
        return (
            "--draft drafts for one model: give exactly one --model or --gguf with it, or set "
            "`draft` per model in config.toml"
        )
    path = _config_path(args)
    try:
        config = load(path)
        if args.config and config is None:
            return f"--config {args.config}: no such file"
        # a standby serves what the mesh asks for: the file's models are not its own
        chosen = startup_models(
            flags, args.context, None if args.standby else config, path, nvidia_devices
        )
    except ConfigError as exc:
        return str(exc)
    opts.plugins = enabled_plugins(config)
    problem = next(filter(None, map(command_problem, opts.plugins)), "")
    if problem:
        return problem
    opts.models, opts.contexts, opts.projectors = chosen.models, chosen.contexts, chosen.projectors
    opts.drafts = {flags[0]: args.draft} if args.draft else chosen.drafts
    try:
        devices = worker_devices(args.device, nvidia_devices())
        opts.workers = node_workers(devices, chosen.models, chosen.pins)
    except ValueError as exc:
        return f"--device: {exc}"
    opts.device = args.device
    for note in chosen.notes:
        print(f"note: {note}", file=sys.stderr)
    return ""


def api_problem(args: argparse.Namespace) -> str:
    """Why the API flags cannot work together; "" when they can."""
    from meshllm.core.errors import MeshError
    from meshllm.gateway.guard import exposure_problem, read_keys

    if any("," in key for key in args.api_key):
        return "--api-key: a key cannot contain ','"
    try:
        keys = read_keys(args.api_key, args.api_keys_file)
    except MeshError as exc:
        return f"--api-keys-file: {exc.message}"
    if args.api_keys_file and not keys:
        return f"--api-keys-file: {args.api_keys_file} holds no key"
    return exposure_problem(args.api_host, bool(keys), args.no_api_key) or ""
