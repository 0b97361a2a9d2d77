"""The curated catalog: short names for popular GGUF models on the Hugging Face hub.

`mesh-llm serve --model Qwen2.5-3B` finds its entry here (`find`, by name or alias, any case)
and downloads `file` from `repo`. A split GGUF is named by its first part
(`...-00001-of-0000N.gguf`) and `parts` says how many there are; llama-server loads it from the
first. A vision model also needs its projector, `mmproj`, from the same repo.

`size_bytes` is the published size of the model's GGUF (every part of a split one, without the
projector), in decimal bytes; where the hub lists a rounded size, so is this. `family` groups
models that share a tokenizer, so that `draft` (a small model of the same family for
speculative decoding) can be checked. `tool_use` marks the models that are good at tool calls,
for picking an agent model; `context` is the context length the model was trained for.

Everything here is data and pure functions: nothing is read or fetched."""

from __future__ import annotations

from dataclasses import dataclass

HEADROOM_PERCENT = 20  # room for the KV cache and compute buffers beside the weights


@dataclass(frozen=True)
class CatalogModel:
    name: str
    repo: str
    file: str  # the GGUF's path in the repo; a split GGUF's first part
    size_bytes: int
    architecture: str  # llama.cpp's general.architecture
    parameters: str  # "8B"; a mixture of experts gives total and active: "30B-A3B"
    family: str  # models of one family share a tokenizer
    context: int
    description: str
    aliases: tuple[str, ...] = ()
    parts: int = 1
    moe: bool = False
    vision: bool = False
    mmproj: str = ""  # the projector's path in the repo, for a vision model
    tool_use: bool = False
    draft: str = ""  # the name of a catalog model to draft with, or ""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def split(self) -> bool:
        return self.parts > 1


