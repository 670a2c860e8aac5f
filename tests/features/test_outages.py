from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from features.demand_series import build_demand_series
from features.outages import mark_outages
from tests.conftest import REPO_ROOT
from tests.features.conftest import at, make_sessions

HOUR = timedelta(hours=1)


def _busy_site(gap_days: tuple[float, float], *, per_day: int = 24) -> pl.DataFrame:
    """One 30-minute session every 24/per_day hours for 60 days, none during the gap."""
    rows = []
    every = 24 / per_day
    for k in range(int(60 * per_day)):
        start = k * every
        if gap_days[0] * 24 <= start < gap_days[1] * 24:
            continue
        rows.append((at(start), at(start + 0.5), 10.0))
    return make_sessions(rows)


def test_long_silence_at_busy_site_is_an_outage() -> None:
    series = mark_outages(build_demand_series(_busy_site((40, 43)), resolution=HOUR))
    missing = series.filter("is_missing")["interval_start"]
    # the idle run starts after the last session before the gap and ends at the next arrival
    assert missing.min() == at(40 * 24)
    assert missing.max() == at(43 * 24 - 1)
    assert series.filter(~pl.col("is_missing"))["energy_kwh"].sum() == pytest.approx(
        series["energy_kwh"].sum()
    )


@pytest.mark.parametrize(
    ("gap", "per_day"),
    [
        pytest.param((40, 43), 1, id="quiet-site-same-gap"),
        pytest.param((40, 40.75), 24, id="busy-site-short-gap"),
        pytest.param((10, 14), 24, id="gap-without-full-reference-window"),
    ],
)
def test_silences_that_are_not_outages(gap: tuple[float, float], per_day: int) -> None:
    series = mark_outages(build_demand_series(_busy_site(gap, per_day=per_day), resolution=HOUR))
    assert not series["is_missing"].any()


@pytest.mark.shared_data
def test_outage_on_real_perth_gap(shared_data: Path) -> None:
    from forecasting.config import load_sites
    from forecasting.ingest.sessions import read_sessions

    path = shared_data / "sessions" / "perth-kinross" / "electricvehiclechargecorrected.csv"
    read = read_sessions(
        path,
        fmt="chargeplace",
        sites=load_sites(REPO_ROOT / "configs" / "sites.toml"),
        ingested_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    pitlochry = read.sessions.filter(pl.col("site_id") == "rie-achan-road-car-park-pitlochry")
    series = mark_outages(build_demand_series(pitlochry, resolution=HOUR))
    runs = (
        series.with_columns(pl.col("is_missing").rle_id().alias("run"))
        .filter("is_missing")
        .group_by("run")
        .agg(pl.min("interval_start").alias("first"), pl.len().alias("hours"))
    )
    # No session at this site (about 5 a day) from 2017-02-28 19:xx UTC for 24 days.
    gap = runs.filter(pl.col("first") == datetime(2017, 2, 28, 20, tzinfo=UTC))
    assert gap["hours"].to_list() == [569]
    # Nothing else in this file's year is marked: quiet nights and Christmas stay real zeros.
    assert runs.height == 1
