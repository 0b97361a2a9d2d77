"""The `mesh-llm` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from . import shard

DESCRIPTION = """\
Mesh LLM pools the GPUs (or CPUs) of several machines and serves their models as one
OpenAI-compatible API at http://localhost:9337/v1.

  mesh-llm serve --model smollm2          start a mesh serving a built-in demo chat model
  mesh-llm serve --gguf ./model.gguf      serve a GGUF file
  mesh-llm serve --join TOKEN --model X   add this machine to a mesh, serving X
  mesh-llm client --join TOKEN            use a mesh's API from this machine
  mesh-llm discover                       list meshes published on the local network
  mesh-llm invite [--ttl 1h] [--client]   mint an invite token for another machine
  mesh-llm revoke NODE                    remove a node from the mesh
  mesh-llm inspect ./model.gguf           show what a GGUF file holds
  mesh-llm dev make-model                 write a small random-weight test model
  mesh-llm dev shard MODEL --nodes N      split a mixture of experts into measured shards
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mesh-llm",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

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
    serve.add_argument("--device", default="auto", help="'auto', 'cpu', or a GPU index")
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

    discover = commands.add_parser(
        "discover",
        help="list the meshes announced on the local network",
        description="Browse mDNS for published meshes (private meshes are never announced; "
        "there is no internet-wide directory).",
    )
    discover.add_argument(
        "--interface",
        default="",
        metavar="ADDR",
        help="the local address whose network to search (default: the default route's interface)",
    )
    discover.add_argument("--timeout", type=float, default=3.0, help="seconds to listen")
    discover.add_argument("--json", action="store_true", help="print JSON lines")

    invite = commands.add_parser(
        "invite",
        help="mint an invite token that lets another machine join this node's mesh",
        description="Ask the mesh's authority for a new invite token, using the credentials "
        "of a node running on this machine (or --credentials). The token lets its holder "
        "join until it expires or is used up: share it like a password.",
    )
    invite.add_argument(
        "--ttl",
        default="24h",
        metavar="DURATION",
        help="how long the token stays valid: 90s, 30m, 24h, 7d, or 'never' (default 24h)",
    )
    invite.add_argument(
        "--uses", type=int, default=-1, help="how many machines may join with it (default: any)"
    )
    invite.add_argument(
        "--client",
        action="store_true",
        help="an API client's token (`mesh-llm client --join`): it cannot serve models",
    )
    add_credentials_flag(invite)
    invite.add_argument("--json", action="store_true", help="print JSON")

    revoke = commands.add_parser(
        "revoke",
        help="remove a node from the mesh",
        description="Revoke a node: its certificate stops working everywhere at once (etcd, "
        "every service, every relay) and its models leave the mesh. It can come back only "
        "with a new invite.",
    )
    revoke.add_argument("node", help="the node's name (mesh-llm members lists them)")
    add_credentials_flag(revoke)
    revoke.add_argument("--json", action="store_true", help="print JSON")

    members = commands.add_parser("members", help="list the machines that joined the mesh")
    add_credentials_flag(members)
    members.add_argument("--json", action="store_true", help="print JSON")

    authority = commands.add_parser(
        "authority",
        help="run the founding box's CA and authority (container deployments)",
        description="For a mesh run from containers: make the mesh's CA once (in --dir), wait "
        "for an etcd that uses its certificate, admit this box's node (credentials in "
        "DIR/node for the box's services) and keep the enrolment door open. `mesh-llm serve` "
        "does all of this itself.",
    )
    authority.add_argument("--dir", required=True, help="where the CA and credentials live")
    authority.add_argument("--mesh-id", default="", help="the mesh's id (default: a new one)")
    authority.add_argument("--mesh-name", default="", help="a name for the mesh")
    authority.add_argument("--node", required=True, help="this box's node name")
    authority.add_argument(
        "--host", required=True, help="the address other boxes reach this box on"
    )
    authority.add_argument("--port", type=int, default=9339, help="the door's port (9339)")
    authority.add_argument("--etcd", required=True, metavar="HOST:PORT", help="etcd, from here")
    authority.add_argument(
        "--etcd-public",
        required=True,
        metavar="HOST:PORT",
        help="etcd as other boxes reach it (what invite tokens name)",
    )

    enrol = commands.add_parser(
        "enrol",
        help="join a mesh with an invite token and write this box's credentials",
        description="Enrol this box (container deployments): its credentials go to --dir for "
        "the box's services (MESH_TLS_DIR). Nothing happens when --dir already holds a "
        "membership of that mesh.",
    )
    enrol.add_argument("--join", required=True, metavar="TOKEN", help="the invite token")
    enrol.add_argument("--dir", required=True, help="where to write the credentials")
    enrol.add_argument("--node", required=True, help="this box's node name")
    enrol.add_argument("--host", default="", help="this box's address, listed in its certificate")
    enrol.add_argument("--json", action="store_true", help="print JSON")

    credentials = commands.add_parser("credentials", help="certificates from a given CA")
    credential_commands = credentials.add_subparsers(dest="credentials_command", metavar="TOOL")
    issue = credential_commands.add_parser(
        "issue",
        help="issue a node certificate from a CA given as files (e.g. made by Helm)",
        description="Write ca.crt, node.crt and node.key for NODE into --out, signed by the "
        "CA in --ca-dir (ca.crt and ca.key). For clusters whose installer makes the CA.",
    )
    issue.add_argument("--ca-dir", required=True)
    issue.add_argument("--mesh-id", required=True)
    issue.add_argument("--node", required=True)
    issue.add_argument("--role", choices=["node", "client", "authority"], default="node")
    issue.add_argument("--host", action="append", default=[], help="an address to list")
    issue.add_argument("--out", required=True)

    inspect = commands.add_parser("inspect", help="show the facts of a GGUF file")
    inspect.add_argument("path", help="a .gguf file")
    inspect.add_argument("--json", action="store_true", help="print JSON")

    dev = commands.add_parser("dev", help="tools for development and tests")
    dev_commands = dev.add_subparsers(dest="dev_command", metavar="TOOL")
    make = dev_commands.add_parser(
        "make-model",
        help="write a small llama-architecture GGUF with random weights",
        description="Write (or reuse from the cache) a small random-weight llama GGUF. "
        "It loads and generates like a real model, but its text is gibberish.",
    )
    make.add_argument("--layers", type=int, default=4)
    make.add_argument("--embedding", type=int, default=128)
    make.add_argument("--feed-forward", type=int, default=256)
    make.add_argument("--heads", type=int, default=4)
    make.add_argument("--kv-heads", type=int, default=2)
    make.add_argument("--context", type=int, default=2048)
    make.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--name", default="tiny-llama")
    make.add_argument("--experts", type=int, default=0, help="a mixture of this many experts")
    make.add_argument("--experts-used", type=int, default=0, help="experts picked per token")
    make.add_argument(
        "--router", choices=["random", "pairs"], default="random",
        help="pairs: the first 2 x experts-used experts always win (for shard tests)",
    )  # fmt: skip
    make.add_argument("--out", default="", help="write here instead of the cache")
    make.add_argument("--json", action="store_true", help="print JSON")
    shard.add_parser(dev_commands)
    return parser


