"""The curated catalog: its entries are consistent, and find/search/fitting pick the right ones."""

from __future__ import annotations

import re

import pytest

from meshllm.registry.model_catalog import (
    AUTO_DRAFT,
    CATALOG,
    CatalogModel,
    draft_for,
    find,
    fitting,
    search,
)

GB = 1_000_000_000
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
SPLIT = re.compile(r"-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$")
# llama.cpp's general.architecture values the catalog uses
ARCHITECTURES = {
    "deepseek2",
    "gemma2",
    "gemma3",
    "gpt-oss",
    "llama",
    "minimax-m2",
    "phi3",
    "qwen2",
    "qwen2vl",
    "qwen3",
    "qwen35",
    "qwen3moe",
    "qwen3next",
}
ALL_NAMES = [name for model in CATALOG for name in model.names]
WITH_DRAFT = [model for model in CATALOG if model.draft]
VISION = [model for model in CATALOG if model.vision]
SPLITS = [model for model in CATALOG if model.split]


def ids(models: list[CatalogModel]) -> list[str]:
    return [model.name for model in models]


def test_catalog_spans_tiny_to_large() -> None:
    assert 25 <= len(CATALOG) <= 40
    sizes = [model.size_bytes for model in CATALOG]
    assert min(sizes) < 1 * GB and max(sizes) > 100 * GB
    assert WITH_DRAFT and VISION and SPLITS
    assert any(model.moe for model in CATALOG) and any(model.tool_use for model in CATALOG)


def test_names_and_aliases_are_unique_in_any_case() -> None:
    folded = [name.casefold() for name in ALL_NAMES]
    assert len(folded) == len(set(folded)), sorted(n for n in set(folded) if folded.count(n) > 1)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_name_is_plain(name: str) -> None:
    assert NAME.match(name) and len(name) <= 128


@pytest.mark.parametrize("model", CATALOG, ids=ids(list(CATALOG)))
def test_entry_is_complete(model: CatalogModel) -> None:
    assert REPO.match(model.repo)
    assert model.file.endswith(".gguf") and not model.file.startswith("/")
    assert model.size_bytes > 0 and model.context >= 8_192
    assert model.architecture in ARCHITECTURES
    assert model.parameters and model.family and model.description
    assert "\n" not in model.description
    # a mixture of experts says how many parameters are active
    assert model.moe == ("-A" in model.parameters)


@pytest.mark.parametrize("model", WITH_DRAFT, ids=ids(WITH_DRAFT))
def test_draft_is_a_smaller_catalog_model_of_the_same_family(model: CatalogModel) -> None:
    draft = find(model.draft)
    assert draft is not None and draft.name == model.draft
    assert draft.size_bytes < model.size_bytes
    assert draft.family == model.family
    assert not draft.draft and not draft.vision


@pytest.mark.parametrize("model", CATALOG, ids=ids(list(CATALOG)))
def test_projector_comes_with_vision_only(model: CatalogModel) -> None:
    if model.vision:
        assert model.mmproj.endswith(".gguf") and model.mmproj != model.file
        assert not model.draft
    else:
        assert model.mmproj == ""


@pytest.mark.parametrize("model", CATALOG, ids=ids(list(CATALOG)))
def test_split_entries_name_part_one_and_the_part_count(model: CatalogModel) -> None:
    split = SPLIT.search(model.file)
    if model.split:
        assert split is not None
        assert int(split["part"]) == 1 and int(split["count"]) == model.parts >= 2
    else:
        assert split is None and model.parts == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Qwen2.5-3B", "Qwen2.5-3B-Instruct-Q4_K_M"),
        ("qwen2.5-3b", "Qwen2.5-3B-Instruct-Q4_K_M"),
        ("Qwen2.5-3B-Instruct-Q4_K_M", "Qwen2.5-3B-Instruct-Q4_K_M"),
        ("QWEN2.5-3B-INSTRUCT-Q4_K_M", "Qwen2.5-3B-Instruct-Q4_K_M"),
        ("Qwen3-30B-A3B", "Qwen3-30B-A3B-Q4_K_M"),
        ("gpt-oss-120b", "gpt-oss-120b-Q4_K_M"),
        ("Llama-3.1-8B-Instruct", "Llama-3.1-8B-Instruct-Q4_K_M"),
        ("Qwen2.5", None),  # a prefix is not a name
        ("Qwen2.5-3B ", None),
        ("bartowski/Qwen2.5-32B-Instruct-GGUF", None),  # a repo is not a name
        ("", None),
    ],
)
def test_find(name: str, expected: str | None) -> None:
    found = find(name)
    assert (found.name if found else None) == expected


