"""Fitting a traffic model to a pool's daily history (``linepool plan --from-cluster``)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linepool.logic.plan_fit import MIN_DAYS, NotEnoughHistory, fit_history


def history(*, days: int, first: float, weekly: float, per_user: float,
            before: float) -> tuple[list[float], list[float]]:
    """Exact daily figures of a pool growing ``weekly`` a week, whose users send ``per_user`` a day."""
    new = [first * (1 + weekly) ** (d / 7) for d in range(days)]
    users, messages = before, []
    for value in new:
        users += value
        messages.append(per_user * users)
    return new, messages


@pytest.mark.parametrize(("weekly", "per_user", "before"), [
    (0.05, 4.0, 500.0), (0.0, 2.5, 0.0), (0.3, 10.0, 2000.0), (0.01, 1.0, 50.0),
])
def test_an_exact_history_gives_back_its_model(weekly: float, per_user: float, before: float) -> None:
    new, messages = history(days=21, first=100.0, weekly=weekly, per_user=per_user, before=before)
    fit = fit_history(new_users=new, messages=messages)
    assert fit.days == 21
    assert fit.weekly_growth == pytest.approx(weekly, abs=1e-6)
    assert fit.new_users_per_day == pytest.approx(new[-1], rel=1e-6)
    assert fit.messages_per_user_per_day == pytest.approx(per_user, rel=1e-6)
    assert fit.users == round(before + sum(new))
    assert fit.growth_r2 == pytest.approx(1.0)
    assert fit.messages_r2 == pytest.approx(1.0)


def test_a_shrinking_pool_is_planned_without_growth_and_says_so() -> None:
    new, messages = history(days=14, first=200.0, weekly=-0.2, per_user=3.0, before=1000.0)
    fit = fit_history(new_users=new, messages=messages)
    assert fit.shrinking is True
    assert fit.weekly_growth == 0.0


def test_noise_lowers_r2_and_days_without_signups_do_not_break_the_fit() -> None:
    new, messages = history(days=14, first=20.0, weekly=0.1, per_user=4.0, before=100.0)
    noisy = [value * (1.3 if d % 2 else 0.7) for d, value in enumerate(new)]
    noisy[3] = 0.0
    fit = fit_history(new_users=noisy, messages=messages)
    assert 0.0 <= fit.growth_r2 < 0.9
    assert math.isfinite(fit.weekly_growth)


@pytest.mark.parametrize("days", [0, 1, MIN_DAYS - 1])
def test_less_than_three_days_is_refused(days: int) -> None:
    with pytest.raises(NotEnoughHistory, match=f"found {days} day"):
        fit_history(new_users=[10.0] * days, messages=[40.0] * days)


@given(weekly=st.floats(0.0, 1.0), per_user=st.floats(0.1, 50.0), days=st.integers(MIN_DAYS, 28))
def test_growth_is_recovered_for_any_exact_history(weekly: float, per_user: float, days: int) -> None:
    new, messages = history(days=days, first=50.0, weekly=weekly, per_user=per_user, before=10.0)
    fit = fit_history(new_users=new, messages=messages)
    assert fit.weekly_growth == pytest.approx(weekly, abs=1e-6)
    assert fit.messages_per_user_per_day == pytest.approx(per_user, rel=1e-4)
