"""Writing an expert shard against a plain copy of the same model on the same disk.

A generated mixture of experts (f32, a few hundred MB) is copied (`shutil.copyfile`) and
sharded to half its experts (`registry.shards.write_shard`), each in its own process, the
two alternating for `--rounds` rounds after one warm-up each (the source then sits in the
page cache for both). Reported per side: the median time each child measured around its
own work (not its start-up), throughput (bytes written per second), the ratio shard/copy
(goal >= 0.5), and the writer's peak memory sampled from /proc: anonymous memory (what the
process allocated: goal well under the model's size) and file-backed resident pages.

    .venv/bin/python bench/shard_write.py --rounds 5 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshllm.cli.make_model import ModelShape, cached_model

SHAPE = ModelShape(
    layers=4, embedding=512, feed_forward=1024, heads=8, kv_heads=4, name="bench-moe",
    experts=16, experts_used=2, seed=11,
)  # fmt: skip
# each child times its own work, not its interpreter's start and imports
COPY = (
    "import shutil, sys, time; t = time.perf_counter()\n"
    "shutil.copyfile(sys.argv[1], sys.argv[2]); print(time.perf_counter() - t)"
)
SHARD = (
    "import sys, time; from pathlib import Path; from meshllm.registry.shards import write_shard\n"
    "half = [list(range(0, 16, 2))] * int(sys.argv[3]); t = time.perf_counter()\n"
    "write_shard(Path(sys.argv[1]), Path(sys.argv[2]), half); print(time.perf_counter() - t)"
)


def run(code: str, source: Path, dest: Path) -> dict[str, float]:
    """Run `code` in a child, sampling its memory every 10 ms; the seconds the child timed
    its work at, and memory peaks in bytes."""
    child = subprocess.Popen([sys.executable, "-c", code, str(source), str(dest),
                              str(SHAPE.layers)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    anon = file = 0
    while child.poll() is None:
        rss = _rss(child.pid)
        anon, file = max(anon, rss.get("RssAnon", 0)), max(file, rss.get("RssFile", 0))
        time.sleep(0.01)
    if child.returncode != 0:
        raise SystemExit(f"child failed with exit {child.returncode}")
    assert child.stdout is not None
    seconds = float(child.stdout.read())
    return {"seconds": seconds, "bytes": dest.stat().st_size, "anon": anon, "file": file}


def _rss(pid: int) -> dict[str, int]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            found[key] = int(value.split()[0]) * 1024
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    model = cached_model(SHAPE)
    work = Path(tempfile.mkdtemp(prefix="mesh-bench-shard-", dir=model.parent))
    sides: dict[str, list[dict[str, float]]] = {"copy": [], "shard": []}
    try:
        for index in range(args.rounds + 1):  # the first round of each side warms up
            order = ("copy", "shard") if index % 2 else ("shard", "copy")
            for side in order:
                dest = work / f"{side}.gguf"
                result = run(COPY if side == "copy" else SHARD, model, dest)
                dest.unlink()
                if index:
                    sides[side].append(result)
    finally:
        for leftover in work.iterdir():
            leftover.unlink()
        work.rmdir()
    summary = {side: _summary(runs) for side, runs in sides.items()}
    ratio = summary["shard"]["mb_per_s"] / summary["copy"]["mb_per_s"]
    report = {"model_bytes": model.stat().st_size, "sides": summary, "throughput_ratio": ratio,
              "machine": f"{os.cpu_count()} cores", "command": " ".join(sys.argv)}  # fmt: skip
    print(_markdown(report) if args.markdown else json.dumps(report, indent=2))
    return 0


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    seconds = statistics.median(r["seconds"] for r in runs)
    written = runs[0]["bytes"]
    return {
        "seconds": round(seconds, 3),
        "bytes": written,
        "mb_per_s": round(written / seconds / 1e6, 1),
        "peak_anon_mb": round(max(r["anon"] for r in runs) / 1e6, 1),
        "peak_file_mb": round(max(r["file"] for r in runs) / 1e6, 1),
    }


def _markdown(report: dict) -> str:  # type: ignore[type-arg]
    lines = [f"Model {report['model_bytes'] / 1e6:.1f} MB; {report['machine']}; "
             f"`{report['command']}`", "",
             "| side | written MB | median s | MB/s | peak anonymous MB | peak file-backed MB |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for side, s in report["sides"].items():
        lines.append(f"| {side} | {s['bytes'] / 1e6:.1f} | {s['seconds']} | {s['mb_per_s']} | "
                     f"{s['peak_anon_mb']} | {s['peak_file_mb']} |")  # fmt: skip
    lines += ["", f"Shard/copy throughput: {report['throughput_ratio']:.2f}"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
