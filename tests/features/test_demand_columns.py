from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.demand_columns import compute_demand_columns, compute_needed_sessions
from features.known_series import NO_HISTORY
from features.lags import LOOKBACK
from features.matrix import build_feature_matrix
from features.session_split import compute_session_times
from features.time_grid import ONE_US, compute_epoch_us
from forecasting.config import SiteConfig
from tests.features.conftest import at, make_sessions

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Rows built with fewer old sessions differ only in float rounding: rolling means are
# differences of cumulative sums over a shorter span (about 1e-13 kWh here) and the EWM level
# starts later (weight 2^-64 of the level); 1e-9 kWh is far above both, far below any change.
TOLERANCE = 1e-9


def _sessions() -> pl.DataFrame:
    """Busy for 200 days with a silence from day 150 to day 260, then busy again to day 400."""
    rows = [
        (at(h + 0.25), at(h + 1.5), 6.0 + h % 5)
        for h in range(0, 400 * 24, 3)
        if not 150 * 24 <= h < 260 * 24
    ]
    return make_sessions(rows)


@pytest.mark.parametrize(
    "late_issues",
    [
        pytest.param([at(24 * 255), at(24 * 255 + 7)], id="inside-a-long-outage"),
        pytest.param([at(24 * 262), at(24 * 300 + 9.5)], id="after-the-outage"),
        pytest.param([at(24 * 390)], id="far-from-the-first-session"),
    ],
)
def test_rows_need_only_recent_sessions(site: SiteConfig, late_issues: list) -> None:
    sessions = _sessions()
    common = {"site": site, "horizon": DAY, "resolution": HOUR}
    # with an issue time at day 2 no session can be left out: the reference result
    full = build_feature_matrix(sessions, issue_times=[at(48), *late_issues], **common)
    late = build_feature_matrix(sessions, issue_times=late_issues, **common)
    expected = full.filter(pl.col("issued_at").is_in(late_issues))
    assert_frame_equal(late, expected, check_exact=False, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def test_a_long_outage_keeps_its_mask_and_history(site: SiteConfig) -> None:
    issued_at = at(24 * 255)  # 105 days into the silence, far beyond LOOKBACK
    assert timedelta(days=105) > LOOKBACK
    matrix = build_feature_matrix(
        _sessions(), site=site, issue_times=[issued_at], horizon=DAY, resolution=HOUR
    )
    assert matrix["is_missing"].all()  # judged on the arrivals before day 150
    assert matrix["energy_kwh"].is_null().all()
    last_end = at(150 * 24 - 3 + 1.5)  # the last session before the silence
    hours = (issued_at - last_end) / HOUR
    assert matrix["hours_since_last_session"].to_list() == [pytest.approx(hours)] * 24
    assert matrix["lag_7d"].to_list() == [0.0] * 24  # known history: zero, not null


def test_sessions_that_ended_long_before_are_left_out() -> None:
    sessions = make_sessions(
        [(at(0), at(2), 4.0), (at(10), at(11), 1.0), (at(24 * 200), at(24 * 200 + 1), 2.0)]
    )
    times = compute_session_times(sessions)
    times["site"] = np.zeros(3, dtype=np.int64)
    step_us = HOUR // ONE_US
    issues_us = np.array([compute_epoch_us(at(24 * 201))])
    target = compute_epoch_us(at(24 * 201)) // step_us
    needed = compute_needed_sessions(
        times,
        sites=1,
        issues_us=issues_us,
        targets=(target, target + 24),
        step_us=step_us,
        known_until=None,
    )
    assert needed.counts.tolist() == [0, 0, 1]  # the last one, over one interval
    assert needed.earlier is not None
    assert needed.earlier.first_us.tolist() == [compute_epoch_us(at(0))]
    assert needed.earlier.last_end_us.tolist() == [compute_epoch_us(at(11))]
    # a left-out session ended at or before the look-back point, which is at or before it
    assert needed.earlier.last_end_us[0] <= needed.earlier.lookback_from_us
    assert needed.earlier.lookback_from_us <= issues_us[0] - LOOKBACK // ONE_US
    none_left_out = compute_needed_sessions(
        times,
        sites=1,
        issues_us=issues_us - 24 * 180 * 3600 * 10**6,
        targets=(target - 24 * 180, target - 24 * 179),
        step_us=step_us,
        known_until=None,
    )
    assert (none_left_out.counts > 0).all()
    assert none_left_out.earlier is not None
    assert none_left_out.earlier.first_us.tolist() == [NO_HISTORY]


def test_without_issue_times_every_session_is_needed() -> None:
    times = compute_session_times(make_sessions([(at(0), at(2), 4.0), (at(10), at(11), 1.0)]))
    times["site"] = np.zeros(2, dtype=np.int64)
    needed = compute_needed_sessions(
        times,
        sites=1,
        issues_us=np.array([], dtype=np.int64),
        targets=(0, 0),
        step_us=HOUR // ONE_US,
        known_until=None,
    )
    assert needed.counts.tolist() == [2, 1]  # its intervals
    assert needed.earlier is None


@pytest.mark.parametrize(
    ("issue", "issues_us"),
    [
        pytest.param([0, 1], [2 * 3_600_000_000, 3_600_000_000], id="issues-not-increasing"),
        pytest.param([0, 2], [0, 3_600_000_000], id="position-past-the-issues"),
    ],
)
def test_issue_positions_are_checked(site: SiteConfig, issue: list, issues_us: list) -> None:
    with pytest.raises(ValueError, match="issues_us must be increasing"):
        compute_demand_columns(
            make_sessions([(at(0), at(1), 1.0)]),
            issue=np.array(issue),
            interval_us=np.array([0, 3_600_000_000]),
            issues_us=np.array(issues_us),
            sites=[site],
            allocation="uniform",
            resolution=timedelta(hours=1),
            known_until=None,
        )
