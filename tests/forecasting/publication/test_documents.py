from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from forecasting.config import SiteConfig
from forecasting.publication.baseline import build_baseline, resolve_served
from forecasting.publication.documents import (
    build_document_csv,
    build_forecast_document,
    encode_document,
)
from forecasting.publication.examples import build_example_run
from forecasting.publication.ocpp import build_schedule_document, validate_charging_profile
from forecasting.publication.targets import build_publication

T0 = datetime(2024, 6, 1, tzinfo=UTC)
SITE = SiteConfig(
    site_id="site-a",
    name="A",
    latitude=0.0,
    longitude=0.0,
    timezone="UTC",
    grid_limit_kw=100.0,
    other_load_kw=20.0,
)
PUBLICATION = build_publication(build_example_run("site-a", issued_at=T0, hours=48), site=SITE)


def test_document_states_identity_units_and_window() -> None:
    start, end = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    doc = build_forecast_document(PUBLICATION, target="net", start=start, end=end, stale=False)
    assert doc["run_id"] == PUBLICATION.run_id
    assert doc["interval"] == {"length_s": 900, "label": "interval-start", "time_zone": "UTC"}
    assert doc["units"] == {"energy": "kWh", "power": "kW"}
    assert set(doc["models"]) == {"demand", "pv"}
    assert doc["fallback"] == {"active": False, "reason": None}
    assert doc["method"].startswith("comonotone-opposite")
    assert [r["interval_start"] for r in doc["intervals"]] == [
        "2024-06-01T01:00:00Z",
        "2024-06-01T01:15:00Z",
        "2024-06-01T01:30:00Z",
        "2024-06-01T01:45:00Z",
    ]
    row = doc["intervals"][0]
    assert row["power_kw_p50"] == pytest.approx(row["energy_kwh_p50"] * 4, abs=1e-5)  # rounding
    assert json.loads(encode_document(doc)) == doc


def test_csv_carries_run_and_flags_per_row() -> None:
    doc = build_forecast_document(PUBLICATION, target="pv", start=None, end=None, stale=True)
    frame = pl.read_csv(build_document_csv(doc).encode())
    assert frame.height == 192
    assert frame["run_id"].unique().to_list() == [PUBLICATION.run_id]
    assert frame["stale"].unique().to_list() == [True]
    assert frame.columns[:5] == ["site_id", "run_id", "target", "stale", "fallback"]


def test_fresh_run_is_served_as_is_and_stale_run_is_marked_or_replaced() -> None:
    fresh = resolve_served(PUBLICATION, now=T0 + timedelta(hours=1), stale_policy="mark")
    assert fresh == (PUBLICATION, False, None)
    later = T0 + timedelta(days=3, minutes=7)
    marked = resolve_served(PUBLICATION, now=later, stale_policy="mark")
    assert marked == (PUBLICATION, True, None)
    _, stale, reason = resolve_served(PUBLICATION, now=later, stale_policy="baseline")
    assert stale is True
    assert reason is not None
    assert "baseline" in reason
    assert PUBLICATION.run_id in reason


def test_baseline_is_a_daily_profile_from_now_with_safe_headroom() -> None:
    now = T0 + timedelta(days=3, minutes=7)
    baseline = build_baseline(PUBLICATION, now=now)
    demand = baseline.intervals.filter(pl.col("target") == "demand")
    assert demand["interval_start"][0] == T0 + timedelta(days=3)  # the interval holding now
    assert demand.height == 192
    stale_demand = PUBLICATION.intervals.filter(pl.col("target") == "demand")
    # the example run repeats daily, so the daily profile reproduces it
    assert demand["p50"].to_list() == pytest.approx(stale_demand["p50"].to_list(), rel=1e-9)
    headroom = baseline.intervals.filter(pl.col("target") == "headroom")
    assert headroom["p10"].unique().to_list() == [pytest.approx((100.0 - 20.0) / 4)]
    assert baseline.intervals.filter(pl.col("target") == "pv")["p90"].max() == 0.0


def test_schedule_document_starts_at_the_current_interval_and_is_valid_ocpp() -> None:
    now = T0 + timedelta(hours=2, minutes=5)
    doc = build_schedule_document(PUBLICATION, now=now, stale=False)
    payload = doc["set_charging_profile"]
    validate_charging_profile(payload)
    schedule = payload["chargingProfile"]["chargingSchedule"][0]
    assert schedule["startSchedule"] == "2024-06-01T02:00:00Z"
    assert schedule["duration"] == (48 * 4 - 8) * 900
    assert doc["run_id"] == PUBLICATION.run_id
    assert doc["units"] == {"limit": "W"}
