"""Speculative decoding: a model decoding alone against the same model with a draft, side by
side in one run, each llama-server started with the worker's own arguments
(`worker.llama_server.build_argv`), one at a time, with the same greedy requests.

Three pairs:
- "agreeing": a generated 16-layer model whose layers after the second add nothing (their
  attention output and FFN down projections are zero), drafted by its own first two layers;
  the draft always agrees, so this is the most a draft can buy at that cost ratio;
- "unrelated": the same 16-layer model without zeroed layers, drafted by an unrelated random
  2-layer model of the same vocabulary: the draft is almost always wrong, so this is what a
  bad draft costs;
- "SmolLM2-135M": the real model at F16 (made from its Q4_1 by llama-quantize) drafted by the
  Q4_1 file itself, on real text.

    .venv/bin/python bench/drafts.py [--tokens 96] [--threads 2] [--draft-max N] [--markdown]
        [--pairs agreeing,unrelated,smollm] [--base GGUF] [--gpu]

`--base` makes the agreeing pair from another model (bench/gpu_drafts.sh: an 8B-shaped
Q4_K_M on a GPU); `--gpu` puts every layer, the draft's too, on the GPU.

`--draft-max` is llama-server's `--spec-draft-n-max` (tokens drafted a round; 0: its default,
3), which a node takes from `supervisor.extra_args`.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import gguf
import httpx
import numpy as np

from meshllm.cli.make_model import ModelShape, cached_model
from meshllm.core.binaries import find_binary, llama_tool
from meshllm.core.ports import free_port
from meshllm.registry.catalog import fetch_builtin
from meshllm.worker.llama_server import InstanceSpec, build_argv

BASE = ModelShape(
    layers=16, embedding=1024, feed_forward=2816, heads=8, kv_heads=4, dtype="f16",
    name="draft-bench-base", seed=31,
)  # fmt: skip
UNRELATED = ModelShape(
    layers=2, embedding=1024, feed_forward=2816, heads=8, kv_heads=4, dtype="f16",
    name="draft-bench-unrelated", seed=32,
)  # fmt: skip
KEEP = 2  # the agreeing pair's draft: the base's first layers
PROMPTS = [
    "Once upon a time there was",
    "The three most important things about databases are",
    "def fibonacci(n):",
]
CHAT_PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "List ten fruits and say one thing about each.",
]
ZEROED = ("attn_output.weight", "ffn_down.weight")


def rewrite(source: Path, dest: Path, keep_layers: int | None, zero_after: int | None) -> Path:
    """A copy of `source` with only its first `keep_layers` layers, or with the attention
    output and FFN down projections of every layer from `zero_after` on set to zero (those
    layers then add nothing to the residual stream)."""
    reader = gguf.GGUFReader(source)
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(dest, arch)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        value = field.contents()
        if keep_layers is not None and field.name == f"{arch}.block_count":
            value = keep_layers
        kind = field.types[0]
        sub = field.types[1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, kind, sub_type=sub)
    for tensor in reader.tensors:
        layer = _layer(tensor.name)
        if keep_layers is not None and layer is not None and layer >= keep_layers:
            continue
        data = np.array(tensor.data)
        if zero_after is not None and layer is not None and layer >= zero_after:
            if tensor.name.endswith(ZEROED):
                data = np.zeros_like(data)
        writer.add_tensor(tensor.name, data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dest


def _layer(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "blk" else None


def decode(
    model: Path,
    draft: Path | None,
    threads: int,
    tokens: int,
    chat: bool,
    draft_max: int = 0,
    gpu: bool = False,
) -> dict:
    """Decode speed and draft acceptance over the prompts, one llama-server on `model`."""
    binary = find_binary("llama-server").path
    port = free_port()
    spec = InstanceSpec(
        "bench", "m", str(model), 2048, parallel=1, threads=threads, prompt_cache_mib=0,
        draft_path=str(draft) if draft else "", gpu_layers=999 if gpu else 0,
        extra_args=("--spec-draft-n-max", str(draft_max)) if draft and draft_max else (),
    )  # fmt: skip
    process = subprocess.Popen(
        build_argv(binary, spec, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        totals = {"tokens": 0, "seconds": 0.0, "drafted": 0, "accepted": 0}
        texts = []
        for prompt in CHAT_PROMPTS if chat else PROMPTS:
            body = {"n_predict": tokens, "temperature": 0, "cache_prompt": False}
            if chat:
                body["messages"] = [{"role": "user", "content": prompt}]
                reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600).json()
                texts.append(reply["choices"][0]["message"]["content"])
            else:
                body["prompt"] = prompt
                reply = httpx.post(f"{url}/completion", json=body, timeout=600).json()
                texts.append(reply["content"])
            timings = reply["timings"]
            totals["tokens"] += timings["predicted_n"]
            totals["seconds"] += timings["predicted_ms"] / 1000
            totals["drafted"] += timings.get("draft_n", 0)
            totals["accepted"] += timings.get("draft_n_accepted", 0)
        return {**totals, "texts": texts}
    finally:
        process.terminate()
        process.wait(30)


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"llama-server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("llama-server was not ready after 300 s")


def pairs(folder: Path, wanted: list[str], base: Path | None) -> list[tuple[str, Path, Path, bool]]:
    found = []
    if "agreeing" in wanted:
        base = base or cached_model(BASE)
        agreeing = rewrite(base, folder / "agreeing.gguf", None, zero_after=KEEP)
        first = rewrite(base, folder / "first-layers.gguf", keep_layers=KEEP, zero_after=None)
        layers = gguf_layers(base)
        found.append((f"agreeing ({layers} layers, drafted by its first {KEEP})", agreeing, first))
    if "unrelated" in wanted:
        found.append(("unrelated (16 layers, a random 2-layer draft)", cached_model(BASE),
                      cached_model(UNRELATED)))  # fmt: skip
    chosen = [(name, model, draft, False) for name, model, draft in found]
    if "smollm" in wanted:
        chosen.append(smollm_pair(folder))
    return chosen


def gguf_layers(path: Path) -> int:
    reader = gguf.GGUFReader(path)
    arch = str(reader.fields["general.architecture"].contents())
    return int(reader.fields[f"{arch}.block_count"].contents())


def smollm_pair(folder: Path) -> tuple[str, Path, Path, bool]:
    smollm = fetch_builtin("smollm2-135m-instruct", Path.home() / ".cache/mesh-llm/models")
    f16 = folder / "smollm2-f16.gguf"
    quantize = llama_tool("llama-quantize")
    if quantize is None:
        raise SystemExit("llama-quantize is not built: make llama")
    subprocess.run(
        [quantize, "--allow-requantize", str(smollm), str(f16), "F16"],
        check=True, capture_output=True,
    )  # fmt: skip
    return ("SmolLM2-135M F16, drafted by its Q4_1", f16, smollm, True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--draft-max", type=int, default=0, help="tokens drafted a round")
    parser.add_argument("--pairs", default="agreeing,unrelated,smollm")
    parser.add_argument("--base", default="", help="the model the agreeing pair is made of")
    parser.add_argument("--gpu", action="store_true", help="every layer on the GPU")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.base) if args.base else None
        for name, model, draft, chat in pairs(Path(tmp), args.pairs.split(","), base):
            alone = decode(model, None, args.threads, args.tokens, chat, 0, args.gpu)
            drafted = decode(
                model, draft, args.threads, args.tokens, chat, args.draft_max, args.gpu
            )
            same = alone["texts"] == drafted["texts"]
            rows.append((name, alone, drafted, same))
    header = "| pair | alone tok/s | with draft tok/s | ratio | accepted | same answers |"
    print(header if args.markdown else header.replace("|", " "))
    if args.markdown:
        print("|---|---|---|---|---|---|")
    for name, alone, drafted, same in rows:
        a = alone["tokens"] / alone["seconds"]
        d = drafted["tokens"] / drafted["seconds"]
        accepted = drafted["accepted"] / drafted["drafted"] if drafted["drafted"] else 0.0
        print(
            f"| {name} | {a:.1f} | {d:.1f} | {d / a:.2f} | {accepted:.0%} of "
            f"{drafted['drafted']} | {'yes' if same else 'no'} |"
        )


if __name__ == "__main__":
    main()