@pytest.mark.parametrize(
    ("text", "included", "excluded"),
    [
        (
            "coder",
            {"Qwen2.5-Coder-7B-Instruct-Q4_K_M", "Qwen3-Coder-Next-Q4_K_M"},
            {"Qwen3-8B-Q4_K_M"},
        ),
        ("QWEN3-0.6", {"Qwen3-0.6B-Q4_K_M"}, {"Qwen2.5-0.5B-Instruct-Q4_K_M"}),
        ("unsloth/", {"Qwen3-32B-Q4_K_M"}, {"Llama-3.2-1B-Instruct-Q4_K_M"}),  # repo
        ("image input", {"Gemma-3-4B-it-Vision-Q4_K_M"}, {"Gemma-3-27B-it-Q4_K_M"}),  # text
        ("gpt-oss", {"gpt-oss-20b-MXFP4", "gpt-oss-120b-Q4_K_M"}, set()),
        ("no-such-model", set(), {"Qwen3-0.6B-Q4_K_M"}),
    ],
)
def test_search(text: str, included: set[str], excluded: set[str]) -> None:
    found = search(text)
    names = {model.name for model in found}
    assert included <= names and not excluded & names
    assert [m.size_bytes for m in found] == sorted(m.size_bytes for m in found)
    needle = text.casefold()
    for model in found:
        fields = (*model.names, model.repo, model.description)
        assert any(needle in field.casefold() for field in fields)


def test_empty_search_lists_everything_smallest_first() -> None:
    found = search("")
    assert len(found) == len(CATALOG)
    assert found[0].size_bytes == min(model.size_bytes for model in CATALOG)


@pytest.mark.parametrize("memory", [0, 1 * GB, 8 * GB, 24 * GB, 48 * GB, 80 * GB, 10_000 * GB])
def test_fitting_keeps_every_model_with_headroom_largest_first(memory: int) -> None:
    found = fitting(memory)
    assert {model.name for model in found} == {
        model.name for model in CATALOG if model.size_bytes * 6 <= memory * 5
    }
    assert [m.size_bytes for m in found] == sorted((m.size_bytes for m in found), reverse=True)


@pytest.mark.parametrize(
    ("memory", "largest"),
    [
        (0, None),
        (300 * 1_000_000, None),  # below the smallest model plus headroom
        (8 * GB, "Gemma-2-9B-it-Q4_K_M"),  # 5.76 GB x1.2 fits, Gemma 3 12B does not
        (60 * GB, "Qwen3-Coder-Next-Q4_K_M"),  # 48 GB x1.2 = 57.6 GB
        (10_000 * GB, "MiniMax-M2.5-Q4_K_M"),
    ],
)
def test_fitting_largest(memory: int, largest: str | None) -> None:
    found = fitting(memory)
    assert (found[0].name if found else None) == largest


def test_fitting_headroom_boundary() -> None:
    smallest = min(CATALOG, key=lambda model: model.size_bytes)
    exact = smallest.size_bytes * 6 // 5
    assert smallest.size_bytes * 6 % 5 == 0  # so that `exact` is the boundary itself
    assert smallest in fitting(exact)
    assert smallest not in fitting(exact - 1)


@pytest.mark.parametrize(
    ("model", "draft", "expected"),
    [
        ("Qwen2.5-7B", AUTO_DRAFT, "Qwen2.5-0.5B-Instruct-Q4_K_M"),  # by an alias, any case
        ("qwen2.5-7b", AUTO_DRAFT, "Qwen2.5-0.5B-Instruct-Q4_K_M"),
        ("Qwen2.5-7B", "./mine.gguf", "./mine.gguf"),  # one given is kept
        ("Qwen2.5-7B", "", ""),
        ("smollm2-135m-instruct", AUTO_DRAFT, ""),  # the smallest of its family has none
        ("./model.gguf", AUTO_DRAFT, ""),  # not a catalog model
    ],
)
def test_auto_is_the_catalogs_draft_for_the_model(model: str, draft: str, expected: str) -> None:
    assert draft_for(model, draft) == expected
