"""membench/stats.py: describe, the nearest-rank percentile and the least-squares slope."""

from __future__ import annotations

import statistics

import pytest

from membench.stats import describe, percentile, slope


def test_describe_an_odd_sample() -> None:
    assert describe([3.0, 1.0, 2.0]) == {
        "median": 2.0,
        "min": 1.0,
        "max": 3.0,
        "stdev": 1.0,
        "n": 3,
    }


def test_describe_an_even_sample_takes_the_middle_mean() -> None:
    summary = describe([4, 1, 3, 2])
    assert summary["median"] == 2.5
    assert (summary["min"], summary["max"], summary["n"]) == (1, 4, 4)
    assert summary["stdev"] == pytest.approx(statistics.stdev([1, 2, 3, 4]))


def test_describe_uses_the_sample_not_the_population_stdev() -> None:
    assert describe([0.0, 2.0])["stdev"] == pytest.approx(2**0.5)  # pstdev would be 1.0


def test_describe_one_value_has_zero_spread() -> None:
    assert describe([7.5]) == {"median": 7.5, "min": 7.5, "max": 7.5, "stdev": 0.0, "n": 1}


def test_describe_an_empty_sequence_raises() -> None:
    with pytest.raises(statistics.StatisticsError):
        describe([])


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 10), (1, 10), (10, 10), (10.1, 20), (50, 50), (51, 60), (90, 90), (99, 100), (100, 100)],
)
def test_percentile_is_nearest_rank(q: float, expected: int) -> None:
    values = [100, 10, 90, 20, 80, 30, 70, 40, 60, 50]  # unsorted on purpose
    assert percentile(values, q) == expected


def test_percentile_is_always_a_value_of_the_sample() -> None:
    assert percentile([1.0, 2.0], 50) == 1.0  # not the interpolated 1.5
    assert percentile([5.0], 99.9) == 5.0


def test_percentile_does_not_sort_the_callers_list() -> None:
    values = [3, 1, 2]
    percentile(values, 50)
    assert values == [3, 1, 2]


def test_slope_of_a_line() -> None:
    assert slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert slope([0.0, 10.0], [5.0, 0.0]) == pytest.approx(-0.5)


def test_slope_is_least_squares_through_noise() -> None:
    assert slope([0, 1, 2], [0, 2, 1]) == pytest.approx(0.5)


def test_slope_of_a_flat_series_is_zero() -> None:
    assert slope([1, 2, 3], [4, 4, 4]) == 0.0


@pytest.mark.parametrize(("xs", "ys"), [([], []), ([1.0], [2.0]), ([2, 2, 2], [1, 2, 3])])
def test_slope_without_two_distinct_xs_is_none(xs: list[float], ys: list[float]) -> None:
    assert slope(xs, ys) is None
