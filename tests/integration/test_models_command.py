"""`mesh-llm models …` as a user runs it (a real process) against a local hub server: search
and show the catalog, download by catalog name, list what is installed (mesh-managed or
external, last used), and clean up — a dry run deletes nothing, `--yes` deletes only the
mesh's own files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fake_hub import FakeHub

from meshllm.core.model_copies import COPIES, copy_path
from meshllm.registry import model_catalog
from meshllm.registry.downloads import Manifest

pytestmark = pytest.mark.integration


class Models:
    def __init__(self, hub: FakeHub, root: Path) -> None:
        self.hub = hub
        self.root = root
        self.env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "HF_HUB_CACHE": str(root / "hub"),
            "MESH_CACHE_DIR": str(root / "cache"),
            "MESH_MODELS_DIR": str(root / "mine"),
        }
        self.env.pop("HF_TOKEN", None)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "meshllm.cli", "models", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def json(self, *args: str) -> object:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def models(tmp_path: Path) -> Iterator[Models]:
    with FakeHub() as hub:
        yield Models(hub, tmp_path)


def test_search_and_show_the_catalog(models: Models) -> None:
    found = models.json("search", "qwen2.5")
    assert found and all("qwen2.5" in (m["name"] + m["repo"]).lower() for m in found)
    sizes = [m["size_bytes"] for m in found]
    assert sizes == sorted(sizes)
    listed = model_catalog.find("Qwen2.5-3B")
    assert listed is not None
    models.hub.add(listed.repo, {listed.file: b"GGUF" + os.urandom(2000)})
    shown = models.json("show", "Qwen2.5-3B")
    assert shown["name"] == listed.name and shown["repo"] == listed.repo
    assert shown["files"][0]["path"] == listed.file and len(shown["files"][0]["sha256"]) == 64
    assert shown["downloaded"] == ""


def test_download_by_catalog_name_and_the_cleanup_of_what_nobody_used(models: Models) -> None:
    listed = model_catalog.find("Qwen2.5-0.5B")
    assert listed is not None
    data = b"GGUF" + os.urandom(5000)
    models.hub.add(listed.repo, {listed.file: data})
    got = models.json("download", "Qwen2.5-0.5B")
    assert got["name"] == listed.name and Path(got["path"]).read_bytes() == data
    assert models.json("show", "Qwen2.5-0.5B")["downloaded"] == got["path"]

    mine = models.root / "mine"  # the user's own file: external, never cleaned up
    mine.mkdir()
    (mine / "own.gguf").write_bytes(b"GGUF own")
    listing = {Path(f["path"]).name: f for f in models.json("installed")}
    assert listing[listed.file]["managed"] and listing[listed.file]["origin"].startswith("hf:")
    assert not listing["own.gguf"]["managed"]
    assert listing["own.gguf"]["last_used_unix"] == 0

    # nothing is unused for 30 days yet
    assert models.json("cleanup", "--unused-since", "30d")["files"] == []
    # a day later (as the manifest says): the dry run lists it and deletes nothing
    manifest = Manifest(models.root / "cache")
    downloaded = manifest.downloads()[got["path"]]
    day_ago = int(time.time()) - 86400
    record = {**downloaded.__dict__, "downloaded_unix": day_ago}
    raw = json.loads(manifest.path.read_text())
    raw["downloads"][got["path"]] = record
    manifest.path.write_text(json.dumps(raw))
    preview = models.json("cleanup", "--unused-since", "12h")
    assert [f["path"] for f in preview["files"]] == [got["path"]] and not preview["deleted"]
    assert Path(got["path"]).exists()
    done = models.json("cleanup", "--unused-since", "12h", "--yes")
    assert done["deleted"] and not os.path.lexists(got["path"])
    assert (mine / "own.gguf").exists()
    assert not [p for p in (models.root / "hub").rglob("blobs/*") if p.is_file()]
    names = [Path(f["path"]).name for f in models.json("installed")]
    assert names == ["own.gguf"]


def test_a_model_used_recently_is_kept(models: Models) -> None:
    models.hub.add("org/repo", {"m.gguf": b"GGUF m"})
    got = models.json("download", "org/repo/m.gguf")
    manifest = Manifest(models.root / "cache")
    raw = json.loads(manifest.path.read_text())
    raw["downloads"][got["path"]]["downloaded_unix"] = int(time.time()) - 10 * 86400
    manifest.path.write_text(json.dumps(raw))
    manifest.touch(Path(got["path"]))  # the mesh served it just now
    assert models.json("cleanup", "--unused-since", "1d", "--yes")["files"] == []
    assert Path(got["path"]).exists()


def test_shards_and_copies_are_the_mesh_s_to_clean_up(models: Models) -> None:
    llama_cache = models.root / "llama-cache"
    models.env["MESH_LLAMA_CACHE_DIR"] = str(llama_cache)
    made = models.root / "cache" / "shards" / quote("org/moe", safe="") / "s1.gguf"  # registry
    delivered = llama_cache / "shards" / "moe" / "s2.gguf"  # a worker's, from a registry
    copy = copy_path(llama_cache / COPIES, "dense")
    sides = [made.with_suffix(".json"), delivered.with_name("s2.gguf.sha256")]
    sides.append(copy.with_name("model.gguf.version"))
    for path in [made, delivered, copy, *sides]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"GGUF" + bytes(100))
    long_ago = time.time() - 40 * 86400
    for path in (made, copy):
        os.utime(path, (long_ago, long_ago))
    os.utime(delivered, (time.time(), long_ago))  # made long ago, read just now

    listing = {f["path"]: f for f in models.json("installed")}
    assert listing[str(made)]["origin"] == "expert shard of org/moe"
    assert listing[str(delivered)]["origin"] == "expert shard of moe"
    assert listing[str(copy)]["origin"] == "copy of dense"
    assert all(listing[str(p)]["managed"] for p in (made, delivered, copy))

    done = models.json("cleanup", "--unused-since", "30d", "--yes")
    assert sorted(f["path"] for f in done["files"]) == sorted([str(made), str(copy)])
    assert done["bytes"] == 2 * 104
    assert not made.parent.exists() and not copy.parent.exists()  # with their side files
    assert delivered.exists() and sides[1].exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "not-a-model"), "neither a catalog name"),
        (("download", "org/none/x.gguf"), "org/none: not found or not allowed"),
        (("cleanup", "--unused-since", "soon"), "--unused-since 'soon'"),
    ],
)
def test_bad_input_gets_one_line(models: Models, args: tuple[str, ...], message: str) -> None:
    done = models.run(*args)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("mesh-llm: error: ") and message in line
