"""Timing as an experiment: warm-up first, many repeats, medians and spread.

Warm-up runs are discarded because the first calls of a Numba kernel compile
it (or load it from the cache) and the first large allocations page-fault;
neither belongs in a steady-state figure. Each repeat may get fresh inputs
from a ``setup`` callable, which stays outside the timed region.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable


@dataclass
class Timing:
    median_s: float
    p25_s: float
    p75_s: float
    min_s: float
    max_s: float
    repeats: int
    warmup: int
    samples_s: list[float] = field(default_factory=list)

    @property
    def iqr_s(self) -> float:
        return self.p75_s - self.p25_s

    def as_dict(self) -> dict:
        d = asdict(self)
        d["iqr_s"] = self.iqr_s
        return d


def _quantile(sorted_values: list[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def measure(
    fn: Callable[[Any], Any],
    setup: Callable[[], Any] = lambda: None,
    repeat: int = 5,
    warmup: int = 1,
    sync: Callable[[], None] = lambda: None,
) -> tuple[Timing, Any]:
    """Time ``fn(setup())``; returns the timing and the last result (for checking it).

    ``sync`` runs on both sides of the timed region (a device synchronisation
    on a GPU), so asynchronous work is inside the measurement.
    """
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    result = None
    for _ in range(warmup):
        arg = setup()
        result = fn(arg)
        sync()
    samples = []
    for _ in range(repeat):
        arg = setup()
        sync()
        t0 = time.perf_counter()
        result = fn(arg)
        sync()
        samples.append(time.perf_counter() - t0)
    s = sorted(samples)
    timing = Timing(
        median_s=statistics.median(s),
        p25_s=_quantile(s, 0.25),
        p75_s=_quantile(s, 0.75),
        min_s=s[0],
        max_s=s[-1],
        repeats=repeat,
        warmup=warmup,
        samples_s=samples,
    )
    return timing, result


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024
