"""Models from a Hugging Face hub: huggingface_hub against a local server speaking the hub's
protocol (tests/fake_hub.py). A full download, one the server cuts midway (resumed with a
ranged GET), a file that does not match its checksum (refused and deleted), 401 / 404 /
gated each with its message, a split GGUF, a quantization picked by name, and the
downloaded model served by `mesh-llm serve --model org/repo/file.gguf`."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fake_hub import FakeHub
from harness import local_serve
from helpers import running_registry

from meshllm.core.clients import RegistryClient
from meshllm.core.errors import Forbidden, InvalidRequest, NotFound, Unavailable
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore
from meshllm.registry import hub
from meshllm.registry.settings import RegistrySettings

pytestmark = pytest.mark.integration


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as served:
        monkeypatch.setenv("HF_ENDPOINT", served.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        # huggingface_hub reads its cache folder once, at import: follow the variable
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        yield served


def fetch(value: str) -> Path:
    ref = hub.parse_ref(value)
    assert ref is not None
    return hub.download(hub.resolve(ref), progress=False)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_download_lands_checked_in_the_hub_cache(fake_hub: FakeHub, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    fake_hub.add("org/repo", {"m-Q4_K_M.gguf": data})
    path = fetch("org/repo/m-Q4_K_M.gguf")
    assert path.read_bytes() == data
    assert str(path).startswith(str(tmp_path / "hub-cache"))
    model = hub.resolve(hub.HubRef("org/repo", "m-Q4_K_M.gguf"))
    assert hub.cached(model) == path and model.name == "m-Q4_K_M"
    assert model.files[0].sha256 == sha(data)


def test_a_cut_download_resumes_with_a_ranged_get(fake_hub: FakeHub) -> None:
    data = os.urandom(24 * 2**20)
    fake_hub.add("org/big", {"big.gguf": data})
    fake_hub.cut_after["big.gguf"] = 13 * 2**20
    path = fetch("org/big/big.gguf")
    assert sha(path.read_bytes()) == sha(data)
    gets = [r for r in fake_hub.requests if r[0] == "GET" and r[1].endswith("/big.gguf")]
    assert len(gets) == 2 and gets[0][2] == "" and gets[1][2].startswith("bytes=")
    resumed_at = int(gets[1][2].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 13 * 2**20


def test_a_file_that_does_not_match_its_checksum_is_refused_and_deleted(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    fake_hub.add("org/bad", {"c.gguf": b"GGUF" * 1000}, corrupt={"c.gguf"})
    with pytest.raises(Unavailable, match="does not match the SHA-256 the hub reports"):
        fetch("org/bad/c.gguf")
    left = [p for p in (tmp_path / "hub-cache").rglob("*") if p.is_file() or p.is_symlink()]
    assert not [p for p in left if p.name == "c.gguf" or len(p.name) == 64]


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("org/none/m.gguf", Forbidden, "org/none: not found or not allowed; a private repo"),
        ("org/repo/absent.gguf", NotFound, "org/repo has no file absent.gguf"),
        ("org/repo:Q2_K", NotFound, "org/repo has no Q2_K GGUF; it has: Q4_K_M, Q8_0"),
        ("org/repo:Q8_0", InvalidRequest, "matches 2 files"),
        ("org/private/p.gguf", Forbidden, "a private repo needs HF_TOKEN"),
        ("org/gated/g.gguf", Forbidden, "org/gated is gated: accept its terms"),
    ],
)
def test_hub_errors_each_say_what_to_do(
    fake_hub: FakeHub, value: str, error: type[Exception], message: str
) -> None:
    fake_hub.add(
        "org/repo",
        {"m-Q4_K_M.gguf": b"a", "m-Q8_0.gguf": b"b", "n-Q8_0.gguf": b"c", "mmproj-f16.gguf": b"d"},
    )
    fake_hub.add("org/private", {"p.gguf": b"p"}, private_token="hf_secret")
    fake_hub.add("org/gated", {"g.gguf": b"g"}, gated=True)
    with pytest.raises(error, match=message):
        fetch(value)


def test_a_private_repo_downloads_with_its_token(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_hub.add("org/private", {"p.gguf": b"private bytes"}, private_token="hf_secret")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert fetch("org/private/p.gguf").read_bytes() == b"private bytes"


def test_a_split_gguf_is_every_part_side_by_side(fake_hub: FakeHub) -> None:
    parts = {f"q/m-Q4_K_M-0000{i}-of-00003.gguf": os.urandom(1000) for i in (1, 2, 3)}
    fake_hub.add("org/split", {**parts, "q/m-Q8_0.gguf": b"x"})
    first = fetch("org/split:Q4_K_M")
    assert first.name == "m-Q4_K_M-00001-of-00003.gguf"
    for name, data in parts.items():
        assert (first.parent / name.rsplit("/", 1)[-1]).read_bytes() == data
    assert hub.resolve(hub.HubRef("org/split", quant="Q4_K_M")).name == "m-Q4_K_M"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("org/repo/m.gguf", hub.HubRef("org/repo", "m.gguf")),
        ("org/repo/sub/dir/m.gguf", hub.HubRef("org/repo", "sub/dir/m.gguf")),
        ("org/repo:Q4_K_M", hub.HubRef("org/repo", quant="Q4_K_M")),
        ("hf://org/repo/m.gguf", hub.HubRef("org/repo", "m.gguf")),
        (
            "https://huggingface.co/org/repo/resolve/v2/m.gguf",
            hub.HubRef("org/repo", "m.gguf", revision="v2"),
        ),
        ("https://example.com/org/repo/resolve/main/m.gguf", None),
        ("./m.gguf", None),
        ("smollm2", None),
        ("org/m.gguf", None),
    ],
)
def test_hub_references(value: str, expected: hub.HubRef | None) -> None:
    assert hub.parse_ref(value) == expected


def test_serve_downloads_and_serves_a_hub_model(
    fake_hub: FakeHub, tiny_model: Path, tmp_path: Path
) -> None:
    fake_hub.add("org/tiny-GGUF", {"tiny-Q8_0.gguf": tiny_model.read_bytes()})
    node = local_serve(
        tmp_path / "state",
        extra=("--model", "org/tiny-GGUF/tiny-Q8_0.gguf"),
        env={
            "HF_ENDPOINT": fake_hub.url,
            "HF_HUB_CACHE": str(tmp_path / "hub-cache"),
            "MESH_CACHE_DIR": str(tmp_path / "models"),
        },
    )
    try:
        node.wait_event("model_ready", timeout=120)
        reply = httpx.post(
            f"{node.api}/completions",
            json={"model": "tiny-Q8_0", "prompt": "hi", "max_tokens": 2},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
    finally:
        node.stop()


async def test_a_hub_model_is_fetched_by_the_registry_of_the_node_given_it(
    fake_hub: FakeHub, tiny_model: Path, tmp_path: Path, store: EtcdStore, mesh_id: str
) -> None:
    """Registered on n1 by its hub reference; n2 (a standby given it) holds no copy, and
    its registry downloads it when the worker asks where the file is."""
    fake_hub.add("org/tiny-GGUF", {"tiny-Q8_0.gguf": tiny_model.read_bytes()})
    async with registry_on(store, mesh_id, "n1", tmp_path) as n1:
        entry = await n1.register(name="org/tiny-GGUF/tiny-Q8_0.gguf")
    assert entry.name == "tiny-Q8_0" and entry.source.kind == pb.MODEL_SOURCE_KIND_HUGGINGFACE
    assert (entry.source.repo, entry.source.member) == ("org/tiny-GGUF", "tiny-Q8_0.gguf")
    shutil.rmtree(tmp_path / "hub-cache")  # n2 has nothing
    async with registry_on(store, mesh_id, "n2", tmp_path) as n2:
        located = await n2.locate("tiny-Q8_0", "n2")
    assert Path(located.path).read_bytes() == tiny_model.read_bytes()
    assert located.facts.block_count == entry.facts.block_count


async def test_a_vision_models_projector_comes_from_its_repo_and_goes_where_the_model_goes(
    fake_hub: FakeHub, tiny_model: Path, tmp_path: Path, store: EtcdStore, mesh_id: str
) -> None:
    """mmproj named as a file of the model's own repo: downloaded and checked beside it; n2,
    given the model, fetches both when its worker asks where they are."""
    projector = os.urandom(50_000)
    fake_hub.add(
        "org/see-GGUF", {"see-Q8_0.gguf": tiny_model.read_bytes(), "mmproj.gguf": projector}
    )
    async with registry_on(store, mesh_id, "n1", tmp_path) as n1:
        entry = await n1.register(name="org/see-GGUF/see-Q8_0.gguf", mmproj="mmproj.gguf")
        text_only = await n1.register(path=str(tiny_model))
        assert (await n1.locate(tiny_model.stem, "n1")).projector_path == ""
    assert (entry.projector.repo, entry.projector.member) == ("org/see-GGUF", "mmproj.gguf")
    assert Path(entry.projector.path).read_bytes() == projector
    assert not text_only.HasField("projector")
    shutil.rmtree(tmp_path / "hub-cache")
    async with registry_on(store, mesh_id, "n2", tmp_path) as n2:
        located = await n2.locate("see-Q8_0", "n2")
    assert Path(located.projector_path).read_bytes() == projector


async def test_a_catalog_vision_model_brings_the_catalogs_projector(
    fake_hub: FakeHub, tiny_model: Path, tmp_path: Path, store: EtcdStore, mesh_id: str
) -> None:
    from meshllm.registry import model_catalog

    listed = next(m for m in model_catalog.CATALOG if m.vision)
    projector = os.urandom(20_000)
    fake_hub.add(listed.repo, {listed.file: tiny_model.read_bytes(), listed.mmproj: projector})
    async with registry_on(store, mesh_id, "n1", tmp_path) as n1:
        entry = await n1.register(name=listed.aliases[0])
    assert entry.name == listed.name
    assert (entry.projector.repo, entry.projector.member) == (listed.repo, listed.mmproj)
    assert Path(entry.projector.path).read_bytes() == projector


@pytest.mark.parametrize(
    ("mmproj", "error", "message"),
    [
        ("/nonexistent/mmproj.gguf", NotFound, "mmproj /nonexistent/mmproj.gguf: no such file"),
        ("org/see-GGUF:Q8_0", InvalidRequest, "name the projector's file"),
        ("org/see-GGUF/absent.gguf", NotFound, "org/see-GGUF has no file absent.gguf"),
    ],
)
async def test_a_projector_that_cannot_be_had_refuses_the_registration(
    fake_hub: FakeHub,
    tiny_model: Path,
    tmp_path: Path,
    store: EtcdStore,
    mesh_id: str,
    mmproj: str,
    error: type[Exception],
    message: str,
) -> None:
    fake_hub.add("org/see-GGUF", {"see-Q8_0.gguf": tiny_model.read_bytes()})
    async with registry_on(store, mesh_id, "n1", tmp_path) as n1:
        with pytest.raises(error, match=message):
            await n1.register(path=str(tiny_model), mmproj=mmproj)


@asynccontextmanager
async def registry_on(
    store: EtcdStore, mesh_id: str, node: str, tmp_path: Path
) -> AsyncIterator[RegistryClient]:
    settings = RegistrySettings(
        mesh_id=mesh_id,
        node=node,
        models_dir=str(tmp_path / node / "models"),
        cache_dir=str(tmp_path / node / "cache"),
    )
    async with running_registry(store, settings) as running:
        yield running.client
