"""Models from a plain http(s) URL (registry/url_source.py) against a local web server: a
download checked against its #sha256=, one cut midway and resumed with a ranged GET, one from a
server that ignores ranges, a checksum mismatch refused with nothing left under the final
name, 404 and a URL that names no GGUF each with its message, and a URL model registered on
one node and fetched by the registry of the node given it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_hub import FakeHub
from helpers import running_registry

from meshllm.core.errors import InvalidRequest, NotFound, Unavailable
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore
from meshllm.registry import sources, url_source
from meshllm.registry.downloads import Manifest
from meshllm.registry.settings import RegistrySettings

pytestmark = pytest.mark.integration


@pytest.fixture
def web() -> Iterator[FakeHub]:
    with FakeHub() as served:
        yield served


def get(value: str, cache: Path) -> Path:
    return sources.fetch(sources.resolve(value, cache / "models", cache), cache)


def test_a_url_download_is_checked_and_mesh_managed(web: FakeHub, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    url = web.put("files/m-Q4_K_M.gguf", data)
    resolved = sources.resolve(
        f"{url}#sha256={hashlib.sha256(data).hexdigest()}", tmp_path, tmp_path
    )
    assert resolved.name == "m-Q4_K_M" and resolved.source.kind == pb.MODEL_SOURCE_KIND_URL
    path = sources.fetch(resolved, tmp_path)
    assert path.read_bytes() == data and path.name == "m-Q4_K_M.gguf"
    assert [d.origin for d in Manifest(tmp_path).downloads().values()] == [f"url:{url}"]
    assert get(url, tmp_path) == path  # the second time from the cache
    assert len([r for r in web.requests if r[0] == "GET"]) == 1


@pytest.mark.parametrize("ignore_ranges", [False, True])
def test_a_cut_download_resumes_or_starts_over(
    web: FakeHub, tmp_path: Path, ignore_ranges: bool
) -> None:
    data = os.urandom(3 * 2**20)
    url = web.put("big.gguf", data)
    web.cut_after["big.gguf"] = 2**20
    web.ignore_ranges = ignore_ranges
    path = get(url, tmp_path)
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
    gets = [r for r in web.requests if r[0] == "GET"]
    assert len(gets) == 2 and gets[1][2].startswith("bytes=")


def test_a_file_that_does_not_match_its_sha256_is_refused(web: FakeHub, tmp_path: Path) -> None:
    url = web.put("m.gguf", b"GGUF" * 1000)
    with pytest.raises(Unavailable, match="does not match the SHA-256 in its #sha256="):
        get(f"{url}#sha256={'0' * 64}", tmp_path)
    assert not [p for p in (tmp_path / "urls").rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("absent.gguf", NotFound, "answered 404: check the URL"),
        ("notes.txt", InvalidRequest, "a model URL names a .gguf file"),
        ("m.gguf#md5=abc", InvalidRequest, "the only fragment a model URL takes is #sha256="),
    ],
)
def test_url_errors_each_say_what_to_do(
    web: FakeHub, tmp_path: Path, path: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        get(f"{web.url}/static/{path}", tmp_path)


async def test_a_url_model_is_fetched_by_the_registry_of_the_node_given_it(
    web: FakeHub, tiny_model: Path, tmp_path: Path, store: EtcdStore, mesh_id: str
) -> None:
    url = web.put("tiny.gguf", tiny_model.read_bytes())
    settings = {
        node: RegistrySettings(
            mesh_id=mesh_id,
            node=node,
            models_dir=str(tmp_path / node / "models"),
            cache_dir=str(tmp_path / node / "cache"),
        )
        for node in ("n1", "n2")
    }
    async with running_registry(store, settings["n1"]) as n1:
        entry = await n1.client.register(name=url)
    assert (entry.name, entry.source.url) == ("tiny", url)
    assert url_source.parse_url(url) is not None
    async with running_registry(store, settings["n2"]) as n2:
        located = await n2.client.locate("tiny", "n2")
    assert Path(located.path).read_bytes() == tiny_model.read_bytes()
    assert str(tmp_path / "n2" / "cache") in located.path
