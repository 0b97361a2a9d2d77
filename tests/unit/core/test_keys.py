from __future__ import annotations

import pytest

from meshllm.core import keys


def test_model_names_with_slashes_stay_one_segment() -> None:
    key = keys.endpoint("m", "org/model:Q4", "inst-1")
    assert key == "/mesh/m/endpoints/org%2Fmodel%3AQ4/inst-1"
    assert keys.last_segment(keys.catalog_entry("m", "org/model:Q4")) == "org/model:Q4"


def test_prefixes_contain_their_keys() -> None:
    assert keys.worker("m", "n1", "cpu0").startswith(keys.workers("m", "n1"))
    assert keys.workers("m", "n1").startswith(keys.workers("m"))
    assert keys.assignment("m", "n", "w", "a").startswith(keys.assignments("m", "n", "w"))
    assert keys.demand_entry("m", "x", "node").startswith(keys.demand("m", "x"))


def test_one_mesh_never_sees_another() -> None:
    assert not keys.endpoints("mesh-a2").startswith(keys.endpoints("mesh-a"))
    assert not keys.workers("a").startswith(keys.workers("ab"))


def test_empty_segment_is_refused() -> None:
    with pytest.raises(ValueError):
        keys.endpoint("m", "", "i")
