"""The standard-library distributions behind the campaign lift agree with scipy (a test-only dependency)."""

import pytest
from scipy import special, stats

from campaigns.services.significance import (
    regularized_incomplete_beta,
    student_t_quantile,
    student_t_two_sided_p,
)

DEGREES = [1, 1.5, 2, 2.7, 3, 5, 9.3, 10, 29, 30.5, 100, 1000, 12345.6, 1e5, 1e6, 1e7]


@pytest.mark.parametrize("df", DEGREES)
def test_student_t_quantile_matches_scipy(df):
    assert student_t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-10)


@pytest.mark.parametrize("df", DEGREES)
@pytest.mark.parametrize("t", [0.001, 0.1, 0.5, 1, 1.96, 2.5, 4, 8, 20, 60])
def test_student_t_two_sided_p_matches_scipy(t, df):
    assert student_t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-8, abs=1e-12)
    assert student_t_two_sided_p(-t, df) == student_t_two_sided_p(t, df)


@pytest.mark.parametrize(
    ("a", "b", "x"), [(0.5, 0.5, 0.3), (5, 0.5, 0.9), (2.5, 3.5, 0.5), (0.5, 40, 0.01), (5e5, 0.5, 0.999999)]
)
def test_regularized_incomplete_beta_matches_scipy(a, b, x):
    assert regularized_incomplete_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-9, abs=1e-15)


def test_no_difference_has_p_value_one():
    assert student_t_two_sided_p(0.0, 7) == 1.0
