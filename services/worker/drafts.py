"""A draft that is mostly wrong is dropped. Each of its misses costs a round of drafting and a
batch the model checks for nothing: a draft that was never right decoded 3.6 times slower on
an H200 and 3.5 times slower on a CPU (docs/BENCHMARKS.md). Once a llama-server has drafted
`judged_after` tokens, one whose draft was right less often than `min_acceptance` is started
again without it, from llama-server's own counters (`LlamaScraper`)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from prometheus_client import Counter

from meshllm.core.lifecycle import LoopComponent
from meshllm.core.metrics import PREFIX

from .metrics import LlamaScraper
from .supervisor import InstanceState, Supervisor

logger = logging.getLogger(__name__)

DRAFTED = "spec_decode_num_draft_tokens_total"
ACCEPTED = "spec_decode_num_accepted_tokens_total"
DRAFTS_DROPPED = Counter(
    f"{PREFIX}drafts_dropped_total", "Drafts dropped for being too often wrong", ["model"]
)


def draft_verdict(
    drafted: float, accepted: float, judged_after: int, min_acceptance: float
) -> str | None:
    """Why a draft goes, or None while it stays: while too few tokens were drafted to tell,
    while it is right often enough, or always when `min_acceptance` is 0."""
    if min_acceptance <= 0 or drafted < max(judged_after, 1):
        return None
    rate = accepted / drafted
    if rate >= min_acceptance:
        return None
    return (
        f"its draft was right for {rate:.0%} of {drafted:.0f} drafted tokens, under "
        f"{min_acceptance:.0%}: it runs without it"
    )


class DraftGuard(LoopComponent):
    def __init__(
        self,
        supervisor: Supervisor,
        scraper: LlamaScraper,
        judged_after: int,
        min_acceptance: float,
        interval_s: float = 5.0,
    ) -> None:
        self._supervisor = supervisor
        self._scraper = scraper
        self._judged_after = judged_after
        self._min_acceptance = min_acceptance
        self._interval_s = interval_s

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.check()

    async def check(self) -> None:
        for instance_id, values in list(self._scraper.values.items()):
            instance = self._supervisor.instances.get(instance_id)
            if instance is None or not instance.spec.draft_path:
                continue
            if instance.state != InstanceState.READY:
                continue
            why = draft_verdict(
                values.get(DRAFTED, 0.0),
                values.get(ACCEPTED, 0.0),
                self._judged_after,
                self._min_acceptance,
            )
            if why is None:
                continue
            logger.warning("%s (%s): %s", instance.spec.model, instance_id, why)
            DRAFTS_DROPPED.labels(instance.spec.model).inc()
            self._scraper.values.pop(instance_id, None)  # the old process's counters
            await self._supervisor.remove(instance_id)
            self._supervisor.start(dataclasses.replace(instance.spec, draft_path=""))
