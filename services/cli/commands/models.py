"""`mesh-llm models …`: find models in the catalog, look one up, download it, list the model
files on this machine, and delete the mesh's downloads nobody used for a while."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..tables import size_text, table_lines
from .common import Subcommands, fail, help_of

if TYPE_CHECKING:
    from ..model_files import Derived


def add_parser(commands: Subcommands) -> None:
    models = commands.add_parser(
        "models",
        help="find, download, list and clean up models",
        description="Models by name: the curated catalog (`search`, `show`), downloads from "
        "Hugging Face (`download`; HF_ENDPOINT, HF_TOKEN and HF_HUB_CACHE are honoured), "
        "and the model files on this machine (`installed`, `cleanup`).",
    )
    tools = models.add_subparsers(dest="models_command", metavar="TOOL")
    search = tools.add_parser(
        "search", help="search the catalog", description="Catalog models matching TEXT."
    )
    search.add_argument("text", nargs="?", default="", help="part of a name, family or repo")
    search.set_defaults(run=run_search)
    show = tools.add_parser(
        "show",
        help="what a name or reference stands for",
        description="A catalog model's details, or the files a Hugging Face reference "
        "(org/repo/file.gguf, org/repo:Q4_K_M) stands for, with sizes and checksums.",
    )
    show.add_argument("model", help="a catalog name or a Hugging Face reference")
    show.set_defaults(run=run_show)
    download = tools.add_parser(
        "download",
        help="download a model to this machine",
        description="Download a model (with progress bars, resumed if interrupted, checked "
        "against the SHA-256 the hub reports) and print where it is.",
    )
    download.add_argument("model", help="a catalog name, org/repo/file.gguf or org/repo:QUANT")
    download.set_defaults(run=run_download)
    listing = tools.add_parser(
        "installed",
        help="the model files on this machine",
        description="Every model file the mesh knows of here: mesh-managed (downloaded by the "
        "mesh, or made by it: expert shards, copies of models whose file is on another node) "
        "or external (yours), its size and when the mesh last used it.",
    )
    listing.set_defaults(run=run_installed)
    cleanup = tools.add_parser(
        "cleanup",
        help="delete the mesh's downloads unused for a while",
        description="List the mesh-managed model files (downloads, expert shards, copies) "
        "neither used nor made within --unused-since; delete them only with --yes. External "
        "files are never touched.",
    )
    cleanup.add_argument(
        "--unused-since", default="30d", metavar="DURATION", help="90s, 30m, 24h, 30d (30d)"
    )
    cleanup.add_argument("--yes", action="store_true", help="delete them (default: only list)")
    cleanup.set_defaults(run=run_cleanup)
    for parser in (search, show, download, listing, cleanup):
        parser.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(run=lambda args: help_of(models))


def _derived() -> list[Derived]:
    """The folders of shards and copies, as this machine's registry and worker keep them."""
    from meshllm.core.config import load_settings
    from meshllm.registry.settings import RegistrySettings
    from meshllm.worker.settings import WorkerSettings

    from ..model_files import Derived

    registry, worker = load_settings(RegistrySettings), load_settings(WorkerSettings)
    return [
        Derived(registry.shard_path, "expert shard"),
        Derived(worker.shard_path, "expert shard"),
        Derived(worker.copy_path, "copy"),
    ]


def _folders() -> tuple[Path, Path, Path]:
    """(models dir, mesh cache, hub cache), as the registry sees them (MESH_*, HF_HUB_CACHE)."""
    from huggingface_hub import constants

    from meshllm.core.config import load_settings
    from meshllm.registry.settings import RegistrySettings

    settings = load_settings(RegistrySettings)
    return (
        Path(settings.models_dir).expanduser(),
        Path(settings.cache_dir).expanduser(),
        Path(constants.HF_HUB_CACHE),
    )


def _print(rows: list[list[str]], head: list[str]) -> None:
    print("\n".join(table_lines(rows, head)))


