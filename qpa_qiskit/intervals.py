"""Paired differences over seeds with t-based 95% intervals, and how a study reads them.

Runs that differ in one setting share every other initial value and their data order per
seed, so a study compares them seed by seed: the differences d_1..d_n (one per seed) have a
mean, a sample standard deviation s and a 95% interval mean ± t(0.975, n - 1) s / sqrt(n). The
interval, not the standard deviation, says whether a difference is larger than the noise
between seeds: with 3 seeds t = 4.30, where the older "beyond two standard errors" rule
(t = 2) was about 82% confidence.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided `level` quantile of Student's t with `df` degrees of freedom."""
    return float(stats.t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class PairedDifference:
    """The mean of paired differences, their standard deviation, count and 95% interval."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, differences: Iterable[float]) -> PairedDifference:
        values = list(differences)
        if not values:
            raise ValueError("no paired differences")
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), std, len(values))

    @property
    def half_width(self) -> float:
        """t(0.975, n - 1) s / sqrt(n); nan for one pair (no interval)."""
        if self.n < 2:
            return math.nan
        return t_quantile(self.n - 1) * self.std / math.sqrt(self.n)

    @property
    def interval(self) -> tuple[float, float]:
        return self.mean - self.half_width, self.mean + self.half_width

    def verdict(self, margin: float | None = None) -> str:
        """ "worse"/"better" when the interval excludes 0 (a perplexity difference: worse is
        higher); "equivalent" when it lies inside ±margin (a margin stated in advance);
        "inconclusive" otherwise; "one seed" without an interval."""
        if self.n < 2:
            return "one seed"
        low, high = self.interval
        if low > 0:
            return "worse"
        if high < 0:
            return "better"
        if margin is not None and -margin <= low and high <= margin:
            return "equivalent"
        return "inconclusive"

    def equivalence(self, margin: float) -> str:
        """Against an equivalence margin stated in advance: ``"inside"`` when the whole 95%
        interval lies within ±margin (no difference as large as the margin), ``"outside"`` when
        it lies wholly beyond +margin or -margin (a difference larger than the margin), and
        ``"undecided"`` when it straddles a bound (or there is one seed: no interval)."""
        if self.n < 2:
            return "undecided"
        low, high = self.interval
        if -margin <= low and high <= margin:
            return "inside"
        if low > margin or high < -margin:
            return "outside"
        return "undecided"

    def reading(self, margin: float | None = None, digits: int = 3) -> str:
        """``+0.120 ± 0.050 [+0.000, +0.240] inconclusive``: mean ± std over the pairs, the 95%
        interval, the verdict."""
        text = f"{self.mean:+.{digits}f}"
        if self.n < 2:
            return text + " (one seed: no interval)"
        low, high = self.interval
        return (
            f"{text} ± {self.std:.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}] {self.verdict(margin)}"
        )

    def to_dict(self) -> dict[str, float | int | None]:
        low, high = self.interval if self.n > 1 else (None, None)
        return {"mean": self.mean, "std": self.std, "n": self.n, "low": low, "high": high,
                "verdict": self.verdict()}  # fmt: skip


def paired_reading(diff: float, std: float, n: int, margin: float | None = None) -> str:
    """:meth:`PairedDifference.reading` from a stored mean, standard deviation and count."""
    return PairedDifference(diff, std, n).reading(margin)


LEGEND = (
    "Paired differences: mean ± standard deviation over seeds, [the t-based 95% interval], and the "
    "verdict: worse/better when the interval excludes 0, inconclusive when it does not"
)
