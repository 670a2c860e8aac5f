from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta

import polars as pl
import pytest

from forecasting.backtest.grid import BacktestSpec
from forecasting.errors import ConfigError
from forecasting.registry import (
    build_evaluation_spec,
    build_model_name,
    compute_frame_fingerprint,
    decide_promotion,
    evaluate_forecasters,
)
from models.baselines import SeasonalNaive
from tests.support import LAB_SITE as SITE
from tests.support import FlatForecaster, weekly_sessions


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "reason"),
    [
        pytest.param(1.0, None, True, "no usable champion", id="first-model"),
        pytest.param(1.0, math.nan, True, "no usable champion", id="champion-unscored"),
        pytest.param(0.97, 1.0, True, "< 0.9800", id="better-by-more-than-margin"),
        pytest.param(0.98, 1.0, False, "does not beat 0.9800", id="exactly-at-margin"),
        pytest.param(0.99, 1.0, False, "does not beat", id="better-within-margin"),
        pytest.param(1.5, 1.0, False, "does not beat", id="worse"),
        pytest.param(math.inf, 1.0, False, "not finite", id="challenger-unscored"),
    ],
)
def test_decide_promotion(
    challenger: float, champion: float | None, promote: bool, reason: str
) -> None:
    decision = decide_promotion(challenger, champion, margin=0.02)
    assert decision.promote is promote
    assert reason in decision.reason
    assert (decision.challenger_score, decision.margin) == (challenger, 0.02)


@pytest.mark.parametrize("margin", [pytest.param(-0.1, id="negative"), pytest.param(1.0, id="one")])
def test_decide_promotion_rejects_bad_margin(margin: float) -> None:
    with pytest.raises(ConfigError, match="margin must be in"):
        decide_promotion(1.0, 1.0, margin=margin)


def test_model_name() -> None:
    assert build_model_name("broxden-park-ride-perth") == "evcast-broxden-park-ride-perth-demand"


def test_fingerprint_ignores_row_order_and_ingest_time_but_not_values() -> None:
    sessions = weekly_sessions(3)
    reingested = sessions.reverse().with_columns(
        ingested_at=pl.col("ingested_at") + timedelta(days=1)
    )
    changed = sessions.with_columns(energy_kwh=pl.col("energy_kwh") + (pl.int_range(pl.len()) == 0))
    fingerprint = compute_frame_fingerprint(sessions, ignore=["ingested_at"])
    assert len(fingerprint) == 64
    assert compute_frame_fingerprint(reingested, ignore=["ingested_at"]) == fingerprint
    assert compute_frame_fingerprint(changed, ignore=["ingested_at"]) != fingerprint
    assert compute_frame_fingerprint(reingested) != compute_frame_fingerprint(sessions)


@pytest.mark.parametrize(
    ("issued_at", "start", "end"),
    [
        pytest.param(datetime(2024, 3, 1, tzinfo=UTC), (2024, 2, 23), (2024, 2, 29), id="midnight"),
        pytest.param(
            datetime(2024, 3, 1, 6, tzinfo=UTC), (2024, 2, 23), (2024, 2, 29), id="morning"
        ),
    ],
)
def test_evaluation_spec_ends_before_issued_at(
    issued_at: datetime, start: tuple[int, int, int], end: tuple[int, int, int]
) -> None:
    spec = build_evaluation_spec(issued_at, site=SITE, days=7)
    assert (spec.start.timetuple()[:3], spec.end.timetuple()[:3]) == (start, end)
    last_end = datetime.combine(spec.end, spec.issue_time, tzinfo=UTC) + spec.horizon
    assert last_end <= issued_at


def test_evaluation_spec_in_site_time() -> None:
    london = SITE.model_copy(update={"timezone": "Europe/London"})
    # 23:30 UTC on 30 June is 00:30 local on 1 July: the day of 30 June has ended locally
    spec = build_evaluation_spec(datetime(2024, 6, 30, 23, 30, tzinfo=UTC), site=london, days=2)
    assert (spec.start.day, spec.end.day, spec.issue_time) == (29, 30, time(0))


def test_evaluation_spec_needs_a_day() -> None:
    with pytest.raises(ConfigError, match="at least one issue day"):
        build_evaluation_spec(datetime(2024, 3, 1, tzinfo=UTC), site=SITE, days=0)


def test_evaluate_forecasters_scores_all_on_the_same_intervals() -> None:
    sessions = weekly_sessions(42)
    spec = BacktestSpec(start=datetime(2024, 2, 5).date(), end=datetime(2024, 2, 11).date())
    scores = evaluate_forecasters(
        {
            "naive": lambda site: SeasonalNaive(),
            "close": lambda site: FlatForecaster(scale=1.0),
            "far": lambda site: FlatForecaster(scale=4.0),
        },
        sessions,
        site=SITE,
        spec=spec,
    )
    assert {s.intervals for s in scores.values()} == {7 * 24}
    assert {s.origins for s in scores.values()} == {7}
    # the data repeat every week, so last week's value is exact
    assert scores["naive"].mae == pytest.approx(0.0, abs=1e-9)
    assert scores["naive"].pinball < scores["close"].pinball < scores["far"].pinball
