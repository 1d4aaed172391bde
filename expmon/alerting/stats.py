"""Confidence intervals of an observed ratio `k of n`, for alerts that do not cry wolf.

A ratio rule fires only when the breach is unlikely to be noise at the observed volume:
for `op: >` the lower bound of the interval must exceed the threshold, for `op: <` the
upper bound must be below it. 2 failures in 54 payments (3.7 %) is no evidence of a
failure rate above 3 % (the 95 % Wilson interval is 1.0-12.5 %); 40 in 540 is.

- Wilson score interval: closed form, good coverage down to small n; also expressible in
  PromQL, so the Prometheus twin uses it.
- Jeffreys interval: the quantiles of Beta(k + 1/2, n - k + 1/2), slightly less
  conservative near 0 and 1. Computed here with the regularized incomplete beta function
  (a continued fraction) and bisection: no scipy.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

Method = Literal["wilson", "jeffreys", "none"]
METHODS: tuple[Method, ...] = ("wilson", "jeffreys", "none")


def normal_quantile(p: float) -> float:
    """The standard normal quantile (inverse CDF) of p in (0, 1), by bisection on erf."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return (lo + hi) / 2


@functools.lru_cache(maxsize=64)  # a handful of confidences, asked per observation
def z_for(confidence: float) -> float:
    """The two-sided z of a confidence level: 0.95 -> 1.959964."""
    return normal_quantile(1 - (1 - confidence) / 2)


def wilson_interval(k: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    k = min(max(k, 0.0), n)
    z = z_for(confidence)
    z2 = z * z
    centre = k + z2 / 2
    half = z * math.sqrt(k * (n - k) / n + z2 / 4)
    # exactly 0 (or 1) when none (or all) were counted, whatever the rounding
    low = 0.0 if k == 0 else max(0.0, (centre - half) / (n + z2))
    high = 1.0 if k == n else min(1.0, (centre + half) / (n + z2))
    return low, high


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (the Beta(a, b) CDF)."""
    if a <= 0 or b <= 0:
        raise ValueError("a and b must be > 0")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The fraction converges fast for x below the mean; use the symmetry above it.
    if x < (a + 1) / (a + b + 2):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def beta_quantile(p: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = p, by bisection (the CDF is monotone)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if beta_cdf(mid, a, b) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-14:
            break
    return (lo + hi) / 2


def jeffreys_interval(k: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Jeffreys interval; the bound at 0 (k = 0) or 1 (k = n) is the limit itself, as
    Brown, Cai and DasGupta (2001) recommend."""
    if n <= 0:
        return 0.0, 1.0
    k = min(max(k, 0.0), n)
    alpha = 1 - confidence
    a, b = k + 0.5, n - k + 0.5
    lower = 0.0 if k == 0 else beta_quantile(alpha / 2, a, b)
    upper = 1.0 if k == n else beta_quantile(1 - alpha / 2, a, b)
    return lower, upper


def interval(method: Method, k: float, n: float, confidence: float) -> tuple[float, float]:
    if method == "wilson":
        return wilson_interval(k, n, confidence)
    if method == "jeffreys":
        return jeffreys_interval(k, n, confidence)
    p = k / n if n > 0 else 0.0
    return p, p
