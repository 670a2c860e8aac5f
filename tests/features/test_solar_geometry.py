from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd  # noqa: TID251 - pvlib boundary, the reference computation
import polars as pl
import pytest
from pvlib.location import Location

from features.solar_geometry import (
    SOLAR_FEATURE_COLUMNS,
    add_decomposed_irradiance,
    add_solar_geometry,
)
from forecasting.config import SiteConfig
from forecasting.errors import SchemaError


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


@pytest.mark.parametrize(
    "day",
    [
        pytest.param(datetime(2015, 3, 1, 12, tzinfo=UTC), id="common-year"),
        pytest.param(datetime(2016, 3, 1, 12, tzinfo=UTC), id="leap-year"),
    ],
)
def test_clear_sky_matches_pvlib_default_linke_lookup(site: SiteConfig, day: datetime) -> None:
    # the cached daily Linke table must equal pvlib's own interpolation, which treats leap and
    # common years apart (1 March is day 60 in one, 61 in the other)
    times = [day + timedelta(hours=h) for h in range(-3, 4)]
    got = add_solar_geometry(_frame(times), site=site)
    location = Location(site.latitude, site.longitude, tz="UTC", altitude=site.altitude_m)
    index = pd.DatetimeIndex([t.replace(tzinfo=None) for t in times]).tz_localize("UTC")
    position = location.get_solarposition(index, method="ephemeris")
    expected = location.get_clearsky(index, model="ineichen", solar_position=position)
    # same pvlib arithmetic on the same inputs: only float rounding may differ
    np.testing.assert_allclose(got["clearsky_ghi"].to_numpy(), expected["ghi"], rtol=1e-9)
    np.testing.assert_allclose(got["clearsky_dni"].to_numpy(), expected["dni"], rtol=1e-9)


def test_columns_selects_geometry_and_extraterrestrial_irradiance(site: SiteConfig) -> None:
    frame = _frame([datetime(2018, 1, 3, 12, tzinfo=UTC), None])
    got = add_solar_geometry(frame, site=site, columns=("dni_extra", "solar_zenith"))
    assert got.columns == ["interval_start", "dni_extra", "solar_zenith"]
    # perihelion (3 January, 0.9833 AU): 1366.1 W/m^2 (pvlib's solar constant) / 0.9833^2 =
    # 1412.9 W/m^2; Spencer's series that pvlib uses agrees to within a few W/m^2
    assert got["dni_extra"][0] == pytest.approx(1412.9, abs=3.0)
    assert got["solar_zenith"][1] is None  # a null stamp gives null geometry


def test_unknown_geometry_column_is_a_schema_error(site: SiteConfig) -> None:
    with pytest.raises(SchemaError, match=r"unknown solar geometry columns \['ghi_clear'\]"):
        add_solar_geometry(_frame([]), site=site, columns=("ghi_clear",))


def test_decomposition_fills_only_missing_components() -> None:
    frame = pl.DataFrame(
        {
            "interval_start": [datetime(2016, 7, 15, 19, tzinfo=UTC)] * 2,
            "ghi": [800.0, 800.0],
            "dni": [None, 700.0],
            "dhi": [None, 150.0],
            "solar_zenith": [20.0, 20.0],
        },
        schema_overrides={"interval_start": pl.Datetime("us", "UTC")},
    )
    got = add_decomposed_irradiance(frame)
    assert got["decomposed"].to_list() == [True, False]
    assert got.row(1, named=True)["dni"] == 700.0
    filled = got.row(0, named=True)
    # closure of Erbs' split: ghi = dni cos(zenith) + dhi, cos(20 deg) = 0.9397
    assert filled["dni"] * 0.9397 + filled["dhi"] == pytest.approx(800.0, rel=1e-3)
