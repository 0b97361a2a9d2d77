"""A model (or projector) downloaded from a plain http(s) URL, for files that are not on a
Hugging Face hub: `https://host/path/model.gguf`, optionally with `#sha256=<hex>` (pip's
convention) to have it checked.

The file is written to `<cache>/urls/<hash of the URL>/<file name>.part`, resumed with a ranged
GET after a cut (a few tries), checked against the length the server announced and the
SHA-256 when one was given, and only then renamed to its final name: nothing half-written is
ever left under it. Errors are one line saying what to do."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from meshllm.core.errors import Forbidden, InvalidRequest, MeshError, NotFound, Unavailable

from .hub import HashProgress, parse_ref, sha256_of

ATTEMPTS = 5
CHUNK = 1 << 20
FRAGMENT = re.compile(r"^sha256=([0-9a-fA-F]{64})$")


class _Cut(Unavailable):
    """A transfer that broke off: the next try resumes it."""


@dataclass(frozen=True)
class UrlModel:
    url: str  # without the fragment
    file_name: str
    sha256: str  # "" when the URL names none

    @property
    def name(self) -> str:
        return self.file_name.removesuffix(".gguf")


def parse_url(value: str) -> UrlModel | None:
    """The download a `--model` value names, or None when it is no plain http(s) URL (a hub
    URL is the hub's)."""
    if not value.startswith(("http://", "https://")) or parse_ref(value) is not None:
        return None
    parts = urlsplit(value)
    file_name = unquote(parts.path.rsplit("/", 1)[-1])
    if not parts.hostname or not file_name.endswith(".gguf"):
        raise InvalidRequest(f"{value}: a model URL names a .gguf file", param="model")
    sha = ""
    if parts.fragment:
        found = FRAGMENT.match(parts.fragment)
        if found is None:
            raise InvalidRequest(f"{value}: the only fragment a model URL takes is #sha256=<hex>")
        sha = found.group(1).lower()
    return UrlModel(parts._replace(fragment="").geturl(), file_name, sha)


def cache_path(model: UrlModel, cache_dir: Path) -> Path:
    key = hashlib.sha256(model.url.encode()).hexdigest()[:16]
    return cache_dir / "urls" / key / model.file_name


def cached(model: UrlModel, cache_dir: Path) -> Path | None:
    path = cache_path(model, cache_dir)
    return path if path.is_file() else None


def download(
    model: UrlModel, cache_dir: Path, *, progress: bool = False, on_hash: HashProgress | None = None
) -> Path:
    """The file in the cache, downloaded and checked if it is not there yet."""
    final = cache_path(model, cache_dir)
    if final.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _fetch(model, part, progress)
            break
        except _Cut:
            if attempt == ATTEMPTS:
                raise
            time.sleep(min(2.0**attempt, 10.0))
    if model.sha256:
        got = sha256_of(part, on_hash)
        if got != model.sha256:
            part.unlink(missing_ok=True)
            raise Unavailable(
                f"{model.url} does not match the SHA-256 in its #sha256= (expected "
                f"{model.sha256[:12]}…, got {got[:12]}…); it was deleted: check the URL"
            )
    os.replace(part, final)
    return final


def _fetch(model: UrlModel, part: Path, progress: bool) -> None:
    """Appends what is missing to `part`; Unavailable for what another try may mend."""
    import httpx
    from tqdm import tqdm

    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with httpx.stream(
            "GET", model.url, headers=headers, follow_redirects=True, timeout=30
        ) as r:
            if r.status_code == 416 and have:  # asked past the end: what we have is all of it
                return
            _check_status(r.status_code, model.url)
            if have and r.status_code != 206:  # the server ignored the range: start over
                have = 0
            total = _total(r.headers, have)
            with (
                part.open("ab" if have else "wb") as out,
                tqdm(
                    total=total or None,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=model.file_name,
                    disable=not (progress and sys.stderr.isatty()),
                ) as bar,
            ):
                for chunk in r.iter_bytes(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except MeshError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            message = f"the disk filled up while downloading {model.url}: free some space"
            raise Unavailable(message) from exc
        raise _Cut(f"cannot download {model.url}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise _Cut(f"cannot download {model.url}: {exc}") from exc
    if total and part.stat().st_size != total:
        raise _Cut(f"{model.url} was cut at {part.stat().st_size} of {total} bytes")


def _total(headers: Mapping[str, str], have: int) -> int:
    """The whole file's length, from Content-Range or Content-Length (0 when unknown)."""
    ranged = re.match(r"bytes \d+-\d+/(\d+)", headers.get("content-range", ""))
    if ranged:
        return int(ranged.group(1))
    length = headers.get("content-length")
    return int(length) + have if length else 0


def _check_status(status: int, url: str) -> None:
    if status in (200, 206):
        return
    if status == 404:
        raise NotFound(f"{url} answered 404: check the URL")
    if status in (401, 403):
        raise Forbidden(f"{url} answered {status}: it is not public; download it yourself")
    if 400 <= status < 500:
        raise InvalidRequest(f"{url} answered {status}")
    raise _Cut(f"{url} answered {status}: try again later")
