from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from features.solar_geometry import SOLAR_FEATURE_COLUMNS, add_solar_geometry
from forecasting.config import SiteConfig


def _frame(times: list[datetime]) -> pl.DataFrame:
    return pl.DataFrame(
        {"interval_start": times}, schema={"interval_start": pl.Datetime("us", "UTC")}
    )


def test_solar_noon_at_midsummer_in_perth(site: SiteConfig) -> None:
    # Solar noon at longitude -3.48 deg is about 12:14 UTC on 2018-06-21.
    frame = _frame(
        [datetime(2018, 6, 21, 12, 14, tzinfo=UTC), datetime(2018, 6, 21, 0, tzinfo=UTC)]
    )
    noon, night = add_solar_geometry(frame, site=site).to_dicts()
    # zenith = latitude - declination = 56.39 - 23.44 = 32.95 deg (refraction lowers it ~0.02)
    assert noon["solar_zenith"] == pytest.approx(32.95, abs=0.1)
    assert noon["solar_azimuth"] == pytest.approx(180.0, abs=1.0)
    # Ineichen clear sky at that sun height: roughly 800-900 W/m^2 global horizontal
    assert 750.0 < noon["clearsky_ghi"] < 950.0
    assert noon["clearsky_ghi"] == pytest.approx(
        noon["clearsky_dni"] * 0.8390 + noon["clearsky_dhi"], rel=0.01
    )  # ghi = dni * cos(zenith) + dhi, cos(32.95 deg) = 0.839
    assert night["clearsky_ghi"] == 0.0
    assert night["solar_zenith"] > 90.0


def test_resolution_evaluates_at_interval_midpoint(site: SiteConfig) -> None:
    start = datetime(2018, 6, 21, 11, 44, tzinfo=UTC)
    midpoint = add_solar_geometry(_frame([start]), site=site, resolution=timedelta(hours=1))
    direct = add_solar_geometry(_frame([start + timedelta(minutes=30)]), site=site)
    assert midpoint["solar_zenith"].item() == pytest.approx(direct["solar_zenith"].item())
    assert list(midpoint.columns[1:]) == list(SOLAR_FEATURE_COLUMNS)


def test_altitude_raises_clear_sky_irradiance(site: SiteConfig) -> None:
    frame = _frame([datetime(2018, 6, 21, 12, tzinfo=UTC)])
    high = site.model_copy(update={"altitude_m": 2000.0})
    low_ghi = add_solar_geometry(frame, site=site)["clearsky_ghi"].item()
    high_ghi = add_solar_geometry(frame, site=high)["clearsky_ghi"].item()
    assert high_ghi > low_ghi * 1.03  # thinner atmosphere: a few percent more at 2 km