def add_mesh_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--join", default="", metavar="TOKEN", help="join the mesh this invite token names"
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="join the largest mesh announced on the local network "
        "(serve: or start a new one if there is none)",
    )
    parser.add_argument("--port", type=int, default=9337, help="API port (default 9337)")
    parser.add_argument(
        "--console-port", type=int, default=3131, help="console port (default 3131; 0 turns it off)"
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
    parser.add_argument("--state-dir", default="", help="where logs and etcd data go")
    parser.add_argument("--json", action="store_true", help="print events as JSON lines")
    parser.add_argument("--verbose", action="store_true", help="show the services' logs")


def add_credentials_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--credentials",
        default="",
        metavar="DIR",
        help="a node's credentials directory (default: MESH_TLS_DIR, else the node that "
        "`mesh-llm serve` runs on this machine)",
    )


def fail(message: str) -> int:
    print(f"mesh-llm: error: {message}", file=sys.stderr)
    return 1


def run_serve(args: argparse.Namespace) -> int:
    from meshllm.core.config import InvalidSettings
    from meshllm.core.invite import InvalidToken, decode_token

    from .serve import ServeError, ServeOptions, serve

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
        opts.models = [*args.model, *args.gguf]
        opts.etcd, opts.mesh_name, opts.device = args.etcd, args.mesh_name, args.device
        opts.cpu_memory_gib, opts.context = args.cpu_memory, args.context
        opts.parallel, opts.threads = args.parallel, args.threads
        opts.publish = args.publish
        opts.max_vram_gb, opts.split = args.max_vram, args.split
        opts.tunnel_port = args.tunnel_port
        if args.standby and opts.models:
            return fail(
                "--standby serves what the mesh asks for, not models of its own: "
                "drop --standby or --model/--gguf"
            )
    try:
        return asyncio.run(serve(opts))
    except ServeError as exc:
        return fail(str(exc))
    except InvalidSettings as exc:  # a bad MESH_* variable in this environment
        return fail(exc.message)


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