CATALOG: tuple[CatalogModel, ...] = (
    CatalogModel(
        name="SmolLM2-360M-Instruct-Q4_K_M",
        aliases=("SmolLM2-360M", "SmolLM2-360M-Instruct"),
        repo="bartowski/SmolLM2-360M-Instruct-GGUF",
        file="SmolLM2-360M-Instruct-Q4_K_M.gguf",
        size_bytes=259_915_680,
        architecture="llama",
        parameters="360M",
        family="smollm2",
        context=8_192,
        description="Tiny instruct model for tests and very small machines; draft for SmolLM2",
    ),
    CatalogModel(
        name="Qwen3-0.6B-Q4_K_M",
        aliases=("Qwen3-0.6B",),
        repo="unsloth/Qwen3-0.6B-GGUF",
        file="Qwen3-0.6B-Q4_K_M.gguf",
        size_bytes=396_705_472,
        architecture="qwen3",
        parameters="0.6B",
        family="qwen3",
        context=40_960,
        description="Smallest Qwen3; draft for the Qwen3 family",
    ),
    CatalogModel(
        name="Qwen2.5-0.5B-Instruct-Q4_K_M",
        aliases=("Qwen2.5-0.5B", "Qwen2.5-0.5B-Instruct"),
        repo="Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        file="qwen2.5-0.5b-instruct-q4_k_m.gguf",
        size_bytes=491_000_000,
        architecture="qwen2",
        parameters="0.5B",
        family="qwen2.5",
        context=32_768,
        description="Smallest Qwen2.5; draft for the Qwen2.5 and Qwen2.5-Coder family",
    ),
    CatalogModel(
        name="Qwen3.5-0.8B-Vision-Q4_K_M",
        aliases=("Qwen3.5-0.8B", "Qwen3.5-0.8B-Vision"),
        repo="unsloth/Qwen3.5-0.8B-GGUF",
        file="Qwen3.5-0.8B-Q4_K_M.gguf",
        size_bytes=508_000_000,
        architecture="qwen35",
        parameters="0.8B",
        family="qwen3.5",
        context=262_144,
        vision=True,
        mmproj="mmproj-BF16.gguf",
        description="Tiny vision model: OCR and screenshots on almost any machine",
    ),
    CatalogModel(
        name="Gemma-3-1B-it-Q4_K_M",
        aliases=("Gemma-3-1B", "Gemma-3-1B-it"),
        repo="bartowski/google_gemma-3-1b-it-GGUF",
        file="google_gemma-3-1b-it-Q4_K_M.gguf",
        size_bytes=806_000_000,
        architecture="gemma3",
        parameters="1B",
        family="gemma3",
        context=32_768,
        description="Smallest Gemma 3; draft for the Gemma 3 family",
    ),
    CatalogModel(
        name="Llama-3.2-1B-Instruct-Q4_K_M",
        aliases=("Llama-3.2-1B", "Llama-3.2-1B-Instruct"),
        repo="bartowski/Llama-3.2-1B-Instruct-GGUF",
        file="Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        size_bytes=808_000_000,
        architecture="llama",
        parameters="1B",
        family="llama3",
        context=131_072,
        description="Smallest Llama 3.2; draft for the Llama 3.x family",
    ),
    CatalogModel(
        name="SmolLM2-1.7B-Instruct-Q4_K_M",
        aliases=("SmolLM2-1.7B", "SmolLM2-1.7B-Instruct"),
        repo="bartowski/SmolLM2-1.7B-Instruct-GGUF",
        file="SmolLM2-1.7B-Instruct-Q4_K_M.gguf",
        size_bytes=1_060_000_000,
        architecture="llama",
        parameters="1.7B",
        family="smollm2",
        context=8_192,
        draft="SmolLM2-360M-Instruct-Q4_K_M",
        description="Small, fast instruct model for simple tasks on a CPU",
    ),
    CatalogModel(
        name="DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M",
        aliases=("DeepSeek-R1-Distill-Qwen-1.5B",),
        repo="bartowski/DeepSeek-R1-Distill-Qwen-1.5B-GGUF",
        file="DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf",
        size_bytes=1_071_584_864,
        architecture="qwen2",
        parameters="1.5B",
        family="deepseek-r1-qwen",
        context=131_072,
        description="DeepSeek R1 reasoning distilled into Qwen 1.5B; draft for the R1 distills",
    ),
    CatalogModel(
        name="Llama-3.2-3B-Instruct-Q4_K_M",
        aliases=("Llama-3.2-3B", "Llama-3.2-3B-Instruct"),
        repo="bartowski/Llama-3.2-3B-Instruct-GGUF",
        file="Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        size_bytes=2_019_377_696,
        architecture="llama",
        parameters="3B",
        family="llama3",
        context=131_072,
        draft="Llama-3.2-1B-Instruct-Q4_K_M",
        description="Meta Llama 3.2 3B: small general chat with basic tool calls",
    ),
    CatalogModel(
        name="Qwen2.5-3B-Instruct-Q4_K_M",
        aliases=("Qwen2.5-3B", "Qwen2.5-3B-Instruct"),
        repo="Qwen/Qwen2.5-3B-Instruct-GGUF",
        file="qwen2.5-3b-instruct-q4_k_m.gguf",
        size_bytes=2_100_000_000,
        architecture="qwen2",
        parameters="3B",
        family="qwen2.5",
        context=32_768,
        draft="Qwen2.5-0.5B-Instruct-Q4_K_M",
        description="Small and fast general chat",
    ),
    CatalogModel(
        name="Gemma-3-4B-it-Vision-Q4_K_M",
        aliases=("Gemma-3-4B", "Gemma-3-4B-it", "Gemma-3-4B-Vision"),
        repo="ggml-org/gemma-3-4b-it-GGUF",
        file="gemma-3-4b-it-Q4_K_M.gguf",
        size_bytes=2_489_757_856,
        architecture="gemma3",
        parameters="4B",
        family="gemma3",
        context=131_072,
        vision=True,
        mmproj="mmproj-model-f16.gguf",
        description="Google Gemma 3 4B with image input: text and pictures on a small GPU",
    ),
    CatalogModel(
        name="Phi-4-mini-instruct-Q4_K_M",
        aliases=("Phi-4-mini", "Phi-4-mini-instruct"),
        repo="unsloth/Phi-4-mini-instruct-GGUF",
        file="Phi-4-mini-instruct-Q4_K_M.gguf",
        size_bytes=2_491_874_272,
        architecture="phi3",
        parameters="3.8B",
        family="phi4-mini",
        context=131_072,
        description="Microsoft Phi-4 mini: strong at math and code for its size",
    ),
    CatalogModel(
        name="Qwen3-4B-Q4_K_M",
        aliases=("Qwen3-4B",),
        repo="unsloth/Qwen3-4B-GGUF",
        file="Qwen3-4B-Q4_K_M.gguf",
        size_bytes=2_500_000_000,
        architecture="qwen3",
        parameters="4B",
        family="qwen3",
        context=40_960,
        draft="Qwen3-0.6B-Q4_K_M",
        description="Qwen3 starter with thinking and non-thinking modes",
    ),
    CatalogModel(
        name="Mistral-7B-Instruct-v0.3-Q4_K_M",
        aliases=("Mistral-7B", "Mistral-7B-Instruct", "Mistral-7B-Instruct-v0.3"),
        repo="bartowski/Mistral-7B-Instruct-v0.3-GGUF",
        file="Mistral-7B-Instruct-v0.3-Q4_K_M.gguf",
        size_bytes=4_370_000_000,
        architecture="llama",
        parameters="7B",
        family="mistral-v0.3",
        context=32_768,
        description="Mistral 7B Instruct v0.3: the classic 7B general chat model",
    ),
    CatalogModel(
        name="Qwen2.5-7B-Instruct-Q4_K_M",
        aliases=("Qwen2.5-7B", "Qwen2.5-7B-Instruct"),
        repo="bartowski/Qwen2.5-7B-Instruct-GGUF",
        file="Qwen2.5-7B-Instruct-Q4_K_M.gguf",
        size_bytes=4_680_000_000,
        architecture="qwen2",
        parameters="7B",
        family="qwen2.5",
        context=32_768,
        draft="Qwen2.5-0.5B-Instruct-Q4_K_M",
        description="Qwen2.5 7B: general chat for an 8 GB GPU",
    ),
    CatalogModel(
        name="Qwen2.5-Coder-7B-Instruct-Q4_K_M",
        aliases=("Qwen2.5-Coder-7B", "Qwen2.5-Coder-7B-Instruct"),
        repo="Qwen/Qwen2.5-Coder-7B-Instruct-GGUF",
        file="qwen2.5-coder-7b-instruct-q4_k_m.gguf",
        size_bytes=4_680_000_000,
        architecture="qwen2",
        parameters="7B",
        family="qwen2.5",
        context=32_768,
        tool_use=True,
        draft="Qwen2.5-0.5B-Instruct-Q4_K_M",
        description="Code generation and completion",
    ),
    CatalogModel(
        name="Qwen2.5-VL-7B-Instruct-Q4_K_M",
        aliases=("Qwen2.5-VL-7B", "Qwen2.5-VL-7B-Instruct"),
        repo="ggml-org/Qwen2.5-VL-7B-Instruct-GGUF",
        file="Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf",
        size_bytes=4_683_072_032,
        architecture="qwen2vl",
        parameters="7B",
        family="qwen2.5-vl",
        context=128_000,
        vision=True,
        mmproj="mmproj-Qwen2.5-VL-7B-Instruct-f16.gguf",
        description="Qwen2.5-VL 7B: documents, charts and screens",
    ),
    CatalogModel(
        name="Llama-3.1-8B-Instruct-Q4_K_M",
        aliases=("Llama-3.1-8B", "Llama-3.1-8B-Instruct", "Meta-Llama-3.1-8B-Instruct"),
        repo="bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
        file="Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
        size_bytes=4_920_000_000,
        architecture="llama",
        parameters="8B",
        family="llama3",
        context=131_072,
        draft="Llama-3.2-1B-Instruct-Q4_K_M",
        description="Meta Llama 3.1 8B: the common general-purpose 8B",
    ),
    CatalogModel(
        name="Qwen3-8B-Q4_K_M",
        aliases=("Qwen3-8B",),
        repo="unsloth/Qwen3-8B-GGUF",
        file="Qwen3-8B-Q4_K_M.gguf",
        size_bytes=5_000_000_000,
        architecture="qwen3",
        parameters="8B",
        family="qwen3",
        context=40_960,
        draft="Qwen3-0.6B-Q4_K_M",
        description="Qwen3 mid-tier, strong for its size, thinking modes",
    ),
    CatalogModel(
        name="Qwen3.5-9B-Vision-Q4_K_M",
        aliases=("Qwen3.5-9B", "Qwen3.5-9B-Vision"),
        repo="unsloth/Qwen3.5-9B-GGUF",
        file="Qwen3.5-9B-Q4_K_M.gguf",
        size_bytes=5_680_522_464,
        architecture="qwen35",
        parameters="9B",
        family="qwen3.5",
        context=262_144,
        vision=True,
        mmproj="mmproj-BF16.gguf",
        description="Qwen3.5 9B with image input: text, documents and pictures",
    ),
    CatalogModel(
        name="Gemma-2-9B-it-Q4_K_M",
        aliases=("Gemma-2-9B", "Gemma-2-9B-it"),
        repo="bartowski/gemma-2-9b-it-GGUF",
        file="gemma-2-9b-it-Q4_K_M.gguf",
        size_bytes=5_760_000_000,
        architecture="gemma2",
        parameters="9B",
        family="gemma2",
        context=8_192,
        description="Google Gemma 2 9B: well-written general chat",
    ),
    CatalogModel(
        name="Gemma-3-12B-it-Q4_K_M",
        aliases=("Gemma-3-12B", "Gemma-3-12B-it"),
        repo="unsloth/gemma-3-12b-it-GGUF",
        file="gemma-3-12b-it-Q4_K_M.gguf",
        size_bytes=7_300_000_000,
        architecture="gemma3",
        parameters="12B",
        family="gemma3",
        context=131_072,
        draft="Gemma-3-1B-it-Q4_K_M",
        description="Google Gemma 3 12B: punches above its weight",
    ),
    CatalogModel(
        name="Qwen3-14B-Q4_K_M",
        aliases=("Qwen3-14B",),
        repo="unsloth/Qwen3-14B-GGUF",
        file="Qwen3-14B-Q4_K_M.gguf",
        size_bytes=9_001_753_984,
        architecture="qwen3",
        parameters="14B",
        family="qwen3",
        context=40_960,
        draft="Qwen3-0.6B-Q4_K_M",
        description="Qwen3 14B: strong chat with thinking modes",
    ),
    CatalogModel(
        name="DeepSeek-R1-Distill-Qwen-14B-Q4_K_M",
        aliases=("DeepSeek-R1-Distill-Qwen-14B",),
        repo="unsloth/DeepSeek-R1-Distill-Qwen-14B-GGUF",
        file="DeepSeek-R1-Distill-Qwen-14B-Q4_K_M.gguf",
        size_bytes=9_000_000_000,
        architecture="qwen2",
        parameters="14B",
        family="deepseek-r1-qwen",
        context=131_072,
        draft="DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M",
        description="DeepSeek R1 reasoning distilled into Qwen 14B",
    ),
    CatalogModel(
        name="gpt-oss-20b-MXFP4",
        aliases=("gpt-oss-20b",),
        repo="lmstudio-community/gpt-oss-20b-GGUF",
        file="gpt-oss-20b-MXFP4.gguf",
        size_bytes=12_109_565_632,
        architecture="gpt-oss",
        parameters="21B-A3.6B",
        family="gpt-oss",
        context=131_072,
        moe=True,
        tool_use=True,
        description="OpenAI gpt-oss 20B mixture of experts: reasoning and tool calls",
    ),
    CatalogModel(
        name="Devstral-Small-2505-Q4_K_M",
        aliases=("Devstral-Small", "Devstral-Small-2505"),
        repo="unsloth/Devstral-Small-2505-GGUF",
        file="Devstral-Small-2505-Q4_K_M.gguf",
        size_bytes=14_300_000_000,
        architecture="llama",
        parameters="24B",
        family="mistral-tekken",
        context=131_072,
        tool_use=True,
        description="Mistral Devstral: agentic coding with tool use",
    ),
    CatalogModel(
        name="Mistral-Small-3.1-24B-Instruct-Q4_K_M",
        aliases=("Mistral-Small-3.1", "Mistral-Small-3.1-24B", "Mistral-Small-3.1-24B-Instruct"),
        repo="unsloth/Mistral-Small-3.1-24B-Instruct-2503-GGUF",
        file="Mistral-Small-3.1-24B-Instruct-2503-Q4_K_M.gguf",
        size_bytes=14_300_000_000,
        architecture="llama",
        parameters="24B",
        family="mistral-tekken",
        context=131_072,
        tool_use=True,
        description="Mistral Small 3.1: general chat with good tool calls",
    ),
    CatalogModel(
        name="Gemma-3-27B-it-Q4_K_M",
        aliases=("Gemma-3-27B", "Gemma-3-27B-it"),
        repo="bartowski/google_gemma-3-27b-it-GGUF",
        file="google_gemma-3-27b-it-Q4_K_M.gguf",
        size_bytes=17_000_000_000,
        architecture="gemma3",
        parameters="27B",
        family="gemma3",
        context=131_072,
        draft="Gemma-3-1B-it-Q4_K_M",
        description="Google Gemma 3 27B: strong reasoning",
    ),
    CatalogModel(
        name="Qwen3-30B-A3B-Q4_K_M",
        aliases=("Qwen3-30B-A3B",),
        repo="unsloth/Qwen3-30B-A3B-GGUF",
        file="Qwen3-30B-A3B-Q4_K_M.gguf",
        size_bytes=17_300_000_000,
        architecture="qwen3moe",
        parameters="30B-A3B",
        family="qwen3",
        context=40_960,
        moe=True,
        tool_use=True,
        draft="Qwen3-0.6B-Q4_K_M",
        description="Qwen3 mixture of experts (128 experts, 8 active): fast general chat",
    ),
    CatalogModel(
        name="GLM-4.7-Flash-Q4_K_M",
        aliases=("GLM-4.7-Flash",),
        repo="unsloth/GLM-4.7-Flash-GGUF",
        file="GLM-4.7-Flash-Q4_K_M.gguf",
        size_bytes=18_000_000_000,
        architecture="deepseek2",
        parameters="30B-A3B",
        family="glm4.7",
        context=202_752,
        moe=True,
        tool_use=True,
        description="GLM-4.7 Flash mixture of experts (64 experts, 4 active): fast, tool calls",
    ),
    CatalogModel(
        name="Qwen3-Coder-30B-A3B-Instruct-Q4_K_M",
        aliases=("Qwen3-Coder-30B-A3B", "Qwen3-Coder-30B-A3B-Instruct"),
        repo="unsloth/Qwen3-Coder-30B-A3B-Instruct-GGUF",
        file="Qwen3-Coder-30B-A3B-Instruct-Q4_K_M.gguf",
        size_bytes=18_600_000_000,
        architecture="qwen3moe",
        parameters="30B-A3B",
        family="qwen3",
        context=262_144,
        moe=True,
        tool_use=True,
        draft="Qwen3-0.6B-Q4_K_M",
        description="Qwen3 Coder mixture of experts: agentic coding with tool use",
    ),
    CatalogModel(
        name="Qwen3-32B-Q4_K_M",
        aliases=("Qwen3-32B",),
        repo="unsloth/Qwen3-32B-GGUF",
        file="Qwen3-32B-Q4_K_M.gguf",
        size_bytes=19_762_150_048,
        architecture="qwen3",
        parameters="32B",
        family="qwen3",
        context=40_960,
        tool_use=True,
        draft="Qwen3-0.6B-Q4_K_M",
        description="Largest dense Qwen3, thinking and non-thinking modes",
    ),
    CatalogModel(
        name="DeepSeek-R1-Distill-Qwen-32B-Q4_K_M",
        aliases=("DeepSeek-R1-Distill-Qwen-32B",),
        repo="unsloth/DeepSeek-R1-Distill-Qwen-32B-GGUF",
        file="DeepSeek-R1-Distill-Qwen-32B-Q4_K_M.gguf",
        size_bytes=19_900_000_000,
        architecture="qwen2",
        parameters="32B",
        family="deepseek-r1-qwen",
        context=131_072,
        draft="DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M",
        description="DeepSeek R1 reasoning distilled into Qwen 32B",
    ),
    CatalogModel(
        name="Qwen2.5-32B-Instruct-Q4_K_M",
        aliases=("Qwen2.5-32B", "Qwen2.5-32B-Instruct"),
        repo="bartowski/Qwen2.5-32B-Instruct-GGUF",
        file="Qwen2.5-32B-Instruct-Q4_K_M.gguf",
        size_bytes=20_000_000_000,
        architecture="qwen2",
        parameters="32B",
        family="qwen2.5",
        context=32_768,
        tool_use=True,
        draft="Qwen2.5-0.5B-Instruct-Q4_K_M",
        description="Qwen2.5 32B: proven general chat",
    ),
    CatalogModel(
        name="Qwen2.5-Coder-32B-Instruct-Q4_K_M",
        aliases=("Qwen2.5-Coder-32B", "Qwen2.5-Coder-32B-Instruct"),
        repo="Qwen/Qwen2.5-Coder-32B-Instruct-GGUF",
        file="qwen2.5-coder-32b-instruct-q4_k_m.gguf",
        size_bytes=20_000_000_000,
        architecture="qwen2",
        parameters="32B",
        family="qwen2.5",
        context=32_768,
        tool_use=True,
        draft="Qwen2.5-0.5B-Instruct-Q4_K_M",
        description="Qwen2.5 Coder 32B: top-tier dense code model",
    ),
    CatalogModel(
        name="Llama-3.3-70B-Instruct-Q4_K_M",
        aliases=("Llama-3.3-70B", "Llama-3.3-70B-Instruct"),
        repo="bartowski/Llama-3.3-70B-Instruct-GGUF",
        file="Llama-3.3-70B-Instruct-Q4_K_M.gguf",
        size_bytes=42_500_000_000,
        architecture="llama",
        parameters="70B",
        family="llama3",
        context=131_072,
        tool_use=True,
        draft="Llama-3.2-1B-Instruct-Q4_K_M",
        description="Meta Llama 3.3 70B: strong all-rounder, usually split across GPUs",
    ),
    CatalogModel(
        name="Qwen2.5-72B-Instruct-Q4_K_M",
        aliases=("Qwen2.5-72B", "Qwen2.5-72B-Instruct"),
        repo="bartowski/Qwen2.5-72B-Instruct-GGUF",
        file="Qwen2.5-72B-Instruct-Q4_K_M.gguf",
        size_bytes=47_400_000_000,
        architecture="qwen2",
        parameters="72B",
        family="qwen2.5",
        context=32_768,
        tool_use=True,
        draft="Qwen2.5-0.5B-Instruct-Q4_K_M",
        description="Flagship Qwen2.5, made for splitting across GPUs",
    ),
    CatalogModel(
        name="Qwen3-Coder-Next-Q4_K_M",
        aliases=("Qwen3-Coder-Next",),
        repo="Qwen/Qwen3-Coder-Next-GGUF",
        file="Qwen3-Coder-Next-Q4_K_M/Qwen3-Coder-Next-Q4_K_M-00001-of-00004.gguf",
        parts=4,
        size_bytes=48_000_000_000,
        architecture="qwen3next",
        parameters="80B-A3B",
        family="qwen3-next",
        context=262_144,
        moe=True,
        tool_use=True,
        description="Qwen3 Coder Next mixture of experts: frontier agentic coding",
    ),
    CatalogModel(
        name="gpt-oss-120b-Q4_K_M",
        aliases=("gpt-oss-120b",),
        repo="unsloth/gpt-oss-120b-GGUF",
        file="Q4_K_M/gpt-oss-120b-Q4_K_M-00001-of-00002.gguf",
        parts=2,
        size_bytes=62_800_000_000,
        architecture="gpt-oss",
        parameters="117B-A5.1B",
        family="gpt-oss",
        context=131_072,
        moe=True,
        tool_use=True,
        description="OpenAI gpt-oss 120B mixture of experts: strong reasoning and tool calls",
    ),
    CatalogModel(
        name="MiniMax-M2.5-Q4_K_M",
        aliases=("MiniMax-M2.5",),
        repo="unsloth/MiniMax-M2.5-GGUF",
        file="Q4_K_M/MiniMax-M2.5-Q4_K_M-00001-of-00004.gguf",
        parts=4,
        size_bytes=138_000_000_000,
        architecture="minimax-m2",
        parameters="230B-A10B",
        family="minimax-m2",
        context=196_608,
        moe=True,
        tool_use=True,
        description="MiniMax M2.5 mixture of experts (256 experts, 8 active) for a large mesh",
    ),
)

