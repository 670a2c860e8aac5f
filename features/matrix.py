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
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final, cast

import numpy as np
import polars as pl

from features.calendar import CALENDAR_FEATURE_COLUMNS, add_calendar_features
from features.demand_series import Allocation, build_session_contributions, check_resolution
from features.lags import LAG_FEATURE_COLUMNS, compute_lag_features
from features.outages import compute_outage_mask
from features.site import SITE_FEATURE_COLUMNS, add_site_features
from features.solar_geometry import SOLAR_FEATURE_COLUMNS, add_solar_geometry
from features.weather import WEATHER_FEATURE_COLUMNS, add_weather_features
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError, SchemaError
from forecasting.schemas import UTC_DATETIME

KEY_COLUMNS: Final[tuple[str, ...]] = ("site_id", "issued_at", "interval_start", "step")
TARGET_COLUMNS: Final[tuple[str, ...]] = ("energy_kwh", "is_missing")
_ONE_US: Final = timedelta(microseconds=1)


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


def _issue_series(issue_times: Sequence[datetime] | pl.Series) -> pl.Series:
    series = issue_times if isinstance(issue_times, pl.Series) else pl.Series(list(issue_times))
    dtype = series.dtype
    if series.is_empty():
        return pl.Series("issued_at", [], dtype=UTC_DATETIME)
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None or series.has_nulls():
        msg = (
            f"issue_times must be timezone-aware datetimes without nulls, got dtype {dtype!r}; "
            "pass UTC datetimes such as datetime(2018, 3, 25, tzinfo=UTC)"
        )
        raise SchemaError(msg)
    utc = series.dt.convert_time_zone("UTC").cast(UTC_DATETIME)
    return utc.unique().sort().alias("issued_at")


def build_targets(
    issue_times: pl.Series, *, horizon: timedelta, resolution: timedelta
) -> pl.DataFrame:
    """Build one row per issue time and target interval in ``[issued_at, issued_at + horizon)``.

    Returns
    -------
    polars.DataFrame
        ``issued_at``, ``interval_start`` (grid intervals starting at or after
        ``issued_at``), ``step`` [-] 0-based horizon step.
    """
    first = (pl.col("issued_at") - _ONE_US).dt.truncate(resolution) + resolution
    last = (pl.col("issued_at") + horizon - _ONE_US).dt.truncate(resolution)
    return (
        pl.DataFrame({"issued_at": issue_times})
        .with_columns(first.alias("_first"), last.alias("_last"))
        .filter(pl.col("_last") >= pl.col("_first"))
        .with_columns(
            pl.datetime_ranges("_first", "_last", resolution).alias("interval_start"),
        )
        .explode("interval_start")
        .select(
            "issued_at",
            "interval_start",
            (
                (pl.col("interval_start") - pl.col("_first")).dt.total_microseconds()
                // (resolution // _ONE_US)
            )
            .cast(pl.Int32)
            .alias("step"),
        )
    )


def _sessions_of(
    sessions: pl.LazyFrame | pl.DataFrame, sites: Sequence[SiteConfig], *, allocation: str
) -> pl.DataFrame:
    """Sessions of ``sites``; front-loaded: a missing rated power is the site's highest."""
    frame = (
        sessions.lazy()
        .filter(pl.col("site_id").is_in([site.site_id for site in sites]))
        .with_columns(pl.col("plug_in_at", "plug_out_at").cast(UTC_DATETIME))
    )
    if allocation == "front_loaded":
        rated = pl.DataFrame(
            {
                "site_id": [site.site_id for site in sites],
                "_rated_kw": [
                    max((g.power_kw for g in site.chargers), default=None) for site in sites
                ],
            },
            schema={"site_id": pl.String, "_rated_kw": pl.Float64},
        )
        if "max_power_kw" not in frame.collect_schema():
            frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("max_power_kw"))
        frame = (
            frame.join(rated.lazy(), on="site_id", how="left")
            .with_columns(pl.coalesce("max_power_kw", "_rated_kw").alias("max_power_kw"))
            .drop("_rated_kw")
        )
    return frame.collect()


