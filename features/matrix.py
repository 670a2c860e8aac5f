"""One builder for the training matrix (many issue times) and the prediction matrix (one).

Training and serving call :func:`build_feature_matrix` with the same arguments except the issue
times, so the two cannot drift apart; :func:`build_feature_matrices` is the same code for
several sites at once (global models, backtests). Target intervals are the grid intervals that
start in ``[issued_at, issued_at + horizon)``; ``step`` numbers them from 0.

Contract of the target (``energy_kwh``)
---------------------------------------
The target is the full-series truth of the target interval from all sessions passed. It is
null when the interval ends after ``known_until`` (default: the latest ``plug_out_at`` passed,
so a prediction matrix built from the sessions known at ``issued_at`` has null targets) or when
the interval lies in an outage (``is_missing``, see :func:`features.outages.mark_outages`).
When fitting at time ``F``, the caller passes only the sessions known at ``F``
(``plug_out_at < F``) and ``known_until=F``, and trains on rows with non-null targets. Sessions
still plugged in at ``F`` are then absent, so targets of the last hours before ``F`` can be
slightly low; a caller that cares drops rows whose target ends within a day of ``F``.

Features never depend on the target: every feature of a row uses only what was known at its
``issued_at`` (see the modules of :mod:`features`), whatever sessions are passed.

Only the sessions the rows need are split into interval contributions
(:func:`features.demand_columns.compute_needed_sessions`): a year of issue times from three years of
sessions costs about as much as a year and three months.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

import numpy as np
import polars as pl

from features.calendar import CALENDAR_FEATURE_COLUMNS, compute_calendar_arrays
from features.demand_columns import compute_demand_columns
from features.lags import LAG_FEATURE_COLUMNS
from features.session_split import Allocation
from features.site import SITE_FEATURE_COLUMNS, build_site_feature_frame
from features.solar_geometry import SOLAR_FEATURE_COLUMNS, add_solar_geometry
from features.time_grid import ONE_US, check_resolution
from features.weather import WEATHER_FEATURE_COLUMNS, add_weather_features
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError, SchemaError
from forecasting.schemas import UTC_DATETIME

KEY_COLUMNS: Final[tuple[str, ...]] = ("site_id", "issued_at", "interval_start", "step")
TARGET_COLUMNS: Final[tuple[str, ...]] = ("energy_kwh", "is_missing")


def feature_columns(*, with_weather: bool = False, with_solar: bool = False) -> tuple[str, ...]:
    """Return the feature columns of :func:`build_feature_matrix`, in order.

    Parameters
    ----------
    with_weather
        Whether the matrix was built with a weather frame (adds the weather columns).
    with_solar
        Whether it has solar geometry (by default sites with a PV system, see
        :func:`build_feature_matrix`).
    """
    return (
        "step",
        *LAG_FEATURE_COLUMNS,
        *CALENDAR_FEATURE_COLUMNS,
        *(SOLAR_FEATURE_COLUMNS if with_solar else ()),
        *SITE_FEATURE_COLUMNS,
        *(WEATHER_FEATURE_COLUMNS if with_weather else ()),
    )


def _issue_times_us(issue_times: Sequence[datetime] | pl.Series) -> np.ndarray:
    """Return the issue times as sorted unique [us since epoch, UTC] (int64)."""
    series = issue_times if isinstance(issue_times, pl.Series) else pl.Series(list(issue_times))
    dtype = series.dtype
    if series.is_empty():
        return np.zeros(0, dtype=np.int64)
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None or series.has_nulls():
        msg = (
            f"issue_times must be timezone-aware datetimes without nulls, got dtype {dtype!r}; "
            "pass UTC datetimes such as datetime(2018, 3, 25, tzinfo=UTC)"
        )
        raise SchemaError(msg)
    return np.unique(series.dt.epoch("us").to_numpy())


def compute_target_rows(
    issues_us: np.ndarray, *, horizon: timedelta, resolution: timedelta
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return one row per issue time and target interval in ``[issued_at, issued_at + horizon)``.

    Parameters
    ----------
    issues_us
        Sorted unique issue times [us since epoch, UTC].
    horizon
        Length of the forecast horizon.
    resolution
        Interval length of the grid (divides one day; intervals are aligned to UTC midnight).

    Returns
    -------
    tuple of numpy.ndarray
        Per row, sorted by issue time then interval: the position of its issue time in
        ``issues_us``, the start of its target interval [us since epoch, UTC] (at or after the
        issue time) and its 0-based horizon ``step`` [-].
    """
    step = resolution // ONE_US
    first = ((issues_us - 1) // step + 1) * step  # first interval starting at or after issue
    last = (issues_us + horizon // ONE_US - 1) // step * step
    counts = np.maximum((last - first) // step + 1, 0)
    issue = np.repeat(np.arange(issues_us.size), counts)
    steps = np.arange(issue.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return issue, first[issue] + steps * step, steps


def _key_frame(issued_us: np.ndarray, interval_us: np.ndarray, steps: np.ndarray) -> pl.DataFrame:
    """``issued_at``, ``interval_start`` [UTC] and ``step`` of target rows, as a frame."""
    return pl.DataFrame(
        [
            pl.Series("issued_at", issued_us).cast(UTC_DATETIME),
            pl.Series("interval_start", interval_us).cast(UTC_DATETIME),
            pl.Series("step", steps, dtype=pl.Int32),
        ]
    )


def build_feature_matrix(
    sessions: pl.LazyFrame | pl.DataFrame,
    *,
    site: SiteConfig,
    issue_times: Sequence[datetime] | pl.Series,
    horizon: timedelta,
    resolution: timedelta,
    weather: pl.DataFrame | None = None,
    allocation: Allocation = "uniform",
    observations_stand_in: bool = False,
    known_until: datetime | None = None,
    solar_geometry: bool | None = None,
) -> pl.DataFrame:
    """Build the feature matrix of one site for many issue times (training) or one (serving).

    Parameters
    ----------
    sessions
        Sessions (``SESSIONS_SCHEMA``); rows of other sites are ignored. May include sessions
        not known at some issue times: each row uses only sessions with
        ``plug_out_at < issued_at``.
    site
        The site: time zone, holidays, location, chargers.
    issue_times
        Issue times [UTC, timezone-aware]; duplicates are dropped, rows come out sorted.
    horizon
        Length of the forecast horizon; targets start in ``[issued_at, issued_at + horizon)``.
    resolution
        Interval length of the demand grid (divides one day).
    weather
        Weather (``WEATHER_SCHEMA``) of this and maybe other sites; None for no weather columns.
    allocation
        Energy allocation of sessions (``"uniform"`` or ``"front_loaded"``); front-loaded
        uses the site's highest rated charger power for sessions without ``max_power_kw``.
    observations_stand_in
        Let weather observations stand in for missing forecasts (marked per row).
    known_until
        End of the known data [UTC]: targets of intervals ending after it are null.
    solar_geometry
        Add solar position and clear-sky irradiance (pvlib, about 30 ms per site-year of
        hourly rows); default: only for sites with a PV system.

    Returns
    -------
    polars.DataFrame
        One row per (``issued_at``, ``interval_start``): :data:`KEY_COLUMNS`, ``energy_kwh``
        [kWh] target, ``is_missing``, then :func:`feature_columns` (``step`` only once).
    """
    return build_feature_matrices(
        sessions,
        sites=[site],
        issue_times=issue_times,
        horizon=horizon,
        resolution=resolution,
        weather=weather,
        allocation=allocation,
        observations_stand_in=observations_stand_in,
        known_until=known_until,
        solar_geometry=solar_geometry,
    )


def _calendar_columns(times: np.ndarray, sites: Sequence[SiteConfig]) -> list[pl.Series]:
    """Calendar columns of target rows starting at ``times`` [us], for each site in turn.

    Computed once per unique target time and per time zone and holiday calendar.
    """
    if times.size < 2 or bool((times[1:] > times[:-1]).all()):
        unique, inverse = times, None  # sorted and unique already (issues a horizon apart)
    else:
        unique, inverse = np.unique(times, return_inverse=True)
    calendars: dict[tuple[str, str | None, str | None], dict[str, pl.Series]] = {}
    for site in sites:
        key = (site.timezone, site.country, site.subdivision)
        if key not in calendars:
            arrays = compute_calendar_arrays(unique, site=site)
            calendars[key] = {
                name: pl.Series(name, values if inverse is None else values[inverse])
                for name, values in arrays.items()
            }
    keys = [(s.timezone, s.country, s.subdivision) for s in sites]
    return [
        pl.concat([calendars[key][name] for key in keys], rechunk=True)
        for name in CALENDAR_FEATURE_COLUMNS
    ]


def _site_columns(sites: Sequence[SiteConfig], rows: int) -> dict[str, pl.Series]:
    """``site_id`` and the site features, each site's values on ``rows`` rows, site after site."""
    index = pl.Series(np.repeat(np.arange(len(sites), dtype=np.uint32), rows))
    return build_site_feature_frame(sites)[index].to_dict()


def build_feature_matrices(
    sessions: pl.LazyFrame | pl.DataFrame,
    *,
    sites: Sequence[SiteConfig],
    issue_times: Sequence[datetime] | pl.Series,
    horizon: timedelta,
    resolution: timedelta,
    weather: pl.DataFrame | None = None,
    allocation: Allocation = "uniform",
    observations_stand_in: bool = False,
    known_until: datetime | None = None,
    solar_geometry: bool | None = None,
) -> pl.DataFrame:
    """Build the feature matrices of several sites in one pass (for global models, backtests).

    Same parameters and rows as :func:`build_feature_matrix` (which calls this with one site),
    for every site in ``sites``, in that order. Sessions are split into contributions once and
    calendar features are computed once per time zone and holiday calendar. ``known_until``
    applies to every site (default: each site's latest ``plug_out_at``); solar geometry is
    added to all sites when ``solar_geometry`` is true, or by default when any site has PV,
    so the columns are the same for every site.
    """
    check_resolution(resolution)
    if horizon <= timedelta(0):
        msg = f"horizon {horizon!r} must be positive, e.g. timedelta(hours=24)"
        raise ConfigError(msg)
    if not sites:
        msg = "sites is empty; pass at least one SiteConfig"
        raise ConfigError(msg)
    issues_us = _issue_times_us(issue_times)
    issue, interval_us, steps = compute_target_rows(
        issues_us, horizon=horizon, resolution=resolution
    )
    base = _key_frame(issues_us[issue], interval_us, steps)
    demand = compute_demand_columns(
        sessions,
        issue=issue,
        interval_us=interval_us,
        issues_us=issues_us,
        sites=sites,
        allocation=allocation,
        resolution=resolution,
        known_until=known_until,
    )
    repeated = {name: pl.concat([base[name]] * len(sites), rechunk=True) for name in base.columns}
    site_columns = _site_columns(sites, base.height)
    calendar = _calendar_columns(interval_us, sites)
    frame = pl.DataFrame(
        [
            site_columns["site_id"],
            *(repeated[name] for name in KEY_COLUMNS[1:]),
            *demand.values(),
            *calendar,
            *(site_columns[name] for name in SITE_FEATURE_COLUMNS),
        ]
    )
    with_solar = any(s.pv is not None for s in sites) if solar_geometry is None else solar_geometry
    frames = [frame]
    if with_solar or weather is not None:
        frames = [frame.slice(i * base.height, base.height) for i in range(len(sites))]
    for i, site in enumerate(sites):
        if with_solar:
            frames[i] = add_solar_geometry(frames[i], site=site, resolution=resolution)
        if weather is not None:
            frames[i] = add_weather_features(
                frames[i],
                weather=weather.filter(pl.col("site_id") == site.site_id),
                resolution=resolution,
                observations_stand_in=observations_stand_in,
            )
    if with_solar or weather is not None:
        columns = feature_columns(with_weather=weather is not None, with_solar=with_solar)
        frames = [part.select(*KEY_COLUMNS, *TARGET_COLUMNS, *columns[1:]) for part in frames]
    return pl.concat(frames) if len(frames) > 1 else frames[0]
