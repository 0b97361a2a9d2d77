"""When a draft is dropped: judged only once enough tokens were drafted, by how often it was
right."""

from __future__ import annotations

import pytest

from meshllm.worker.drafts import draft_verdict


@pytest.mark.parametrize(
    ("drafted", "accepted", "judged_after", "min_acceptance", "dropped"),
    [
        (0, 0, 256, 0.3, False),  # nothing drafted yet
        (255, 0, 256, 0.3, False),  # too few to tell, however bad
        (256, 0, 256, 0.3, True),  # never right
        (1000, 299, 256, 0.3, True),  # just under
        (1000, 300, 256, 0.3, False),  # just enough
        (1000, 950, 256, 0.3, False),
        (1000, 0, 256, 0.0, False),  # 0: drafts are never dropped
        (5, 0, 0, 0.3, True),  # judged at once: one token is enough
        (0, 0, 0, 0.3, False),  # but never on none
    ],
)
def test_a_draft_goes_when_it_is_too_often_wrong(
    drafted: float, accepted: float, judged_after: int, min_acceptance: float, dropped: bool
) -> None:
    why = draft_verdict(drafted, accepted, judged_after, min_acceptance)
    assert (why is not None) is dropped
    if why is not None:
        assert f"{accepted / drafted:.0%} of {drafted:.0f} drafted tokens" in why
