"""Models from the Hugging Face hub: what a `--model` value names there, and its download.

A value names a hub model as `org/repo/path/file.gguf`, `org/repo:QUANT` (the repo's GGUF of
that quantization, e.g. `org/repo:Q4_K_M`), `hf://org/repo/...`, or a `https://<hub>/org/repo/
resolve/<revision>/<file>` URL. A split GGUF (`name-00001-of-00003.gguf`) is every one of its
parts; llama-server loads it from the first.

Downloads go through `huggingface_hub` — `HF_ENDPOINT`, `HF_TOKEN` and the usual cache
(`HF_HUB_CACHE`) are honoured — which resumes an interrupted file and renames it into place
only when complete. Each file is then checked against the SHA-256 the hub reports for it; a
file that does not match is deleted. Every failure is a MeshError with one line that says
what to do."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from meshllm.core.errors import Forbidden, InvalidRequest, MeshError, NotFound, Unavailable

SPLIT = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$")
REPO = r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*"
HUB_PATH = re.compile(rf"^(?P<repo>{REPO})/(?P<file>[^:]+\.gguf)$")
HUB_QUANT = re.compile(rf"^(?P<repo>{REPO}):(?P<quant>[A-Za-z0-9_.-]+)$")
RESOLVE = re.compile(rf"^/(?P<repo>{REPO})/resolve/(?P<revision>[^/]+)/(?P<file>.+\.gguf)$")
HashProgress = Callable[[int, int], None]  # bytes hashed so far, of
ATTEMPTS = 5  # tries per file; a cut download resumes where it stopped


@dataclass(frozen=True)
class HubRef:
    """What a value names on the hub, before the hub is asked."""

    repo: str
    file: str = ""  # a GGUF path in the repo, or
    quant: str = ""  # a quantization to pick the GGUF by
    revision: str = "main"


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    sha256: str  # "" when the hub reports none


@dataclass(frozen=True)
class HubModel:
    """The files one hub reference stands for: one GGUF, or every part of a split one."""

    repo: str
    revision: str
    files: tuple[HubFile, ...]

    @property
    def name(self) -> str:
        """The model's name in the mesh: the file's stem, without a split's part suffix."""
        base = self.files[0].path.rsplit("/", 1)[-1]
        split = SPLIT.match(base)
        return split["stem"] if split else base.removesuffix(".gguf")

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def parse_ref(value: str) -> HubRef | None:
    """The hub reference a `--model` value is, or None when it is not one."""
    if value.startswith("hf://"):
        value = value.removeprefix("hf://")
    elif value.startswith(("https://", "http://")):
        parts = urlsplit(value)
        found = RESOLVE.match(parts.path)
        if found is None or not _is_hub_host(parts.hostname or ""):
            return None
        return HubRef(found["repo"], found["file"], revision=found["revision"])
    if (found := HUB_PATH.match(value)) is not None:
        return HubRef(found["repo"], found["file"])
    if (found := HUB_QUANT.match(value)) is not None:
        return HubRef(found["repo"], quant=found["quant"])
    return None


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _is_hub_host(host: str) -> bool:
    return host in ("huggingface.co", "hf.co", urlsplit(endpoint()).hostname)


def pick_files(ref: HubRef, listed: dict[str, HubFile]) -> tuple[HubFile, ...]:
    """The files of the repo (`listed`, by path) that the reference stands for."""
    if ref.file:
        if ref.file not in listed:
            raise NotFound(f"{ref.repo} has no file {ref.file}")
        split = SPLIT.match(ref.file.rsplit("/", 1)[-1])
        if split is None:
            return (listed[ref.file],)
        return _parts(ref.repo, ref.file, int(split["count"]), listed)
    wanted = ref.quant.lower()
    ggufs = [p for p in listed if p.endswith(".gguf") and "mmproj" not in p.lower()]
    matching = [
        p for p in ggufs if re.search(rf"(^|[-._/]){re.escape(wanted)}([-._]|$)", p.lower())
    ]
    firsts = sorted({p for p in matching if _first_or_whole(p)})
    if len(firsts) == 1:
        return pick_files(HubRef(ref.repo, firsts[0], revision=ref.revision), listed)
    if not firsts:
        quants = sorted({_quant_of(p) for p in ggufs} - {""})
        known = ", ".join(quants) or "none"
        raise NotFound(f"{ref.repo} has no {ref.quant} GGUF; it has: {known}")
    raise InvalidRequest(
        f"{ref.repo}:{ref.quant} matches {len(firsts)} files ({', '.join(firsts)}): "
        f"name one as {ref.repo}/FILE.gguf"
    )


