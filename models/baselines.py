"""Baseline demand forecasters: seasonal naive (a week earlier) and persistence (a day earlier).

Both forecast an interval by the energy [kWh] of the same site-local wall-clock interval
``lag_days`` earlier, in the demand series *as known at* ``issued_at``: built by
:func:`features.demand_series.build_demand_series` from the sessions the caller passes, which
must be only those that ended before ``issued_at`` (the baselines also drop any others). Where
that lag is not known yet (its interval ends after ``issued_at``, e.g. a day earlier for hours
more than 24 h ahead) or is missing in the data (an outage by
:func:`features.demand_series.mark_outages`), the latest known same-time value is used instead
(2, 3, ... lags back) and ``note`` says so. Local wall-clock lags keep the same hour of day
across DST changes; an interval that does not exist locally on the earlier day maps to the
next one that does (polars ``offset_by``).

Quantiles (documented choice): ``p50`` is the lagged value itself. ``p10``/``p90`` add the
10th/90th percentiles of the errors this same rule made over the ``spread_days`` before the fit
time, per site-local hour of day (all hours pooled where an hour has fewer than
``min_samples`` errors), clipped so that ``0 <= p10 <= p50 <= p90``. With no error history the
forecast is a point forecast (``p10 = p50 = p90``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Self, cast

import polars as pl

from features.demand_series import build_demand_series, mark_outages
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError, ForecastingError, NotFittedError

_MAX_EXTRA_LAGS: Final = 3
"""How many further lags back to look when a lag is unknown or missing, beyond the horizon's."""