def run_discover(args: argparse.Namespace) -> int:
    from .discovery import discover
    from .network import lan_address

    interface = args.interface or lan_address()
    try:
        meshes = asyncio.run(discover(interface, args.timeout))
    except OSError as exc:
        return fail(f"cannot listen for mDNS on {interface}: {exc.strerror or exc}")
    if args.json:
        for mesh in meshes:
            print(mesh.to_json())
    elif not meshes:
        print(f"no published mesh seen from {interface} in {args.timeout:.0f}s")
    else:
        print(f"{'MESH':<24} {'NODES':>5} {'MODELS':>6}  ANNOUNCED BY")
        for mesh in meshes:
            print(
                f"{mesh.name or mesh.mesh_id:<24} {mesh.nodes:>5} {mesh.models:>6}  "
                f"{mesh.announced_by} ({mesh.address})"
            )
        print("join one with: mesh-llm serve --auto   or   mesh-llm client --auto")
    return 0


def run_invite(args: argparse.Namespace) -> int:
    from .admin import AdminError, invite

    try:
        return invite(args.credentials, args.ttl, args.uses, args.client, args.json)
    except AdminError as exc:
        return fail(str(exc))


def run_revoke(args: argparse.Namespace) -> int:
    from .admin import AdminError, revoke

    try:
        return revoke(args.credentials, args.node, args.json)
    except AdminError as exc:
        return fail(str(exc))


def run_members(args: argparse.Namespace) -> int:
    from .admin import AdminError, members

    try:
        return members(args.credentials, args.json)
    except AdminError as exc:
        return fail(str(exc))


def run_container_command(args: argparse.Namespace) -> int:
    from .containers import DeployError, issue_from_files, run_authority, run_enrol

    try:
        if args.command == "authority":
            return asyncio.run(
                run_authority(
                    Path(args.dir),
                    mesh_id=args.mesh_id,
                    node=args.node,
                    host=args.host,
                    port=args.port,
                    etcd=args.etcd,
                    etcd_public=args.etcd_public,
                    mesh_name=args.mesh_name,
                )
            )
        if args.command == "enrol":
            return asyncio.run(
                run_enrol(args.join, Path(args.dir), args.node, args.host, args.json)
            )
        identity = issue_from_files(
            Path(args.ca_dir),
            args.mesh_id,
            args.node,
            args.role,
            Path(args.out),
            tuple(args.host),
        )
        print(f"issued {identity.node} ({identity.role}) in mesh {identity.mesh_id}")
        return 0
    except DeployError as exc:
        return fail(str(exc))


def run_inspect(args: argparse.Namespace) -> int:
    from meshllm.registry.gguf_facts import GgufError, read_facts

    try:
        facts = read_facts(args.path)
    except GgufError as exc:
        return fail(str(exc))
    values = {k: getattr(facts, k) for k in facts.__dataclass_fields__}
    if args.json:
        print(json.dumps(values))
    else:
        width = max(map(len, values))
        for key, value in values.items():
            print(f"{key:<{width}}  {value}")
    return 0


def run_make_model(args: argparse.Namespace) -> int:
    from .make_model import ModelShape, cached_model, find_vocab_file, write_model

    try:
        shape = ModelShape(
            layers=args.layers,
            embedding=args.embedding,
            feed_forward=args.feed_forward,
            heads=args.heads,
            kv_heads=args.kv_heads,
            context=args.context,
            dtype=args.dtype,
            seed=args.seed,
            name=args.name,
            experts=args.experts,
            experts_used=args.experts_used,
            router=args.router,
        )
    except ValueError as exc:
        return fail(f"invalid model shape: {exc}")
    try:
        if args.out:
            path = write_model(Path(args.out), shape, find_vocab_file(shape.vocab))
        else:
            path = cached_model(shape)
    except FileNotFoundError as exc:
        return fail(str(exc))
    print(json.dumps({"path": str(path)}) if args.json else path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("serve", "client"):
        return run_serve(args)
    if args.command == "discover":
        return run_discover(args)
    if args.command == "invite":
        return run_invite(args)
    if args.command == "revoke":
        return run_revoke(args)
    if args.command == "members":
        return run_members(args)
    if args.command in ("authority", "enrol") or (
        args.command == "credentials" and args.credentials_command == "issue"
    ):
        return run_container_command(args)
    if args.command == "inspect":
        return run_inspect(args)
    if args.command == "dev" and args.dev_command == "make-model":
        return run_make_model(args)
    if args.command == "dev" and args.dev_command == "shard":
        return shard.run_shard(args)
    if args.command == "dev":
        parser.parse_args(["dev", "--help"])
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
