"""Interval bounds of a ratio against independent computations and published values."""

from __future__ import annotations

import math

import pytest

from expmon.alerting.stats import (
    beta_cdf,
    beta_quantile,
    jeffreys_interval,
    normal_quantile,
    wilson_interval,
    z_for,
)


@pytest.mark.parametrize(
    ("p", "z"),
    [
        (0.5, 0.0),
        (0.975, 1.959963984540054),
        (0.95, 1.6448536269514722),
        (0.995, 2.5758293035489004),
        (0.8413447460685429, 1.0),
        (0.022750131948179195, -2.0),
    ],
)
def test_normal_quantile_matches_the_table(p: float, z: float) -> None:
    assert normal_quantile(p) == pytest.approx(z, abs=1e-9)


def wilson_by_formula(k: int, n: int, z: float) -> tuple[float, float]:
    """The textbook form, in the observed proportion (the code uses the count form)."""
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


@pytest.mark.parametrize(
    ("k", "n", "confidence", "z"),
    [
        (2, 54, 0.95, 1.959963984540054),
        (40, 540, 0.95, 1.959963984540054),
        (0, 10, 0.95, 1.959963984540054),
        (10, 10, 0.95, 1.959963984540054),
        (3, 62, 0.90, 1.6448536269514722),
        (500, 1000, 0.99, 2.5758293035489004),
        (1, 1, 0.99, 2.5758293035489004),
    ],
)
def test_wilson_matches_the_formula(k: int, n: int, confidence: float, z: float) -> None:
    low, high = wilson_interval(k, n, confidence)
    expected = wilson_by_formula(k, n, z)
    assert low == pytest.approx(max(0.0, expected[0]), abs=1e-12)
    assert high == pytest.approx(min(1.0, expected[1]), abs=1e-12)
    assert low <= k / n <= high


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion",
    # Statistics in Medicine 17, table I, method 3 (Wilson score, 95 %)
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
     (1, 29, 0.0061, 0.1718)],
)  # fmt: skip
def test_wilson_matches_published_values(k: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(k, n, 0.95)
    assert (round(got[0], 4), round(got[1], 4)) == (low, high)


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed term by term."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


@pytest.mark.parametrize(
    ("k", "n", "p"), [(1, 1, 0.3), (2, 54, 0.03), (5, 20, 0.4), (30, 40, 0.7), (7, 300, 0.01)]
)
def test_beta_cdf_is_the_binomial_tail(k: int, n: int, p: float) -> None:
    # I_p(k, n - k + 1) = P(Binomial(n, p) >= k): integer parameters, exact sums
    assert beta_cdf(p, k, n - k + 1) == pytest.approx(binomial_tail(k, n, p), rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("q", [0.001, 0.025, 0.3, 0.5, 0.975, 0.999])
@pytest.mark.parametrize(
    ("a", "b", "closed_form"),
    [
        # arcsine: Jeffreys' prior itself, Beta(1/2, 1/2)
        (0.5, 0.5, lambda q: math.sin(math.pi * q / 2) ** 2),
        (3.0, 1.0, lambda q: q ** (1 / 3)),
        (1.0, 2.5, lambda q: 1 - (1 - q) ** (1 / 2.5)),
        (1.0, 1.0, lambda q: q),
    ],
)
def test_beta_quantile_matches_closed_forms(
    a: float, b: float, closed_form: object, q: float
) -> None:
    assert callable(closed_form)
    assert beta_quantile(q, a, b) == pytest.approx(closed_form(q), abs=1e-10)


def beta_cdf_by_integration(x: float, a: float, b: float, steps: int = 20_000) -> float:
    """Simpson's rule on t = u^2 (smooth at 0 for a = 1/2), normalised by B(a, b)."""

    def f(u: float) -> float:
        return 2 * u ** (2 * a - 1) * (1 - u * u) ** (b - 1) if u > 0 else (2 if a == 0.5 else 0)

    top = math.sqrt(x)
    h = top / steps
    total = f(0) + f(top) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, steps))
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    return total * h / 3 / math.exp(log_beta)


@pytest.mark.parametrize(("k", "n"), [(2, 54), (3, 62), (40, 540), (1, 29), (15, 148)])
def test_jeffreys_bounds_hold_their_tail_mass(k: int, n: int) -> None:
    low, high = jeffreys_interval(k, n, 0.95)
    a, b = k + 0.5, n - k + 0.5
    assert beta_cdf_by_integration(low, a, b) == pytest.approx(0.025, abs=2e-6)
    assert beta_cdf_by_integration(high, a, b) == pytest.approx(0.975, abs=2e-6)
    assert low < k / n < high
    # below one half, Jeffreys' interval lies lower than Wilson's (less pull to 1/2)
    w_low, w_high = wilson_interval(k, n, 0.95)
    assert low < w_low and high < w_high


def test_jeffreys_ends_at_the_limits_for_none_or_all() -> None:
    assert jeffreys_interval(0, 20)[0] == 0.0
    assert jeffreys_interval(20, 20)[1] == 1.0
    assert jeffreys_interval(0, 20)[1] == pytest.approx(beta_quantile(0.975, 0.5, 20.5))


def test_z_of_a_confidence() -> None:
    assert z_for(0.95) == pytest.approx(1.959963984540054, abs=1e-9)
    with pytest.raises(ValueError):
        normal_quantile(1.0)
