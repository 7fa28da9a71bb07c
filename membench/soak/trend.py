"""A growth rate with its uncertainty: the least-squares slope of memory samples pooled over
segments (each at its own level), its standard error from the residual noise, corrected for the
noise's autocorrelation, and how long a soak must run to resolve a given rate at that noise."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

Points = Sequence[tuple[float, float]]  # (unix seconds, bytes)
CONFIDENCE = 0.95
# Each segment needs this many samples to carry a slope (2 give a line with no residual).
MIN_SEGMENT_POINTS = 3
_Z = statistics.NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
# RSS counts whole 4 KiB pages: a reading's own rounding error has this standard deviation, so
# no residual noise is taken as smaller (a flat series of 3 samples is not a zero-error slope).
PAGE_NOISE = 4096 / math.sqrt(12)


@dataclass(frozen=True)
class Trend:
    """A slope in bytes per second with its standard error and confidence half-width (None when
    the samples cannot carry one), and the noise it was measured against."""

    slope: float | None
    stderr: float | None
    half_width: float | None  # the CONFIDENCE interval is slope +- half_width
    points: int
    segments: int
    span_s: float  # seconds covered by the segments used
    noise: float | None  # residual standard deviation, bytes
    autocorrelation: float  # lag-1, of the residuals; >= 0 (negative taken as 0: conservative)
    effective_points: float  # n (1 - rho) / (1 + rho): the independent samples they are worth
    interval_s: float | None  # median spacing of the samples

    @property
    def low(self) -> float | None:
        if self.slope is None or self.half_width is None:
            return None
        return self.slope - self.half_width

    @property
    def high(self) -> float | None:
        if self.slope is None or self.half_width is None:
            return None
        return self.slope + self.half_width

    def seconds_to_resolve(self, rate: float) -> float | None:
        """How long a soak sampled as this one was must run for its confidence half-width to
        shrink to `rate` (bytes/s) at the measured noise: then a slope of 0 and one of `rate` are
        told apart. The half-width falls as T^-3/2 (a slope error is noise x sqrt(12 d / T^3)
        for a sample every d over T seconds), so from the interval measured over this span:
        T = span x (half-width / rate)^(2/3), never less than the span itself. Without an
        interval, from the noise alone (times sqrt((1 + rho) / (1 - rho)) for its
        autocorrelation), with the normal quantile."""
        if rate <= 0:
            return None
        if self.half_width is not None and self.span_s > 0:
            return float(self.span_s * max(self.half_width / rate, 1.0) ** (2 / 3))
        if self.noise is None or self.interval_s is None:
            return None
        rho = self.autocorrelation
        inflation = (1 + rho) / (1 - rho)
        error_per_rate = _Z * self.noise * math.sqrt(12 * self.interval_s * inflation) / rate
        return float(error_per_rate ** (2 / 3))


def t_quantile(probability: float, dof: float) -> float:
    """Student's t quantile: exact at 1 and 2 degrees of freedom, the Cornish-Fisher expansion in
    1/dof (Abramowitz & Stegun 26.7.5, within 0.3% from 3 on) beyond, linear in between."""
    if dof < 3:
        exact = {
            1: math.tan(math.pi * (probability - 0.5)),
            2: (2 * probability - 1) / math.sqrt(2 * probability * (1 - probability)),
            3: t_quantile(probability, 3.0),
        }
        low = min(max(int(dof), 1), 2)
        return exact[low] + (exact[low + 1] - exact[low]) * (max(dof, 1.0) - low)
    z = statistics.NormalDist().inv_cdf(probability)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / dof + g2 / dof**2 + g3 / dof**3 + g4 / dof**4


def fit(segments: Sequence[Points]) -> Trend:
    """One slope over every segment, each centred on its own means so level jumps between
    segments (a replaced process, a step at a fault) never read as growth. The standard error
    uses the residuals' variance over the effective number of samples (Santer et al. 2000:
    n (1 - rho) / (1 + rho) for lag-1 autocorrelation rho), since memory samples seconds apart
    are not independent; the interval uses Student's t on those degrees of freedom."""
    used = [sorted(s) for s in segments if len(s) >= MIN_SEGMENT_POINTS]
    n = sum(len(s) for s in used)
    span = sum(s[-1][0] - s[0][0] for s in used)
    gaps = [b[0] - a[0] for s in used for a, b in itertools.pairwise(s)]
    interval = statistics.median(gaps) if gaps else None
    centred: list[list[tuple[float, float]]] = []
    for s in used:
        mean_t = statistics.fmean(t for t, _ in s)
        mean_v = statistics.fmean(v for _, v in s)
        centred.append([(t - mean_t, v - mean_v) for t, v in s])
    sxx = sum(t * t for s in centred for t, _ in s)
    if not used or sxx <= 0:
        return Trend(None, None, None, n, len(used), span, None, 0.0, float(n), interval)
    slope = sum(t * v for s in centred for t, v in s) / sxx
    residuals = [[v - slope * t for t, v in s] for s in centred]
    ss = max(sum(e * e for r in residuals for e in r), (n - len(used)) * PAGE_NOISE**2)
    lagged = sum(a * b for r in residuals for a, b in itertools.pairwise(r))
    rho = min(max(lagged / ss, 0.0), 0.99) if ss > 0 else 0.0
    effective = n * (1 - rho) / (1 + rho)
    if n - len(used) - 1 < 1:  # one level per segment, one slope: nothing left for the noise
        return Trend(slope, None, None, n, len(used), span, None, rho, effective, interval)
    # Strongly autocorrelated residuals of a short series can leave under one effective degree
    # of freedom: it is held at 1, where Student's t (12.7) is as wide as it gets.
    dof = max(effective - len(used) - 1, 1.0)
    noise = math.sqrt(ss / (n - len(used) - 1))
    stderr = math.sqrt(ss / dof / sxx)
    half = t_quantile(0.5 + CONFIDENCE / 2, dof) * stderr
    return Trend(slope, stderr, half, n, len(used), span, noise, rho, effective, interval)


def level_at(segment: Points, slope: float, at: float) -> float:
    """The segment's fitted level at time `at` (its means, moved along the pooled slope)."""
    mean_t = statistics.fmean(t for t, _ in segment)
    mean_v = statistics.fmean(v for _, v in segment)
    return mean_v + slope * (at - mean_t)


def judge(low: float | None, high: float | None, limit: float) -> str:
    """The call on an interval [low, high] against `limit`: pass when all of it is at or below,
    fail when all of it is above, inconclusive when it straddles (or there is no interval)."""
    if low is None or high is None:
        return "inconclusive"
    if high <= limit:
        return "pass"
    if low > limit:
        return "fail"
    return "inconclusive"