def _parts(repo: str, first: str, count: int, listed: dict[str, HubFile]) -> tuple[HubFile, ...]:
    prefix = first[: -len("00001-of-00000.gguf")]
    names = [f"{prefix}{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
    missing = [n for n in names if n not in listed]
    if missing:
        raise NotFound(f"{repo} lacks part(s) of the split GGUF: {', '.join(missing)}")
    return tuple(listed[n] for n in names)


def _first_or_whole(path: str) -> bool:
    split = SPLIT.match(path.rsplit("/", 1)[-1])
    return split is None or int(split["part"]) == 1


def _quant_of(path: str) -> str:
    found = re.search(r"(?i)(?:^|[-._])((?:I?Q\d[A-Z0-9_]*)|F16|BF16|F32)(?:[-.]|$)", path)
    return found.group(1).upper() if found else ""


def resolve(ref: HubRef) -> HubModel:
    """Asks the hub which files the reference stands for, with their sizes and checksums."""
    from huggingface_hub import HfApi

    with hub_errors(ref.repo):
        info = HfApi(endpoint=endpoint()).model_info(
            ref.repo, revision=ref.revision, files_metadata=True
        )
    listed = {
        s.rfilename: HubFile(s.rfilename, int(s.size or 0), s.lfs.sha256 if s.lfs else "")
        for s in info.siblings or []
    }
    return HubModel(ref.repo, info.sha or ref.revision, pick_files(ref, listed))


def download(
    model: HubModel,
    *,
    progress: bool = True,
    on_hash: HashProgress | None = None,
) -> Path:
    """Every file of the model in the hub cache, checked; the path llama-server loads."""
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    check_disk(model)
    (enable_progress_bars if progress else disable_progress_bars)()
    paths = []
    for f in model.files:
        local = _fetch(model, f)
        verify(local, f, on_hash)
        paths.append(local)
    return paths[0]


def _fetch(model: HubModel, f: HubFile) -> Path:
    """One file, resumed where a cut left it, a few times over before giving up."""
    from huggingface_hub import hf_hub_download

    for attempt in range(1, ATTEMPTS + 1):
        try:
            with hub_errors(model.repo, f.path):
                local = hf_hub_download(
                    model.repo, f.path, revision=model.revision, endpoint=endpoint()
                )
            return Path(local)
        except Unavailable:
            if attempt == ATTEMPTS:
                raise
            time.sleep(min(2.0**attempt, 10.0))
    raise AssertionError("unreachable")


def parts_of(first: Path) -> list[Path]:
    """Every part of the split GGUF whose first part this is (its name says how many), or
    the file alone."""
    split = SPLIT.match(first.name)
    return part_paths(first, int(split["count"]) if split else 1)


def part_paths(first: Path, count: int) -> list[Path]:
    """A model's files beside its first: the first alone, or every part of a split GGUF."""
    split = SPLIT.match(first.name)
    if split is None or count == 1:
        return [first]
    return [
        first.with_name(f"{split['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)
    ]


def cached(model: HubModel) -> Path | None:
    """The model's first file when every file is in the hub cache already, else None."""
    from huggingface_hub import try_to_load_from_cache

    paths = []
    for f in model.files:
        found = try_to_load_from_cache(model.repo, f.path, revision=model.revision)
        if not isinstance(found, str):
            return None
        paths.append(Path(found))
    return paths[0]


def check_disk(model: HubModel) -> None:
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE)
    probe = next((p for p in (cache, *cache.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    if model.size > free:
        raise Unavailable(
            f"{model.name} needs {model.size / 1e9:.1f} GB and {probe} has "
            f"{free / 1e9:.1f} GB free: free some space or set HF_HUB_CACHE elsewhere"
        )


def verify(path: Path, expected: HubFile, on_hash: HashProgress | None = None) -> None:
    """The file is what the hub says it is; a file that is not is deleted, blob and link."""
    if not expected.sha256:
        return
    marker = _verified_marker(path, expected.sha256)
    if marker.exists():
        return
    got = sha256_of(path, on_hash)
    if got != expected.sha256:
        blob = path.resolve()
        for doomed in (path, blob):
            doomed.unlink(missing_ok=True)
        raise Unavailable(
            f"{expected.path} does not match the SHA-256 the hub reports (expected "
            f"{expected.sha256[:12]}…, got {got[:12]}…); it was deleted: download it again"
        )
    marker.touch()


def _verified_marker(path: Path, sha256: str) -> Path:
    blob = path.resolve()
    return blob.with_name(f".{blob.name}.sha256-{sha256[:16]}-ok")


def sha256_of(path: Path, on_hash: HashProgress | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
            done += len(chunk)
            if on_hash is not None:
                on_hash(done, total)
    return digest.hexdigest()


@contextmanager
def hub_errors(repo: str, path: str = "") -> Iterator[None]:
    """Turns what huggingface_hub raises into a MeshError with one line saying what to do."""
    try:
        yield
    except MeshError:
        raise
    except Exception as exc:
        error = hub_error(exc, repo, path)
        if error is None:
            raise
        raise error from exc


def hub_error(exc: BaseException, repo: str, path: str = "") -> MeshError | None:
    from huggingface_hub import errors

    token = " (HF_TOKEN is set: is it allowed to read it?)" if os.environ.get("HF_TOKEN") else ""
    if isinstance(exc, errors.GatedRepoError):
        return Forbidden(
            f"{repo} is gated: accept its terms at {endpoint()}/{repo} and set HF_TOKEN{token}"
        )
    if isinstance(exc, errors.RepositoryNotFoundError):
        status = exc.response.status_code if exc.response is not None else 404
        if status == 401:
            return Forbidden(
                f"{repo}: not found or not allowed; a private repo needs HF_TOKEN{token}"
            )
        return NotFound(f"no model repository {repo} on {endpoint()}")
    if isinstance(exc, errors.RevisionNotFoundError):
        return NotFound(f"{repo} has no such revision")
    if isinstance(exc, errors.RemoteEntryNotFoundError | errors.EntryNotFoundError):
        return NotFound(f"{repo} has no file {path}")
    if isinstance(exc, errors.LocalEntryNotFoundError):
        return Unavailable(f"cannot reach {endpoint()} to download {repo}: check the network")
    if isinstance(exc, errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            return Forbidden(f"{endpoint()} refused {repo} ({status}){token}")
        return Unavailable(f"{endpoint()} answered {status} for {repo}: try again later")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return Unavailable(f"the disk filled up while downloading {repo}: free some space")
    if isinstance(exc, OSError | ConnectionError) or type(exc).__module__.startswith("httpx"):
        return Unavailable(f"cannot download {repo} from {endpoint()}: {exc}")
    return None
