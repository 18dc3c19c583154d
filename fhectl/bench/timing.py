"""Timing as an experiment: the one timing path of every fhectl benchmark.

Warm-up runs are discarded because the first calls of a Numba kernel compile
it (or load it from the cache) and the first large allocations page-fault;
neither belongs in a steady-state figure. Each repeat gets fresh inputs from
a ``setup`` callable, which stays outside the timed region, and ``sync`` runs
on both sides of it (a device synchronisation on a GPU).

Two implementations of one operation are timed *interleaved* (``interleave``):
repeat i times A and B back to back, alternating which goes first, so that
machine load, which on a shared machine changes over seconds, hits both
alike. The ratio A/B is then a statistic of the per-pair ratios a_i / b_i,
not of two medians taken minutes apart.

Spread is reported as hyperfine and pytest-benchmark do: mean, standard
deviation, min and max beside the median, and the interquartile range. The
uncertainty of a median is a distribution-free interval from order statistics
(``median_interval``): no assumption of normal noise, and deterministic.
"""

from __future__ import annotations

import math
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

CONFIDENCE = 0.95
FEW_REPEATS = 5  # below this a median's interval is just [min, max] and says little
WIDE_SPREAD = 1.5  # an interval whose ends differ by more than this factor is flagged as noisy


def _noop() -> None:
    return None


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default 'linear' method)."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(low, high, coverage): a distribution-free confidence interval for the median of ``values``.

    The median lies between the k-th smallest and the k-th largest of n
    independent samples with probability 1 - 2 P(Binomial(n, 1/2) < k); the
    largest k reaching ``confidence`` is used. Below 6 samples no k reaches
    95 %, and the interval is [min, max] with its actual coverage 1 - 2^(1-n)
    (0.94 for 5 samples, 0.5 for 2), which is returned so a report can say so.
    """
    s = sorted(values)
    n = len(s)
    if n == 0:
        raise ValueError("interval of no values")
    if n == 1:
        return s[0], s[0], 0.0

    def coverage(k: int) -> float:  # P(s[k-1] <= median <= s[n-k])
        return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(k)) / 2.0**n

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= confidence:
        k += 1
    return s[k - 1], s[n - k], coverage(k)


@dataclass
class Timing:
    median_s: float
    mean_s: float
    stdev_s: float
    p25_s: float
    p75_s: float
    min_s: float
    max_s: float
    ci_low_s: float  # interval of the median (see median_interval)
    ci_high_s: float
    ci_coverage: float
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

    def scaled(self, divisor: float) -> "Timing":
        """The same timing per 1/divisor of the work (for example per limb of a multi-limb NTT)."""
        d = {k: (v / divisor if k.endswith("_s") and k != "samples_s" else v) for k, v in asdict(self).items()}
        d["samples_s"] = [s / divisor for s in self.samples_s]
        return Timing(**d)


def summarize(samples: list[float], warmup: int = 0) -> Timing:
    """Median, mean, standard deviation, quartiles, extremes and the median's interval of ``samples``."""
    if not samples:
        raise ValueError("no samples to summarize")
    s = sorted(samples)
    lo, hi, cov = median_interval(s)
    return Timing(
        median_s=statistics.median(s),
        mean_s=statistics.fmean(s),
        stdev_s=statistics.stdev(s) if len(s) > 1 else 0.0,
        p25_s=quantile(s, 0.25),
        p75_s=quantile(s, 0.75),
        min_s=s[0],
        max_s=s[-1],
        ci_low_s=lo,
        ci_high_s=hi,
        ci_coverage=cov,
        repeats=len(s),
        warmup=warmup,
        samples_s=list(samples),
    )


def summary_from_dict(t: dict) -> Timing:
    """A Timing from a report's timing entry, recomputing what older reports (schema 1) lack."""
    if t.get("samples_s"):
        return summarize([float(v) for v in t["samples_s"]], int(t.get("warmup") or 0))
    m = float(t["median_s"])
    return Timing(median_s=m, mean_s=m, stdev_s=0.0, p25_s=float(t.get("p25_s", m)), p75_s=float(t.get("p75_s", m)),
                  min_s=float(t.get("min_s", m)), max_s=float(t.get("max_s", m)), ci_low_s=float(t.get("min_s", m)),
                  ci_high_s=float(t.get("max_s", m)), ci_coverage=0.0, repeats=int(t.get("repeats", 1)),
                  warmup=int(t.get("warmup") or 0))


