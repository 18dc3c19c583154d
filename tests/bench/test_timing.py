"""The one timing path: summaries, the median's interval, interleaved pairs and their ratio.

A virtual clock stands in for ``time.perf_counter`` so that machine load can be simulated exactly: every timed
call advances the clock by its cost times the load of the moment.
"""

import math

import pytest

from fhectl.bench import timing
from fhectl.bench.timing import Bench, interleave, measure, median_interval, ratio_stats, summarize


class VirtualMachine:
    """A clock and a load that changes over time (the other agents on a shared machine)."""

    def __init__(self, load):
        self.now = 0.0
        self.calls = 0
        self.load = load  # calls -> factor
        self.log = []

    def perf_counter(self):
        return self.now

    def work(self, name, cost):
        def run(_):
            self.now += cost * self.load(self.calls)
            self.calls += 1
            self.log.append(name)
        return run


def test_summary_has_the_spread_hyperfine_shows():
    t = summarize([3.0, 1.0, 2.0, 4.0, 10.0], warmup=2)
    assert (t.median_s, t.min_s, t.max_s, t.repeats, t.warmup) == (3.0, 1.0, 10.0, 5, 2)
    assert t.mean_s == 4.0 and math.isclose(t.stdev_s, math.sqrt(12.5))
    assert (t.p25_s, t.p75_s, t.iqr_s) == (2.0, 4.0, 2.0)
    per_limb = t.scaled(2)
    assert per_limb.median_s == 1.5 and per_limb.samples_s == [1.5, 0.5, 1.0, 2.0, 5.0]


@pytest.mark.parametrize("n, k", [(2, 1), (5, 1), (6, 1), (9, 2), (15, 4), (30, 10)])
def test_median_interval_is_the_order_statistic_interval(n, k):
    values = [float(i) for i in range(n)]
    lo, hi, coverage = median_interval(values)
    assert (lo, hi) == (values[k - 1], values[n - k])
    exact = 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n
    assert math.isclose(coverage, exact)
    assert coverage >= 0.95 or (lo, hi) == (values[0], values[-1])  # below 6 samples: [min, max], stated


def test_interleave_alternates_and_pairs(monkeypatch):
    vm = VirtualMachine(lambda i: 1.0)
    monkeypatch.setattr(timing.time, "perf_counter", vm.perf_counter)
    (ta, _, _), (tb, _, _) = interleave(Bench(vm.work("A", 2.0)), Bench(vm.work("B", 1.0)), repeat=4, warmup=1)
    assert vm.log == ["A", "B", "B", "A", "A", "B", "B", "A", "A", "B"]  # warm-up pair first, then AB BA AB BA
    assert ta.samples_s == [2.0] * 4 and tb.samples_s == [1.0] * 4 and ta.warmup == 1


def test_interleaving_cancels_a_change_of_load(monkeypatch):
    """Load that jumps 20x halfway through: timed in separate blocks the ratio is off by 20x; paired it is exact."""
    vm = VirtualMachine(lambda i: 1.0 if i < 5 else 20.0)
    monkeypatch.setattr(timing.time, "perf_counter", vm.perf_counter)
    a_alone, _ = measure(vm.work("A", 2.0), repeat=5, warmup=0)
    b_alone, _ = measure(vm.work("B", 1.0), repeat=5, warmup=0)
    assert a_alone.median_s / b_alone.median_s == pytest.approx(0.1)  # the old blocks: 0.1 instead of 2

    vm2 = VirtualMachine(lambda i: 1.0 if i < 5 else 20.0)
    monkeypatch.setattr(timing.time, "perf_counter", vm2.perf_counter)
    (ta, _, _), (tb, _, _) = interleave(Bench(vm2.work("A", 2.0)), Bench(vm2.work("B", 1.0)), repeat=5, warmup=0)
    stats = ratio_stats(ta.samples_s, tb.samples_s)
    assert stats.median == pytest.approx(2.0)  # one pair straddles the jump; the median of pairs ignores it


def test_ratio_stats_warns_about_few_pairs_and_wide_spread():
    few = ratio_stats([2.0, 2.1, 1.9], [1.0, 1.0, 1.0])
    assert few.pairs == 3 and few.median == 2.0 and any("only 3 pairs" in w for w in few.warnings)
    assert (few.ci_low, few.ci_high) == (1.9, 2.1) and few.ci_coverage == 0.75
    wide = ratio_stats([1.0, 3.0, 0.5, 2.0, 1.0, 0.4, 2.5], [1.0] * 7)
    assert any("wide spread" in w for w in wide.warnings)
    steady = ratio_stats([1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.0], [2.0] * 8)
    assert steady.warnings == [] and steady.ci_low <= 0.5 <= steady.ci_high
    with pytest.raises(ValueError):
        ratio_stats([1.0], [1.0, 2.0])
