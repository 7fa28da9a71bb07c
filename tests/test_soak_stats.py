"""The soak's statistics and verdict as pure logic: a slope's interval covers the true growth at
the stated rate, noise makes a short series inconclusive and says how long it needs, a level jump
at a replacement or a fault is a step and never a slope, and the verdict's exit codes."""

from __future__ import annotations

import random

import pytest

from membench.soak.growth import Cut, process_growth
from membench.soak.readings import Series, increase
from membench.soak.trend import fit, judge, t_quantile
from membench.soak.verdict import Thresholds, decide
from membench.units import MIB

HOUR = 3600.0


def test_t_quantiles_match_the_tables() -> None:
    for dof, table in (
        (1, 12.706),
        (2, 4.303),
        (3, 3.182),
        (5, 2.571),
        (10, 2.228),
        (30, 2.042),
        (1000, 1.962),
    ):
        assert t_quantile(0.975, dof) == pytest.approx(table, abs=0.01)


def test_the_interval_covers_the_true_slope_about_95_times_in_100() -> None:
    rng = random.Random(23)
    true = 2 * MIB / HOUR
    covered = 0
    for _ in range(200):
        points = [(t, 100 * MIB + true * t + rng.gauss(0, 0.5 * MIB)) for t in range(0, 1800, 15)]
        trend = fit([points])
        assert trend.low is not None and trend.high is not None
        covered += trend.low <= true <= trend.high
    assert 180 <= covered <= 199


def test_autocorrelated_noise_widens_the_interval() -> None:
    rng = random.Random(5)
    level, points = 0.0, []
    for t in range(0, 1800, 5):  # AR(1) noise, rho 0.9: samples 5 s apart are not independent
        level = 0.9 * level + rng.gauss(0, 0.2 * MIB)
        points.append((t, 100 * MIB + level))
    trend = fit([points])
    assert trend.autocorrelation > 0.7
    assert trend.effective_points < len(points) / 5


def test_a_short_noisy_series_is_inconclusive_and_says_how_long_it_needs() -> None:
    rng = random.Random(1)
    points = [(t, 100 * MIB + rng.gauss(0, 2 * MIB)) for t in range(0, 120, 5)]
    limit = 10 * MIB / HOUR
    trend = fit([points])
    assert judge(trend.low, trend.high, limit) == "inconclusive"
    needed = trend.seconds_to_resolve(limit)
    assert needed is not None and 300 < needed < 900  # (1.96 x 2 MB x sqrt(12 x 5) / G)^(2/3)
    longer = [(t, 100 * MIB + rng.gauss(0, 2 * MIB)) for t in range(0, int(2 * needed), 5)]
    assert judge(*(lambda tr: (tr.low, tr.high))(fit([longer])), limit) == "pass"


def test_too_few_samples_carry_no_interval() -> None:
    assert fit([[(0, 1.0), (5, 2.0)]]).half_width is None
    assert judge(None, None, 1.0) == "inconclusive"


def _series(labels: dict[str, str], points: list[tuple[float, float]]) -> Series:
    return Series(labels, points)


def test_a_replaced_process_is_a_step_not_growth_and_busy_samples_are_left_out() -> None:
    labels = {"pool": "prefork", "role": "child", "child": "0", "instance": "h:1"}
    times = list(range(0, 1200, 5))
    # 1 MB/h in each life; the new process (from t=600) starts 30 MB lower; a task runs every
    # 60 s and its samples are 50 MB higher.
    rss = [
        (t, (100 if t < 600 else 70) * MIB + t / HOUR * MIB + (50 * MIB if t % 60 == 0 else 0))
        for t in times
    ]
    busy = [(t, 1.0 if t % 60 == 0 else 0.0) for t in times]
    starts = [(t, -1000.0 if t < 600 else 598.0) for t in times]
    (process,) = process_growth(
        [_series(labels, rss)],
        [_series(labels, busy)],
        [_series(labels, starts)],
        limit_bytes_per_s=10 * MIB / HOUR,
        warmup_s=60,
    )
    assert process.growth.mb_per_hour == pytest.approx(1.0, abs=0.01)
    assert process.growth.status == "pass"
    assert process.replaced_at == [600]
    (step,) = process.steps
    assert step.cause == "process replaced" and step.mb == pytest.approx(-30, abs=0.1)
    assert all(t - 598 >= 60 for t, _ in process.segments[1])  # the warm-up left out


