"""The quality gate for an expert shard, measured with llama.cpp's `llama-perplexity` on the
node that writes the shard: the full model's token distributions on the calibration text are
saved once (`--kl-divergence-base`), then each shard is run against them (`--kl-divergence`),
which gives both perplexities, the KL divergence and how often the shard's most likely token
is the full model's.

A shard passes when its perplexity is at most `max_ppl_ratio` times the full model's **and**
its top token agrees with the full model's at least `min_same_top` of the time. Perplexity
alone cannot tell a model whose answers changed from one that is merely as unsure as before
(a shard without the experts the router uses can score the same perplexity with entirely
different answers); the agreement can."""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .expert_ranking import CALIBRATION_TEXT

# The reference system's shards of 64 of 128 experts stayed coherent and those of 32 did not;
# these bounds are what the gate enforces (settings can move them), and every shard's measured
# figures are shown against them.
DEFAULT_MAX_PPL_RATIO = 1.15
DEFAULT_MIN_SAME_TOP = 0.60
_NUMBER = r"([-+0-9.eE]+|nan|-nan|inf)"
_FIGURES = {
    "shard_ppl": re.compile(rf"Mean PPL\(Q\)\s*:\s*{_NUMBER}"),
    "full_ppl": re.compile(rf"Mean PPL\(base\)\s*:\s*{_NUMBER}"),
    "mean_kld": re.compile(rf"Mean\s+KLD:\s*{_NUMBER}"),
    "same_top_pct": re.compile(rf"Same top p:\s*{_NUMBER}"),
}


class QualityError(RuntimeError):
    """The measurement itself failed (not a shard that failed the gate)."""


@dataclass(frozen=True)
class QualityVerdict:
    shard_ppl: float
    full_ppl: float
    mean_kld: float
    same_top: float  # 0..1
    max_ppl_ratio: float = DEFAULT_MAX_PPL_RATIO
    min_same_top: float = DEFAULT_MIN_SAME_TOP

    @property
    def ppl_ratio(self) -> float:
        return self.shard_ppl / self.full_ppl if self.full_ppl > 0 else math.inf

    @property
    def passed(self) -> bool:
        ratio_ok = math.isfinite(self.ppl_ratio) and self.ppl_ratio <= self.max_ppl_ratio
        return ratio_ok and self.same_top >= self.min_same_top

    def describe(self) -> str:
        verdict = "passes" if self.passed else "fails"
        return (
            f"perplexity x{self.ppl_ratio:.3f} of the full model's ({self.shard_ppl:.2f} / "
            f"{self.full_ppl:.2f}), same top token {self.same_top:.1%}, KL divergence "
            f"{max(self.mean_kld, 0.0):.4f}: {verdict} the gate (≤ x{self.max_ppl_ratio:.2f}, "
            f"≥ {self.min_same_top:.0%})"
        )


@dataclass(frozen=True)
class Perplexity:
    """llama-perplexity on one machine: the binary, the calibration text, the chunk size."""

    binary: str
    text: Path = CALIBRATION_TEXT
    context: int = 128
    threads: int = 1
    timeout_s: float = 1800

    def save_base(self, full_model: Path, base: Path) -> None:
        """The full model's distributions on the text, for shards to be compared against."""
        self._run(full_model, "--kl-divergence-base", str(base))
        if not base.is_file():
            raise QualityError(f"llama-perplexity wrote no {base.name}")

    def judge(
        self,
        shard: Path,
        base: Path,
        max_ppl_ratio: float = DEFAULT_MAX_PPL_RATIO,
        min_same_top: float = DEFAULT_MIN_SAME_TOP,
    ) -> QualityVerdict:
        output = self._run(shard, "--kl-divergence-base", str(base), "--kl-divergence")
        found = {name: pattern.search(output) for name, pattern in _FIGURES.items()}
        missing = [name for name, match in found.items() if match is None]
        if missing:  # it returns 0 when it gives up on the base file: say what it said
            complaint = re.findall(r"kl_divergence: (.+)", output)
            said = f": {complaint[-1][:300]}" if complaint else ""
            raise QualityError(
                f"llama-perplexity printed no {', '.join(missing)} for {shard.name}{said}"
            )
        figures = {name: float(match.group(1)) for name, match in found.items() if match}
        return QualityVerdict(
            shard_ppl=figures["shard_ppl"],
            full_ppl=figures["full_ppl"],
            mean_kld=figures["mean_kld"],
            same_top=figures["same_top_pct"] / 100,
            max_ppl_ratio=max_ppl_ratio,
            min_same_top=min_same_top,
        )

    def _run(self, model: Path, *extra: str) -> str:
        argv = [self.binary, "-m", str(model), "-f", str(self.text), "-c", str(self.context),
                "-b", str(self.context), "-t", str(self.threads), *extra]  # fmt: skip
        try:
            done = subprocess.run(argv, capture_output=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise QualityError(f"llama-perplexity could not run: {exc}") from exc
        output = (done.stdout + done.stderr).decode(errors="replace")
        if done.returncode != 0:
            tail = output.strip().splitlines()[-1:] or ["no output"]
            raise QualityError(
                f"llama-perplexity on {model.name} exited {done.returncode}: {tail[0][:300]}"
            )
        return output