def _compute_targets(
    interval_start: pl.Series,
    *,
    contributions: pl.DataFrame,
    resolution: timedelta,
    known_until: datetime | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Full-series truth [kWh] (NaN after ``known_until`` and in outages) and ``is_missing``.

    The series is summed densely from the first contribution up to ``known_until``, and the
    outage rule is :func:`features.outages.compute_outage_mask`, the one
    :func:`~features.outages.mark_outages` applies.
    """
    rows = interval_start.len()
    if known_until is None and contributions.height:
        known_until = cast("datetime", contributions["known_at"].max())
    if known_until is None or contributions.is_empty():
        return np.full(rows, np.nan), np.zeros(rows, dtype=bool)
    step_us = resolution // _ONE_US
    interval = contributions["interval_start"].dt.epoch("us").to_numpy()
    origin = int(interval.min())
    until_us = int(pl.Series([known_until]).cast(UTC_DATETIME).dt.epoch("us").item())
    length = max(1, -(-(until_us - origin) // step_us))
    index = (interval - origin) // step_us
    keep = index < length

    def total(column: str) -> np.ndarray:
        weights = contributions[column].cast(pl.Float64).to_numpy()[keep]
        return np.bincount(index[keep], weights=weights, minlength=length)

    energy = total("energy_kwh")
    missing = compute_outage_mask(
        total("arrivals"), total("occupied_connectors"), resolution=resolution
    )
    target = (interval_start.dt.epoch("us").to_numpy() - origin) // step_us
    inside = (target >= 0) & (target < length)
    at = np.clip(target, 0, length - 1)
    is_missing = inside & missing[at]
    known = (target + 1) * step_us + origin <= until_us
    value = np.where(inside, energy[at], 0.0)
    return np.where(known & ~is_missing, value, np.nan), is_missing


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


def _site_rows(
    base: pl.DataFrame,
    *,
    site: SiteConfig,
    contributions: pl.DataFrame,
    resolution: timedelta,
    known_until: datetime | None,
) -> pl.DataFrame:
    """One site's rows: shared calendar rows plus its targets, lags and site features."""
    energy, is_missing = _compute_targets(
        base["interval_start"],
        contributions=contributions,
        resolution=resolution,
        known_until=known_until,
    )
    lags = compute_lag_features(
        base["issued_at"],
        base["interval_start"],
        contributions=contributions,
        resolution=resolution,
    )
    own = pl.DataFrame(
        [
            pl.Series("site_id", [site.site_id], dtype=pl.String).new_from_index(0, base.height),
            pl.Series("energy_kwh", energy, dtype=pl.Float64, nan_to_null=True),
            pl.Series("is_missing", is_missing, dtype=pl.Boolean),
            *(
                pl.Series(name, lags[name], dtype=pl.Float64, nan_to_null=True)
                for name in LAG_FEATURE_COLUMNS
            ),
        ]
    )
    return add_site_features(pl.concat([base, own], how="horizontal"), site=site)


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
    base = build_targets(_issue_series(issue_times), horizon=horizon, resolution=resolution)
    contributions = build_session_contributions(
        _sessions_of(sessions, sites, allocation=allocation),
        resolution=resolution,
        allocation=allocation,
    ).collect()
    by_site = contributions.partition_by("site_id", as_dict=True)
    calendars: dict[tuple[str, str | None, str | None], pl.DataFrame] = {}
    with_solar = any(s.pv is not None for s in sites) if solar_geometry is None else solar_geometry
    frames = []
    for site in sites:
        key = (site.timezone, site.country, site.subdivision)
        if key not in calendars:
            calendars[key] = add_calendar_features(base, site=site)
        frame = _site_rows(
            calendars[key],
            site=site,
            contributions=by_site.get((site.site_id,), contributions.clear()),
            resolution=resolution,
            known_until=known_until,
        )
        if with_solar:
            frame = add_solar_geometry(frame, site=site, resolution=resolution)
        if weather is not None:
            frame = add_weather_features(
                frame,
                weather=weather.filter(pl.col("site_id") == site.site_id),
                resolution=resolution,
                observations_stand_in=observations_stand_in,
            )
        frames.append(frame)
    columns = feature_columns(with_weather=weather is not None, with_solar=with_solar)
    selected = [frame.select(*KEY_COLUMNS, *TARGET_COLUMNS, *columns[1:]) for frame in frames]
    return pl.concat(selected)