def test_a_fault_cut_turns_a_level_jump_into_a_step() -> None:
    labels = {"scenario": "gevent_threads", "pool": "gevent", "role": "main", "child": ""}
    rss = [(t, 60 * MIB + (1.5 * MIB if t >= 900 else 0)) for t in range(0, 1800, 5)]
    cut = Cut(900.0, "restart_redis")
    without = process_growth([_series(labels, rss)], [], [], 1 * MIB / HOUR, 0)[0]
    with_cut = process_growth([_series(labels, rss)], [], [], 1 * MIB / HOUR, 0, [cut])[0]
    assert without.growth.mb_per_hour is not None and without.growth.mb_per_hour > 2
    assert with_cut.growth.mb_per_hour == pytest.approx(0, abs=1e-6)
    assert [(s.cause, round(s.mb or 0, 2)) for s in with_cut.steps] == [("restart_redis", 1.5)]


def test_two_workers_alive_at_once_are_two_slots_and_a_restart_on_a_new_port_is_one() -> None:
    base = {"pool": "gevent", "role": "main", "child": ""}
    early = [(t, 60.0 * MIB) for t in range(0, 600, 5)]
    late = [(t, 60.0 * MIB) for t in range(605, 1200, 5)]
    one = process_growth(
        [_series({**base, "instance": "h:1"}, early), _series({**base, "instance": "h:2"}, late)],
        [],
        [],
        MIB,
        0,
    )
    assert len(one) == 1 and one[0].replaced_at == [605]
    two = process_growth(
        [_series({**base, "instance": "h:1"}, early), _series({**base, "instance": "h:2"}, early)],
        [],
        [],
        MIB,
        0,
    )
    assert sorted(p.name for p in two) == [
        "pool=gevent role=main instance=h:1",
        "pool=gevent role=main instance=h:2",
    ]


def test_a_counter_increase_takes_a_drop_as_a_restart() -> None:
    assert increase([(0, 5.0), (1, 7.0), (2, 1.0), (3, 4.0)]) == 2 + 1 + 3


def test_the_verdict_fails_on_growth_lost_runs_or_oom_kills_and_says_why() -> None:
    labels = {"pool": "prefork", "role": "child", "child": "0"}
    leaking = [(t, 100 * MIB + t * 2 * MIB / 60) for t in range(0, 600, 5)]  # 120 MB/h
    flat = [(t, 100 * MIB) for t in range(0, 600, 5)]
    thresholds = Thresholds(10.0, 0, allow_inconclusive=False)
    limit = thresholds.limit_bytes_per_s
    grows = process_growth([_series(labels, leaking)], [], [], limit, 0)
    steady = process_growth([_series(labels, flat)], [], [], limit, 0)
    failed = decide(grows, 0, 0, thresholds)
    assert failed.status == "fail" and "grows 120.00 MB/h" in failed.reasons[0]
    assert failed.exit_code(thresholds) == 1
    assert decide(steady, 0, 0, thresholds).status == "pass"
    assert decide(steady, 1, 0, thresholds).reasons == ["1 run(s) lost > --max-lost 0"]
    assert decide(steady, 0, 2, thresholds).status == "fail"
    rising = [(t, 100 * MIB + t * MIB) for t in range(0, 25, 5)]  # 5 clean samples: no call
    (few,) = process_growth([_series(labels, rising)], [], [], limit, 0)
    assert few.growth.status == "inconclusive" and few.growth.seconds_to_resolve >= 50
    short = process_growth([_series(labels, flat[:2])], [], [], limit, 0)
    verdict = decide(short, 0, 0, thresholds)
    assert verdict.status == "inconclusive" and verdict.exit_code(thresholds) == 1
    assert verdict.exit_code(Thresholds(10.0, 0, allow_inconclusive=True)) == 0
