"""Confidence intervals and p-values for the campaign results' lift, from sufficient statistics, with the standard
library only (scipy is not a runtime dependency).

- Normal distribution: statistics.NormalDist.
- Student's t: the two-sided tail P(|T| > t) = I_x(df/2, 1/2) with x = df / (df + t²), where I is the regularized
  incomplete beta function, evaluated by its continued fraction (the modified Lentz method of Numerical Recipes'
  `betacf`/`betai`); the 0.975 quantile by Newton's method on that tail, kept inside a bisection bracket.
  Both agree with scipy.stats.t to about 1e-11 for df up to 10⁶ and 1e-9 up to 10⁸, far below the 4 decimals
  the results show (tests/campaigns/test_significance.py).

Each function returns floats (or None where the statistic is undefined); rounding is the caller's.
"""

import math
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist

CONFIDENCE = 0.95
_STANDARD_NORMAL = NormalDist()
_TINY = 1e-300
_EPSILON = 1e-15


def _beta_continued_fraction(a, b, x):
    """The continued fraction of the incomplete beta function (modified Lentz). It converges in about
    sqrt(max(a, b)) steps for x < (a + 1) / (a + b + 2); the iteration limit leaves ample room above that."""
    limit = 200 + int(20 * math.sqrt(max(a, b)))
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, limit + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPSILON:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def _log_gamma_ratio(a, b):
    """ln Γ(a + b) − ln Γ(a). For a large, math.lgamma's own rounding (relative, on values near a·ln a) would
    swamp the difference: Stirling's series written as a difference instead, with (a − ½)·log1p(b/a) in place of
    the two large logarithms."""
    if a < 100.0:
        return math.lgamma(a + b) - math.lgamma(a)

    def series(z):  # ln Γ(z) − ((z − ½) ln z − z + ½ ln 2π), to z⁻⁵ (the next term is below 1e-17 at z ≥ 100)
        return 1.0 / (12.0 * z) - 1.0 / (360.0 * z**3) + 1.0 / (1260.0 * z**5)

    return (a - 0.5) * math.log1p(b / a) + b * math.log(a + b) - b + series(a + b) - series(a)


def regularized_incomplete_beta(a, b, x, complement=None):
    """I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1. `complement`: 1 − x when the caller knows it more precisely than
    the subtraction would give (x close to 1)."""
    y = 1.0 - x if complement is None else complement
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    large, small = max(a, b), min(a, b)
    log_beta = math.lgamma(small) - _log_gamma_ratio(large, small)  # ln B(a, b)
    log_x = math.log1p(-y) if y < 0.5 else math.log(x)  # a·ln x is large when a is: keep x's precision
    log_y = math.log1p(-x) if x < 0.5 else math.log(y)
    front = math.exp(a * log_x + b * log_y - log_beta)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, y) / b


def student_t_two_sided_p(t, df):
    """P(|T| ≥ |t|) for Student's t with `df` (> 0, not necessarily whole) degrees of freedom."""
    t = abs(t)
    if t == 0.0:
        return 1.0
    square = t * t
    return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + square), complement=square / (df + square))


def _student_t_density(t, df):
    log_norm = math.lgamma((df + 1.0) / 2.0) - math.lgamma(df / 2.0) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1.0) / 2.0 * math.log1p(t * t / df))


def student_t_quantile(probability, df):
    """The t with P(T ≤ t) = probability, for probability in (0.5, 1): Newton's method on the two-sided tail,
    started at the normal quantile and kept inside a bracket that bisection narrows when a step leaves it."""
    tail = 2.0 * (1.0 - probability)  # the two-sided tail beyond the quantile
    low, high = 0.0, 1.0
    while student_t_two_sided_p(high, df) > tail:  # the bracket's upper end
        low, high = high, high * 2.0
    t = min(max(_STANDARD_NORMAL.inv_cdf(probability), low), high)
    for _ in range(200):
        excess = student_t_two_sided_p(t, df) - tail  # decreasing in t
        if excess > 0:
            low = t
        else:
            high = t
        step = excess / (2.0 * _student_t_density(t, df))
        candidate = t + step
        if not low < candidate < high:
            candidate = (low + high) / 2.0
        if abs(candidate - t) <= 1e-14 * max(1.0, t):
            return candidate
        t = candidate
    return t


@dataclass(frozen=True)
class Interval:
    """An estimated difference (variant − holdout), its 95% confidence interval and the test's two-sided p-value.
    ci_low/ci_high are None when the standard error is 0, p_value when the test's is."""

    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None


UNDEFINED = Interval(None, None, None, None)


def difference_of_proportions(successes_a, size_a, successes_b, size_b):
    """p_a − p_b: a Wald interval with the unpooled standard error sqrt(p_a(1−p_a)/n_a + p_b(1−p_b)/n_b) and
    z = NormalDist().inv_cdf(0.975); p-value of the two-sided z-test with the pooled standard error
    sqrt(p(1−p)(1/n_a + 1/n_b)), p = (x_a + x_b) / (n_a + n_b). Undefined below 2 members in a group."""
    if size_a < 2 or size_b < 2:
        return UNDEFINED
    p_a, p_b = successes_a / size_a, successes_b / size_b
    estimate = p_a - p_b
    unpooled = math.sqrt(p_a * (1 - p_a) / size_a + p_b * (1 - p_b) / size_b)
    pooled_p = (successes_a + successes_b) / (size_a + size_b)
    pooled = math.sqrt(pooled_p * (1 - pooled_p) * (1 / size_a + 1 / size_b))
    ci_low = ci_high = p_value = None
    if unpooled > 0:
        margin = _STANDARD_NORMAL.inv_cdf(0.5 + CONFIDENCE / 2) * unpooled
        ci_low, ci_high = estimate - margin, estimate + margin
    if pooled > 0:
        p_value = 2 * _STANDARD_NORMAL.cdf(-abs(estimate / pooled))
    return Interval(estimate, ci_low, ci_high, p_value)


def sample_variance(size, total, total_of_squares):
    """The sample variance (n − 1 in the denominator) of integers from their count, sum and sum of squares,
    exactly (a Fraction): no cancellation however many members."""
    return Fraction(size * total_of_squares - total * total, size * (size - 1))


def welch_difference(size_a, total_a, squares_a, size_b, total_b, squares_b, *, scale=1):
    """mean_a − mean_b for samples of integers given as (n, Σx, Σx²), divided by `scale` (100: cents to yuan).
    Welch's t interval with the Welch–Satterthwaite degrees of freedom
    df = (v_a/n_a + v_b/n_b)² / ((v_a/n_a)²/(n_a − 1) + (v_b/n_b)²/(n_b − 1)), and the two-sided p-value of
    Welch's t-test. Undefined below 2 members in a group."""
    if size_a < 2 or size_b < 2:
        return UNDEFINED
    estimate = Fraction(total_a, size_a) - Fraction(total_b, size_b)
    share_a = sample_variance(size_a, total_a, squares_a) / size_a
    share_b = sample_variance(size_b, total_b, squares_b) / size_b
    variance = share_a + share_b
    if variance == 0:
        return Interval(float(estimate / scale), None, None, None)
    df = float(variance * variance / (share_a * share_a / (size_a - 1) + share_b * share_b / (size_b - 1)))
    error = math.sqrt(variance) / scale
    estimate = float(estimate / scale)
    margin = student_t_quantile(0.5 + CONFIDENCE / 2, df) * error
    return Interval(estimate, estimate - margin, estimate + margin, student_t_two_sided_p(estimate / error, df))
