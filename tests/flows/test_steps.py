"""Site-level steps of the flows, tested directly (no Prefect)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_series_equal

from flows.steps import build_interval_starts, select_sites
from forecasting.config import SiteConfig
from forecasting.errors import UnknownSiteError
from forecasting.schemas import UTC_DATETIME

A = SiteConfig(site_id="a", name="A", latitude=56.0, longitude=-3.0, timezone="Europe/London")
B = SiteConfig(site_id="b", name="B", latitude=56.0, longitude=-3.0, timezone="Europe/London")
SESSIONS = pl.DataFrame({"site_id": ["b", "b"]})


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        pytest.param((), [B], id="sites-with-sessions"),
        pytest.param(("a",), [A], id="asked-for"),
    ],
)
def test_select_sites(wanted: tuple[str, ...], expected: list[SiteConfig]) -> None:
    assert select_sites([A, B], SESSIONS, wanted=wanted) == expected


def test_select_unknown_site_names_it() -> None:
    with pytest.raises(UnknownSiteError, match=r"\['zz'\]"):
        select_sites([A, B], SESSIONS, wanted=("zz",))


def test_interval_starts_cover_horizon_from_issue_time() -> None:
    issued = datetime(2019, 3, 31, tzinfo=UTC)  # a DST day in Europe/London: still 24 UTC hours
    starts = build_interval_starts(
        issued, horizon=timedelta(hours=24), resolution=timedelta(hours=1)
    )
    expected = pl.Series(
        "interval_start", [issued + timedelta(hours=h) for h in range(24)], dtype=UTC_DATETIME
    )
    assert_series_equal(starts, expected)