def run_search(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from meshllm.registry import model_catalog

    found = model_catalog.search(args.text)
    if args.json:
        print(json.dumps([asdict(m) for m in found]))
        return 0
    if not found:
        print(f"no catalog model matches {args.text!r}; any Hugging Face GGUF works too: "
              "mesh-llm serve --model org/repo/file.gguf")  # fmt: skip
        return 0
    rows = [
        [m.name, m.parameters, size_text(m.size_bytes), _flags(m), f"{m.repo}/{m.file}"]
        for m in found
    ]
    _print(rows, ["NAME", "PARAMS", "SIZE", "KIND", "SOURCE"])
    return 0


def _flags(m: Any) -> str:
    kinds = [k for k, on in (("moe", m.moe), ("vision", m.vision), ("tools", m.tool_use)) if on]
    return ",".join(kinds) or "-"


def run_show(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from meshllm.core.errors import MeshError
    from meshllm.registry import hub, model_catalog

    listed = model_catalog.find(args.model)
    ref = hub.HubRef(listed.repo, listed.file) if listed else hub.parse_ref(args.model)
    if ref is None:
        return fail(
            f"{args.model!r} is neither a catalog name (mesh-llm models search) nor a "
            "Hugging Face reference (org/repo/file.gguf, org/repo:Q4_K_M)"
        )
    try:
        model = hub.resolve(ref)
    except MeshError as exc:
        return fail(exc.message)
    local = hub.cached(model)
    info: dict[str, Any] = {
        "name": listed.name if listed else model.name,
        "repo": model.repo,
        "revision": model.revision,
        "files": [asdict(f) for f in model.files],
        "size_bytes": model.size,
        "downloaded": str(local) if local else "",
        "catalog": asdict(listed) if listed else None,
    }
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['name']}: {model.repo} @ {model.revision[:12]}, {size_text(model.size)}")
    if listed:
        print(
            f"  {listed.description} ({listed.parameters}, {listed.architecture}, {_flags(listed)})"
        )
    for f in model.files:
        print(f"  {f.path}  {size_text(f.size)}  sha256 {f.sha256 or '?'}")
    print(f"  downloaded: {local}" if local else "  not downloaded yet")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from meshllm.core.errors import MeshError
    from meshllm.registry import sources
    from meshllm.registry.progress import hash_bar

    models_dir, cache_dir, _ = _folders()
    try:
        resolved = sources.resolve(args.model, models_dir, cache_dir)
        with hash_bar(resolved.name) as on_hash:
            path = sources.fetch(resolved, cache_dir, progress=not args.json, on_hash=on_hash)
    except MeshError as exc:
        return fail(exc.message)
    if args.json:
        print(json.dumps({"name": resolved.name, "path": str(path)}))
    else:
        print(f"{resolved.name}: {path}")
    return 0


def run_installed(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..model_files import installed

    files = installed(*_folders(), _derived())
    if args.json:
        print(json.dumps([asdict(f) for f in files]))
        return 0
    if not files:
        print("no model files here yet: mesh-llm models download NAME")
        return 0
    rows = [
        [
            f.name,
            size_text(f.size),
            "mesh" if f.managed else "external",
            _ago(f.last_used_unix),
            f.path,
        ]
        for f in files
    ]
    _print(rows, ["NAME", "SIZE", "MANAGED", "LAST USED", "PATH"])
    return 0


def _ago(unix: int) -> str:
    if not unix:
        return "never"
    days = (time.time() - unix) / 86400
    return f"{days:.0f} days ago" if days >= 1 else "today"


def run_cleanup(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..admin import AdminError, parse_duration
    from ..model_files import delete, installed, unused

    try:
        window = parse_duration(args.unused_since)
    except AdminError:
        return fail(f"--unused-since {args.unused_since!r}: give a duration such as 30d or 12h")
    if window <= 0:
        return fail("--unused-since must be a duration such as 30d")
    models_dir, cache_dir, hub_cache = _folders()
    found = installed(models_dir, cache_dir, hub_cache, _derived())
    doomed = unused(found, time.time(), window)
    if args.yes:
        for f in doomed:
            delete(f, cache_dir)
    total = sum(f.size for f in doomed)
    if args.json:
        print(
            json.dumps({"deleted": args.yes, "files": [asdict(f) for f in doomed], "bytes": total})
        )
        return 0
    verb = "deleted" if args.yes else "would delete"
    for f in doomed:
        print(f"{verb} {f.path} ({size_text(f.size)}, last used {_ago(f.last_used_unix)})")
    print(
        f"{verb} {len(doomed)} file(s), {size_text(total)}"
        + ("" if args.yes else "; pass --yes to delete")
    )
    return 0