_BY_NAME = {name.casefold(): model for model in CATALOG for name in model.names}


def find(name: str) -> CatalogModel | None:
    """The entry a name or alias stands for, in any case; None if the catalog has none."""
    return _BY_NAME.get(name.casefold())


AUTO_DRAFT = "auto"  # `--draft auto`: the catalog's draft for the model


def draft_for(model: str, draft: str) -> str:
    """The draft to register with `model`: `draft` as given, or for AUTO_DRAFT the one the
    catalog names for it ("" when it names none)."""
    if draft != AUTO_DRAFT:
        return draft
    listed = find(model)
    return listed.draft if listed is not None else ""


def search(text: str) -> list[CatalogModel]:
    """Entries whose name, an alias, repo or description contains `text` (any case),
    smallest first. Empty text matches every entry."""
    needle = text.casefold()
    found = [
        model
        for model in CATALOG
        if any(
            needle in field.casefold() for field in (*model.names, model.repo, model.description)
        )
    ]
    return sorted(found, key=lambda model: (model.size_bytes, model.name))


def fits(model: CatalogModel, memory_bytes: int) -> bool:
    """Whether the model's weights plus the headroom fit in `memory_bytes`."""
    return model.size_bytes * (100 + HEADROOM_PERCENT) <= memory_bytes * 100


def fitting(memory_bytes: int) -> list[CatalogModel]:
    """Entries that fit in `memory_bytes` with headroom, largest first."""
    found = [model for model in CATALOG if fits(model, memory_bytes)]
    return sorted(found, key=lambda model: (-model.size_bytes, model.name))
