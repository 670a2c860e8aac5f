from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.demand_series import build_demand_series
from features.outages import compute_outage_mask, compute_outage_masks, mark_outages
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


@settings(max_examples=60, deadline=None)
@given(
    sites=st.lists(
        st.lists(st.integers(0, 2).map(lambda n: n * (n - 1)), max_size=40), min_size=1, max_size=4
    )
)
def test_sites_end_to_end_equal_one_site_at_a_time(sites: list[list[int]]) -> None:
    # arrivals 0 or 2 (mostly 0, so idle runs form), also at the joins between sites
    rule = {
        "resolution": HOUR,
        "min_gap": timedelta(hours=3),
        "reference": timedelta(hours=4),
        "min_expected_arrivals": 1.0,
    }
    arrays = [np.array(site, dtype=np.float64) for site in sites]
    alone = [compute_outage_mask(a, a / 2, **rule) for a in arrays]
    joined = np.concatenate(arrays)
    together = compute_outage_masks(
        joined, joined / 2, lengths=np.array([a.size for a in arrays]), **rule
    )
    np.testing.assert_array_equal(together, np.concatenate([*alone, np.zeros(0, dtype=bool)]))


def test_an_idle_run_does_not_continue_into_the_next_site() -> None:
    busy_then_idle = np.array([2.0] * 4 + [0.0] * 3)
    idle = np.zeros(5)
    rule = {"resolution": HOUR, "min_gap": timedelta(hours=3), "reference": timedelta(hours=4)}
    mask = compute_outage_masks(
        np.concatenate([busy_then_idle, idle]),
        np.zeros(12),
        lengths=np.array([7, 5]),
        min_expected_arrivals=1.0,
        **rule,
    )
    # the first site's last 3 h are an outage; the second site has no reference window yet
    assert mask.tolist() == [False] * 4 + [True] * 3 + [False] * 5
