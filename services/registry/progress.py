"""Progress bars on the terminal for long local work (checking a download's SHA-256)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .hub import HashProgress


@contextmanager
def hash_bar(name: str) -> Iterator[HashProgress]:
    """A callback that draws a bar for hashing `name` (on stderr, only on a terminal)."""
    from tqdm import tqdm

    bar: tqdm | None = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=f"checking {name}",
                disable=not sys.stderr.isatty(),
            )
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