def _timed_once(fn: Callable[[Any], Any], arg: Any, sync: Callable[[], None]) -> tuple[float, Any]:
    sync()
    t0 = time.perf_counter()
    result = fn(arg)
    sync()
    return time.perf_counter() - t0, result


def measure(
    fn: Callable[[Any], Any],
    setup: Callable[[], Any] = _noop,
    repeat: int = 5,
    warmup: int = 1,
    sync: Callable[[], None] = _noop,
) -> tuple[Timing, Any]:
    """Time ``fn(setup())``; returns the timing and the last result (for checking it)."""
    timing, _, result = measure_with_input(fn, setup, repeat, warmup, sync)
    return timing, result


def measure_with_input(fn, setup=_noop, repeat: int = 5, warmup: int = 1, sync=_noop) -> tuple[Timing, Any, Any]:
    """Like ``measure``, also returning the last input (so the caller can check the result against it)."""
    if repeat < 1 or warmup < 0:
        raise ValueError("repeat must be >= 1 and warmup >= 0")
    arg = result = None
    samples = []
    for i in range(warmup + repeat):
        arg = setup()
        seconds, result = _timed_once(fn, arg, sync)
        if i >= warmup:
            samples.append(seconds)
    return summarize(samples, warmup), arg, result


@dataclass
class Bench:
    """One thing to time: fresh input from ``setup`` (untimed), then ``run(input)`` (timed)."""

    run: Callable[[Any], Any]
    setup: Callable[[], Any] = _noop
    sync: Callable[[], None] = _noop


@dataclass
class RatioStats:
    """a / b from interleaved pairs: the median of the per-pair ratios and its interval."""

    median: float
    mean: float
    stdev: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    ci_coverage: float
    pairs: int
    ratios: list[float]
    warnings: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def ratio_stats(a_samples: list[float], b_samples: list[float]) -> RatioStats:
    """Statistics of a_i / b_i over pairs timed back to back, with warnings a reader should see."""
    if len(a_samples) != len(b_samples) or not a_samples:
        raise ValueError("ratio_stats needs two equally long, non-empty lists of paired samples")
    ratios = [a / b for a, b in zip(a_samples, b_samples) if b > 0]
    if not ratios:
        raise ValueError("ratio_stats: every baseline sample is zero")
    lo, hi, cov = median_interval(ratios)
    warnings = []
    if len(ratios) < FEW_REPEATS:
        warnings.append(f"only {len(ratios)} pairs: the interval is [min, max] with {cov:.0%} coverage")
    if lo > 0 and hi / lo > WIDE_SPREAD:
        warnings.append(f"wide spread: the interval's ends differ by a factor {hi / lo:.2f}")
    return RatioStats(
        median=statistics.median(ratios), mean=statistics.fmean(ratios),
        stdev=statistics.stdev(ratios) if len(ratios) > 1 else 0.0, min=min(ratios), max=max(ratios),
        ci_low=lo, ci_high=hi, ci_coverage=cov, pairs=len(ratios), ratios=ratios, warnings=warnings,
    )


def interleave(a: Bench, b: Bench, repeat: int = 5, warmup: int = 1) -> tuple[tuple[Timing, Any, Any], ...]:
    """Time ``a`` and ``b`` in pairs, back to back, alternating which runs first (AB, BA, AB, ...).

    Warm-up pairs run first and are discarded. Returns ``((timing, last input,
    last result) of a, (the same) of b)``; sample i of one pairs with sample i
    of the other (``ratio_stats``). Alternating the order cancels a bias that
    a fixed order gives under a steady drift of the machine's load (and any
    cache advantage of going second).
    """
    if repeat < 1 or warmup < 0:
        raise ValueError("repeat must be >= 1 and warmup >= 0")
    samples: dict[int, list[float]] = {0: [], 1: []}
    last: dict[int, tuple[Any, Any]] = {}
    benches = (a, b)
    for i in range(warmup + repeat):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for side in order:
            bench = benches[side]
            arg = bench.setup()
            seconds, result = _timed_once(bench.run, arg, bench.sync)
            last[side] = (arg, result)
            if i >= warmup:
                samples[side].append(seconds)
    return tuple((summarize(samples[s], warmup), *last[s]) for s in (0, 1))


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024
