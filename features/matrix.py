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
from typing import Final

import numpy as np
import polars as pl

from features.calendar import CALENDAR_FEATURE_COLUMNS, add_calendar_features
from features.demand_series import Allocation, check_resolution, compute_contribution_arrays
from features.lags import LAG_FEATURE_COLUMNS, SiteContributions, compute_site_lag_features
from features.outages import compute_outage_masks
from features.site import SITE_FEATURE_COLUMNS, build_site_feature_frame
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


def _per_site(values: np.ndarray, site: np.ndarray, *, sites: int, reduce: np.ufunc) -> np.ndarray:
    """Reduce ``values`` per site number with ``reduce`` (min or max); sites without any: 0."""
    fill = np.iinfo(np.int64).max if reduce is np.minimum else np.iinfo(np.int64).min
    result = np.full(sites, fill, dtype=np.int64)
    reduce.at(result, site, values)
    return np.where(np.bincount(site, minlength=sites) > 0, result, 0)


def _compute_targets(
    row_site: np.ndarray,
    row_interval_us: np.ndarray,
    *,
    parts: dict[str, np.ndarray],
    sites: int,
    resolution: timedelta,
    known_until: datetime | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Full-series truth [kWh] (NaN after ``known_until`` and in outages) and ``is_missing``.

    Each site's series is summed densely from its first contribution up to ``known_until``
    (default: its latest ``plug_out_at``), and the outage rule is
    :func:`features.outages.compute_outage_masks`, the one :func:`~features.outages.mark_outages`
    applies. ``parts`` are contribution arrays with their site number in ``site``.
    """
    step_us = resolution // _ONE_US
    site, start = parts["site"], parts["start"]
    has = np.bincount(site, minlength=sites) > 0
    origin = _per_site(start, site, sites=sites, reduce=np.minimum)
    until = _per_site(parts["known_at"], site, sites=sites, reduce=np.maximum)
    if known_until is not None:
        until[:] = pl.Series([known_until]).cast(UTC_DATETIME).dt.epoch("us").item()
    length = np.maximum(1, -(-(until - origin) // step_us))
    offset = np.cumsum(length) - length
    flat = offset[site] + (start - origin[site]) // step_us
    keep = flat < (offset + length)[site]
    flat = flat if keep.all() else flat[keep]

    def total(column: str) -> np.ndarray:
        weights = parts[column] if flat.size == keep.size else parts[column][keep]
        return np.bincount(flat, weights=weights.astype(np.float64), minlength=int(length.sum()))

    energy, arrivals, occupied = total("energy"), total("arrival"), total("occupied")
    missing = compute_outage_masks(arrivals, occupied, lengths=length, resolution=resolution)
    target = (row_interval_us - origin[row_site]) // step_us
    inside = (target >= 0) & (target < length[row_site]) & has[row_site]
    at = offset[row_site] + np.clip(target, 0, length[row_site] - 1)
    is_missing = inside & missing[at]
    known = ((target + 1) * step_us + origin[row_site] <= until[row_site]) & has[row_site]
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


def _site_columns(
    sessions: pl.DataFrame,
    base: pl.DataFrame,
    *,
    sites: Sequence[SiteConfig],
    allocation: Allocation,
    resolution: timedelta,
    known_until: datetime | None,
) -> pl.DataFrame:
    """Per site, one after another, the rows of ``base``: site, target, lags, site features."""
    ids = list(dict.fromkeys(site.site_id for site in sites))
    parts = compute_contribution_arrays(sessions, resolution=resolution, allocation=allocation)
    session_site = sessions["site_id"].cast(pl.Enum(ids)).to_physical().to_numpy()
    parts["site"] = session_site.astype(np.int64)[parts["row"]]
    position = np.repeat(np.arange(len(sites)), base.height)
    row_site = np.array([ids.index(site.site_id) for site in sites], dtype=np.int64)[position]
    issues_us = base["issued_at"].unique(maintain_order=True).dt.epoch("us").to_numpy()
    issue = np.tile(
        np.searchsorted(issues_us, base["issued_at"].dt.epoch("us").to_numpy()), len(sites)
    )
    interval_us = np.tile(base["interval_start"].dt.epoch("us").to_numpy(), len(sites))
    energy, is_missing = _compute_targets(
        row_site, interval_us, parts=parts, sites=len(ids), resolution=resolution,
        known_until=known_until,
    )  # fmt: skip
    known = SiteContributions(
        parts["site"], parts["start"], parts["known_at"], parts["energy"], parts["arrival"]
    )
    lags = compute_site_lag_features(
        row_site, issue, interval_us, issues_us=issues_us, contributions=known,
        sites=len(ids), resolution=resolution,
    )  # fmt: skip
    return build_site_feature_frame(sites)[position].with_columns(
        pl.Series("energy_kwh", energy, dtype=pl.Float64, nan_to_null=True),
        pl.Series("is_missing", is_missing, dtype=pl.Boolean),
        *(
            pl.Series(name, lags[name], dtype=pl.Float64, nan_to_null=True)
            for name in LAG_FEATURE_COLUMNS
        ),
    )


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
    calendars: dict[tuple[str, str | None, str | None], pl.DataFrame] = {}
    for site in sites:
        key = (site.timezone, site.country, site.subdivision)
        if key not in calendars:
            calendars[key] = add_calendar_features(base, site=site)
    frame = pl.concat(
        [
            pl.concat(
                [calendars[(s.timezone, s.country, s.subdivision)] for s in sites], rechunk=True
            ),
            _site_columns(
                _sessions_of(sessions, sites, allocation=allocation), base, sites=sites,
                allocation=allocation, resolution=resolution, known_until=known_until,
            ),
        ],
        how="horizontal",
    )  # fmt: skip
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
    columns = feature_columns(with_weather=weather is not None, with_solar=with_solar)
    selected = [part.select(*KEY_COLUMNS, *TARGET_COLUMNS, *columns[1:]) for part in frames]
    return pl.concat(selected) if len(selected) > 1 else selected[0]
