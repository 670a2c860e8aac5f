"""Training matrices of the demand model, built once and reused across refits.

:func:`build_training_matrix` is what ``DemandForecaster.fit`` trains on: daily issue times at
the wall-clock time of the fit over the training window, from the sessions known at the fit.

A backtest that refits weekly need not rebuild features for every refit: every feature of a
row of :func:`features.matrix.build_feature_matrix` depends only on what was known at the row's
``issued_at``, whatever sessions are passed, so one matrix built from a whole season's sessions
serves every refit. Only its target (the full-series truth) must be restated as known at the
fit time, which :func:`restate_targets` does from the sessions known then.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from features.demand_series import build_demand_series, mark_outages
from features.matrix import build_feature_matrix
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError
from models.demand_config import DemandConfig


def compute_history_days(sessions: pl.DataFrame, *, site_id: str, issued_at: datetime) -> float:
    """Days [d] between the site's first plug-in in ``sessions`` and ``issued_at`` (0 if none)."""
    first = sessions.filter(pl.col("site_id") == site_id)["plug_in_at"].min()
    if first is None:
        return 0.0
    return max(0.0, (issued_at - first) / timedelta(days=1))  # type: ignore[operator]


def build_training_issue_times(
    sessions: pl.DataFrame, *, site: SiteConfig, issued_at: datetime, config: DemandConfig
) -> list[datetime]:
    """Daily issue times [UTC] before ``issued_at`` at its site-local wall-clock time.

    One per day of the training window and of the site's history, stepping in site-local days
    so the issue times keep their local time of day across DST changes.
    """
    days = min(
        config.training_days,
        int(compute_history_days(sessions, site_id=site.site_id, issued_at=issued_at)),
    )
    local = issued_at.astimezone(ZoneInfo(site.timezone))
    return [(local - timedelta(days=k)).astimezone(UTC) for k in range(days, 0, -1)]


def keep_settled_rows(
    matrix: pl.DataFrame, *, issued_at: datetime, config: DemandConfig
) -> pl.DataFrame:
    """Drop rows whose target ends after ``issued_at - settle_hours`` (not known, or not yet)."""
    settled = issued_at - timedelta(hours=config.settle_hours)
    return matrix.filter(pl.col("interval_start") + config.resolution <= settled)


def build_training_matrix(
    sessions: pl.DataFrame,
    *,
    site: SiteConfig,
    issued_at: datetime,
    config: DemandConfig,
    weather: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Build the matrix a fit at ``issued_at`` trains on, from the sessions known then.

    Parameters
    ----------
    sessions
        Sessions (``SESSIONS_SCHEMA``); only those with ``plug_out_at < issued_at`` are used.
    site
        The site whose rows are built.
    issued_at
        Fit time [UTC].
    config
        Training window, horizon, resolution, allocation, settle time.
    weather
        Weather (``WEATHER_SCHEMA``) or None.

    Returns
    -------
    polars.DataFrame
        Rows of :func:`features.matrix.build_feature_matrix` whose target ended at least
        ``settle_hours`` before ``issued_at``.
    """
    known = sessions.filter(
        (pl.col("plug_out_at") < issued_at) & (pl.col("site_id") == site.site_id)
    )
    matrix = build_feature_matrix(
        known,
        site=site,
        issue_times=build_training_issue_times(
            known, site=site, issued_at=issued_at, config=config
        ),
        horizon=config.horizon,
        resolution=config.resolution,
        weather=weather,
        allocation=config.allocation,
        known_until=issued_at,
    )
    return keep_settled_rows(matrix, issued_at=issued_at, config=config)


def restate_targets(
    matrix: pl.DataFrame,
    sessions: pl.DataFrame,
    *,
    issued_at: datetime,
    config: DemandConfig,
) -> pl.DataFrame:
    """Keep the training rows of a fit at ``issued_at``, targets as known then.

    Parameters
    ----------
    matrix
        A feature matrix of one or more sites built from any sessions (e.g. a whole season).
    sessions
        Sessions (``SESSIONS_SCHEMA``); only those with ``plug_out_at < issued_at`` count.
    issued_at
        Fit time [UTC].
    config
        Training window, resolution, allocation, settle time.

    Returns
    -------
    polars.DataFrame
        The rows issued in ``[issued_at - training_days, issued_at)`` whose target ended
        ``settle_hours`` before ``issued_at``, with ``energy_kwh`` and ``is_missing`` recomputed
        from the known sessions (outages by :func:`features.demand_series.mark_outages`).
    """
    if config.allocation != "uniform":
        msg = (
            f"restate_targets supports allocation 'uniform' only, got {config.allocation!r}; "
            "build the matrix per fit with build_training_matrix instead"
        )
        raise ConfigError(msg)
    first = issued_at - timedelta(days=config.training_days)
    rows = keep_settled_rows(
        matrix.filter(pl.col("issued_at").is_between(first, issued_at, closed="left")),
        issued_at=issued_at,
        config=config,
    )
    site_ids = rows["site_id"].unique().to_list()
    known = sessions.filter((pl.col("plug_out_at") < issued_at) & pl.col("site_id").is_in(site_ids))
    if rows.height == 0 or known.height == 0:
        return rows.clear()
    series = mark_outages(
        build_demand_series(
            known, resolution=config.resolution, end=issued_at, allocation=config.allocation
        )
    ).filter(pl.col("interval_start") >= first)  # no training row targets an earlier interval
    series = series.select("site_id", "interval_start", "energy_kwh", "is_missing")
    return (
        rows.drop("energy_kwh", "is_missing")
        .join(series, on=["site_id", "interval_start"], how="left", maintain_order="left")
        .with_columns(pl.col("energy_kwh").fill_null(0.0), pl.col("is_missing").fill_null(False))
        .select(matrix.columns)
    )
