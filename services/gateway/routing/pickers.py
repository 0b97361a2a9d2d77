"""Pickers: the order replicas are tried in, from their summed scores."""

from __future__ import annotations

import random
from collections.abc import Sequence

from meshllm.core.proto.mesh.v1 import common_pb2 as pb


class MaxScorePicker:
    """`max-score-picker`: highest score first, ties in random order (so equal replicas share
    the load)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def order(self, scored: Sequence[tuple[float, pb.Endpoint]]) -> list[pb.Endpoint]:
        keyed = [(-score, self._rng.random(), i) for i, (score, _) in enumerate(scored)]
        keyed.sort()
        return [scored[i][1] for _, _, i in keyed]
