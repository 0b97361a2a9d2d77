"""The shard quality gate's verdict: perplexity ratio and top-token agreement, both bounds."""

from __future__ import annotations

import math

import pytest

from meshllm.registry.quality import QualityVerdict


@pytest.mark.parametrize(
    ("shard_ppl", "full_ppl", "same_top", "passed"),
    [
        (10.0, 10.0, 1.0, True),
        (11.4, 10.0, 0.9, True),  # x1.14
        (11.6, 10.0, 0.9, False),  # x1.16: too perplexed
        (10.0, 10.0, 0.59, False),  # as sure, but different answers
        (9.0, 10.0, 0.60, True),  # better perplexity, agreement at the bound
        (math.nan, 10.0, 1.0, False),
        (10.0, 0.0, 1.0, False),
    ],
)
def test_verdict(shard_ppl: float, full_ppl: float, same_top: float, passed: bool) -> None:
    verdict = QualityVerdict(shard_ppl, full_ppl, mean_kld=0.01, same_top=same_top)
    assert verdict.passed is passed
    assert ("passes" if passed else "fails") in verdict.describe()


def test_bounds_are_settable() -> None:
    verdict = QualityVerdict(12.0, 10.0, 0.0, 0.5, max_ppl_ratio=1.3, min_same_top=0.4)
    assert verdict.passed and "x1.200" in verdict.describe()
