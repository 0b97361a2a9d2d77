from __future__ import annotations

import pytest

from meshllm.gateway.demand import RequestRate


@pytest.mark.parametrize(
    ("times", "now", "per_minute"),
    [
        ([], 100.0, 0.0),
        ([100.0, 100.5, 101.0], 101.0, 3.0),
        ([10.0, 100.0], 100.0, 1.0),  # the first fell out of the 60 s window
        ([50.0, 60.0], 200.0, 0.0),
    ],
)
def test_request_rate_counts_the_window(times: list[float], now: float, per_minute: float) -> None:
    rate = RequestRate(60)
    for t in times:
        rate.add(t)
    assert rate.per_minute(now) == per_minute