class LagBaseline:
    """Forecast by the same local interval ``lag_days`` earlier, with an empirical spread.

    Parameters
    ----------
    name
        Written to the ``model`` column.
    lag_days
        Lag [d], in site-local calendar days.
    resolution
        Interval length of the demand series.
    spread_days
        History used at fit time to estimate the error quantiles [d].
    min_samples
        Fewest errors per hour of day for a per-hour spread [-].
    """

    def __init__(
        self,
        *,
        name: str,
        lag_days: int,
        resolution: timedelta = timedelta(hours=1),
        spread_days: int = 28,
        min_samples: int = 8,
    ) -> None:
        if lag_days < 1 or spread_days < 0 or resolution <= timedelta(0):
            msg = (
                f"invalid baseline {name!r}: lag_days={lag_days!r}, spread_days={spread_days!r}, "
                f"resolution={resolution!r}; use a lag of at least one day"
            )
            raise ConfigError(msg)
        self.name = name
        self.lag_days = lag_days
        self.resolution = resolution
        self.spread_days = spread_days
        self.min_samples = min_samples

    def fit(
        self,
        sessions: pl.DataFrame,
        *,
        site: SiteConfig,
        issued_at: datetime,
        weather: pl.DataFrame | None = None,
    ) -> Self:
        """Learn the error quantiles per local hour from sessions known at ``issued_at``.

        Raises :class:`ForecastingError` when no session of the site is known.
        """
        del weather  # baselines use no weather
        known = _known_sessions(sessions, site=site, issued_at=issued_at)
        self.site_id_ = site.site_id
        start = issued_at - timedelta(days=self.spread_days)
        history = _lagged(
            _known_series(
                known,
                start=start - timedelta(days=self.lag_days),
                issued_at=issued_at,
                resolution=self.resolution,
            ),
            site=site,
            lag_days=self.lag_days,
            issued_at=issued_at,
            resolution=self.resolution,
            extra_lags=0,
        )
        errors = history.filter(pl.col("interval_start") >= start).select(
            _local_hour(site),
            (pl.col("energy_kwh") - pl.col("lagged_kwh")).alias("error"),
        )
        self.spread_ = _spread_by_hour(errors.drop_nulls(), min_samples=self.min_samples)
        return self

    def predict(
        self,
        sessions: pl.DataFrame,
        *,
        site: SiteConfig,
        issued_at: datetime,
        interval_starts: pl.Series,
        weather: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """Forecast the intervals ``interval_starts`` [UTC] in [kWh] per interval.

        Returns ``interval_start``, ``p10``, ``p50``, ``p90`` and ``note`` (null, or which
        lag stood in for an unknown one).
        """
        del weather
        if not hasattr(self, "spread_"):
            msg = f"{self.name} baseline is not fitted; call fit before predict"
            raise NotFittedError(msg)
        known = _known_sessions(sessions, site=site, issued_at=issued_at)
        targets = pl.DataFrame({"interval_start": interval_starts}).cast(
            {"interval_start": pl.Datetime("us", "UTC")}
        )
        horizon = cast("datetime", targets["interval_start"].max()) - issued_at + self.resolution
        extra = horizon // timedelta(days=self.lag_days) + _MAX_EXTRA_LAGS
        start = issued_at - timedelta(days=self.lag_days * (extra + 1))
        series = _known_series(known, start=start, issued_at=issued_at, resolution=self.resolution)
        lagged = _lagged(
            series,
            targets=targets,
            site=site,
            lag_days=self.lag_days,
            issued_at=issued_at,
            resolution=self.resolution,
            extra_lags=extra,
        )
        return _add_quantiles(lagged.with_columns(_local_hour(site)), self.spread_, name=self.name)


class SeasonalNaive(LagBaseline):
    """The same local interval a week earlier (see the module docstring for quantiles)."""

    def __init__(self, *, resolution: timedelta = timedelta(hours=1), spread_days: int = 28):
        super().__init__(
            name="seasonal_naive", lag_days=7, resolution=resolution, spread_days=spread_days
        )


class Persistence(LagBaseline):
    """The same local interval a day earlier (see the module docstring for quantiles)."""

    def __init__(self, *, resolution: timedelta = timedelta(hours=1), spread_days: int = 28):
        super().__init__(
            name="persistence", lag_days=1, resolution=resolution, spread_days=spread_days
        )


def _known_sessions(
    sessions: pl.DataFrame, *, site: SiteConfig, issued_at: datetime
) -> pl.DataFrame:
    """Return the site's sessions that ended before ``issued_at``; raise when there are none."""
    known = sessions.filter(
        (pl.col("site_id") == site.site_id) & (pl.col("plug_out_at") < issued_at)
    )
    if known.is_empty():
        msg = (
            f"no session of site {site.site_id!r} ended before {issued_at.isoformat()}; "
            "a baseline needs some history: start the backtest later or ingest more sessions"
        )
        raise ForecastingError(msg)
    return known


def _known_series(
    known: pl.DataFrame, *, start: datetime, issued_at: datetime, resolution: timedelta
) -> pl.DataFrame:
    """``interval_start``, ``energy_kwh`` [kWh] as known at ``issued_at``, on a full grid.

    Covers the intervals from ``start`` that end at or before ``issued_at``: zero where no known
    session contributed, null before the first known session and where the series is missing.
    """
    step = f"{resolution // timedelta(microseconds=1)}us"
    grid = pl.select(
        pl.datetime_range(
            pl.lit(start).dt.truncate(step),
            pl.lit(issued_at - resolution).dt.truncate(step),
            interval=resolution,
            closed="both",
        ).alias("interval_start")
    )
    series = mark_outages(
        build_demand_series(
            known.filter(pl.col("plug_out_at") > start),
            resolution=resolution,
            start=cast("datetime", grid["interval_start"].min()),
            end=issued_at,
        )
    ).select("interval_start", "energy_kwh", "is_missing")
    data_start = known["plug_in_at"].min()
    return grid.join(series, on="interval_start", how="left").select(
        "interval_start",
        pl.when(
            (pl.col("interval_start") + resolution > data_start)
            & ~pl.col("is_missing").fill_null(value=False)
        )
        .then(pl.col("energy_kwh").fill_null(0.0))
        .alias("energy_kwh"),
    )


def _local_hour(site: SiteConfig) -> pl.Expr:
    return pl.col("interval_start").dt.convert_time_zone(site.timezone).dt.hour().alias("hour")


def _lagged(
    series: pl.DataFrame,
    *,
    site: SiteConfig,
    lag_days: int,
    issued_at: datetime,
    resolution: timedelta,
    extra_lags: int,
    targets: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Add ``lagged_kwh`` and ``lags_used``: the first known value 1, 2, ... lags back.

    A value is known when its interval ended at or before ``issued_at`` and is not null;
    ``lags_used`` is null when no lag up to ``1 + extra_lags`` is known.
    """
    frame = series if targets is None else targets
    values = series.select(pl.col("interval_start").alias("lag_start"), lag_value="energy_kwh")
    names = [f"lag_{k}" for k in range(1, extra_lags + 2)]
    for k, column in enumerate(names, start=1):
        lag_start = (
            pl.col("interval_start")
            .dt.convert_time_zone(site.timezone)
            .dt.offset_by(f"-{k * lag_days}d")
            .dt.convert_time_zone("UTC")
        )
        frame = (
            frame.with_columns(lag_start.alias("lag_start"))
            .join(values, on="lag_start", how="left", maintain_order="left")
            .with_columns(
                pl.when(pl.col("lag_start") + resolution <= issued_at)
                .then(pl.col("lag_value"))
                .alias(column)
            )
            .drop("lag_start", "lag_value")
        )
    return frame.with_columns(
        lagged_kwh=pl.coalesce(names),
        lags_used=pl.coalesce(
            pl.when(pl.col(c).is_not_null()).then(pl.lit(k)) for k, c in enumerate(names, 1)
        ),
    ).drop(names)


def _spread_by_hour(errors: pl.DataFrame, *, min_samples: int) -> pl.DataFrame:
    """Error quantiles per local hour [kWh]: ``hour``, ``lo`` (10 %), ``hi`` (90 %).

    Hours with fewer than ``min_samples`` errors take the quantiles of all hours pooled; with no
    errors at all both are zero (a point forecast).
    """
    pooled_lo = errors["error"].quantile(0.1) if errors.height else 0.0
    pooled_hi = errors["error"].quantile(0.9) if errors.height else 0.0
    per_hour = errors.group_by("hour").agg(
        lo=pl.col("error").quantile(0.1),
        hi=pl.col("error").quantile(0.9),
        n=pl.len(),
    )
    return (
        pl.DataFrame({"hour": pl.int_range(0, 24, eager=True, dtype=pl.Int8)})
        .join(per_hour.cast({"hour": pl.Int8}), on="hour", how="left")
        .select(
            "hour",
            pl.when(pl.col("n") >= min_samples).then("lo").otherwise(pooled_lo).alias("lo"),
            pl.when(pl.col("n") >= min_samples).then("hi").otherwise(pooled_hi).alias("hi"),
        )
    )


def _add_quantiles(lagged: pl.DataFrame, spread: pl.DataFrame, *, name: str) -> pl.DataFrame:
    """Turn lagged values into ``p10``/``p50``/``p90`` [kWh] and a ``note``."""
    point = pl.col("lagged_kwh").fill_null(0.0)
    note = (
        pl.when(pl.col("lags_used").is_null())
        .then(pl.lit(f"{name}: no known value at any lag; 0 used"))
        .when(pl.col("lags_used") > 1)
        .then(
            pl.format(
                f"{name}: lag unknown at issue; latest known same-time value used ({{}} lags back)",
                pl.col("lags_used"),
            )
        )
    )
    return (
        lagged.cast({"hour": pl.Int8})
        .join(spread, on="hour", how="left", maintain_order="left")
        .select(
            "interval_start",
            pl.min_horizontal(point, (point + pl.col("lo")).clip(lower_bound=0.0)).alias("p10"),
            point.alias("p50"),
            pl.max_horizontal(point, point + pl.col("hi")).alias("p90"),
            note.alias("note"),
        )
    )
