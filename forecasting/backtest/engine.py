"""Rolling-origin backtests: the pure core shared by ``evcast backtest`` and the nightly flow.

For every site and every issue day, each forecaster forecasts the intervals of the horizon as
if it were the issue time: it sees only sessions that ended strictly before ``issued_at``
(``plug_out_at < issued_at``; sessions still plugged in are unknown) and weather forecasts
issued before it. Models are refit on the ``refit_every`` cadence: issue times are grouped into
refit blocks, and each block's model is fitted once, on what was known at the block's first
issue time, then asked for every issue time of the block. A forecaster that also has
``predict_issues(sessions, *, site, issue_times, horizon, weather)`` (the demand model) is asked
once per block, from one feature matrix, with the sessions known at the block's last issue
time; it must leave out, per issue time, what that issue did not know (the feature builder
does, and the leakage tests check it for every model).

A model that raises a :class:`forecasting.errors.ForecastingError` (e.g. too little history)
is replaced, for the rows it could not write, by the seasonal naive baseline, and when that
cannot forecast either, by zeros; ``note`` says so. Rows are never skipped. Any other exception
is a bug and propagates. The output contract is in :mod:`forecasting.backtest.contract`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, cast

import numpy as np
import polars as pl

from features.demand_series import build_demand_series, mark_outages
from forecasting.backtest.contract import ACTUALS_SCHEMA, GRID_SCHEMA, check_forecasts
from forecasting.backtest.grid import BacktestSpec, assign_refit_blocks, build_grid
from forecasting.config import SiteConfig
from forecasting.errors import ForecastingError, SchemaError
from forecasting.schemas import FORECAST_SCHEMA, empty_frame
from models.base import Forecaster
from models.baselines import SeasonalNaive

ForecasterFactory = Callable[[SiteConfig], Forecaster]
"""Builds a fresh, unfitted forecaster for a site."""


@dataclass(frozen=True)
class BacktestResult:
    """Forecasts (``FORECAST_SCHEMA``), actuals (``ACTUALS_SCHEMA``) and the grid asked for."""

    forecasts: pl.DataFrame
    actuals: pl.DataFrame
    grid: pl.DataFrame = field(repr=False)


class _KnownSessions:
    """Sessions of every site, sliced by what was known at an instant (``plug_out_at < t``).

    Forecasters get all sites' known sessions, so a pooled (cross-site) model can learn from
    the others; each forecaster selects its own site's rows.
    """

    def __init__(self, sessions: pl.DataFrame) -> None:
        self._frame = sessions.drop_nulls("plug_out_at").sort("plug_out_at")
        self._ends = self._frame["plug_out_at"].dt.epoch("us").to_numpy()

    def at(self, issued_at: datetime) -> pl.DataFrame:
        cut = _epoch_us(issued_at)
        return self._frame.head(int(np.searchsorted(self._ends, cut, side="left")))


def _epoch_us(instant: datetime) -> int:
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def select_known_weather(
    weather: pl.DataFrame | None, *, issued_at: datetime, observations_stand_in: bool = False
) -> pl.DataFrame | None:
    """Weather rows a forecaster may see at ``issued_at`` (``WEATHER_SCHEMA``).

    Forecast rows count when they were issued strictly before ``issued_at``. Observation rows
    count when their interval started before it, or for every interval when
    ``observations_stand_in`` (no forecasts exist, so observations stand in for them: the
    backtest then marks every row it writes).
    """
    if weather is None:
        return None
    known_observation = (
        pl.lit(value=True) if observations_stand_in else (pl.col("interval_start") < issued_at)
    )
    return weather.filter(
        pl.when(pl.col("kind") == "forecast")
        .then(pl.col("issued_at") < issued_at)
        .otherwise(known_observation)
    )


OUTAGE_REFERENCE: Final = timedelta(days=28)
"""History before the grid that judges whether a silence in the actuals is an outage."""

STAND_IN_NOTE: Final = "weather observations stood in for weather forecasts"


@dataclass(frozen=True)
class _SiteInputs:
    site: SiteConfig
    known: _KnownSessions
    weather: pl.DataFrame | None
    observations_stand_in: bool
    resolution: timedelta

    def sessions_at(self, issued_at: datetime) -> pl.DataFrame:
        return self.known.at(issued_at)

    def weather_at(self, issued_at: datetime) -> pl.DataFrame | None:
        return select_known_weather(
            self.weather, issued_at=issued_at, observations_stand_in=self.observations_stand_in
        )


def _check_rows(
    predicted: pl.DataFrame,
    *,
    name: str,
    inputs: _SiteInputs,
    issued_at: datetime,
    starts: pl.Series,
) -> pl.DataFrame:
    """Return the forecast columns, or raise when the model did not answer every interval.

    This is a bug of the model, not a lack of data, so it is not turned into a fallback.
    """
    if predicted.height != starts.len() or not predicted["interval_start"].equals(
        starts.alias("interval_start"), check_dtypes=False
    ):
        msg = (
            f"model {name!r} returned {predicted.height} rows for site "
            f"{inputs.site.site_id!r} at {issued_at.isoformat()}, expected one per requested "
            f"interval ({starts.len()}), in order; fix its predict"
        )
        raise SchemaError(msg)
    return predicted.select("interval_start", "p10", "p50", "p90", "note")


def _ask(
    forecaster: Forecaster, inputs: _SiteInputs, *, issued_at: datetime, starts: pl.Series
) -> pl.DataFrame:
    """Ask a fitted forecaster for one issue, with what was known at it."""
    return forecaster.predict(
        inputs.sessions_at(issued_at),
        site=inputs.site,
        issued_at=issued_at,
        interval_starts=starts,
        weather=inputs.weather_at(issued_at),
    )


def _fallback(
    inputs: _SiteInputs, *, issued_at: datetime, starts: pl.Series, reason: str
) -> pl.DataFrame:
    """Rows of the seasonal naive baseline fitted at ``issued_at``, or zeros if it fails too."""
    naive = SeasonalNaive(resolution=inputs.resolution)
    try:
        naive.fit(inputs.sessions_at(issued_at), site=inputs.site, issued_at=issued_at)
        predicted = _ask(naive, inputs, issued_at=issued_at, starts=starts)
        note = f"fallback to seasonal_naive: {reason}"
    except ForecastingError as exc:
        predicted = pl.DataFrame({"interval_start": starts}).with_columns(
            p10=pl.lit(0.0), p50=pl.lit(0.0), p90=pl.lit(0.0), note=pl.lit(None, pl.String)
        )
        note = f"no forecast possible ({reason}; seasonal_naive: {exc}); zeros written"
    return predicted.with_columns(
        note=pl.concat_str(pl.lit(note), pl.col("note"), separator="; ", ignore_nulls=True)
    )


def _fit(
    name: str, factory: ForecasterFactory, inputs: _SiteInputs, *, issued_at: datetime
) -> tuple[Forecaster | None, str]:
    """Fit a fresh forecaster at ``issued_at``; on failure return None and the reason."""
    forecaster = factory(inputs.site)
    try:
        forecaster.fit(
            inputs.sessions_at(issued_at),
            site=inputs.site,
            issued_at=issued_at,
            weather=inputs.weather_at(issued_at),
        )
    except ForecastingError as exc:
        return None, f"{name} could not be fitted at {issued_at.isoformat()}: {exc}"
    return forecaster, ""


def _predict_batch(
    forecaster: Forecaster, inputs: _SiteInputs, issues: Sequence[tuple[datetime, pl.Series]]
) -> list[pl.DataFrame] | None:
    """Forecast all issues of a block from one feature matrix, when the model can.

    A forecaster with ``predict_issues(sessions, *, site, issue_times, horizon, weather)`` gets
    the sessions and weather known at the block's *last* issue time and must itself exclude,
    per issue time, what was not known then (the feature builder does). Returns None when the
    model has no batch method or could not forecast; the caller then asks issue by issue.
    """
    batch = getattr(forecaster, "predict_issues", None)
    if not callable(batch):
        return None
    last = issues[-1][0]
    horizon = max(cast("datetime", s.max()) - t for t, s in issues) + inputs.resolution
    try:
        predicted = batch(
            inputs.sessions_at(last),
            site=inputs.site,
            issue_times=[issued_at for issued_at, _ in issues],
            horizon=horizon,
            weather=inputs.weather_at(last),
        )
    except ForecastingError:
        return None
    frames = []
    for issued_at, starts in issues:
        rows = pl.DataFrame({"interval_start": starts}).join(
            predicted.filter(pl.col("issued_at") == issued_at).drop("issued_at"),
            on="interval_start",
            how="left",
            maintain_order="left",
        )
        frames.append(rows.select("interval_start", "p10", "p50", "p90", "note"))
    return frames


def _run_block(
    name: str,
    factory: ForecasterFactory,
    inputs: _SiteInputs,
    issues: Sequence[tuple[datetime, pl.Series]],
) -> list[pl.DataFrame]:
    """Fit once at the block's first issue time, then forecast every issue of the block."""
    forecaster, fit_error = _fit(name, factory, inputs, issued_at=issues[0][0])
    batched = None if forecaster is None else _predict_batch(forecaster, inputs, issues)
    frames = []
    for index, (issued_at, starts) in enumerate(issues):
        if batched is not None:
            rows = batched[index]
        elif forecaster is None:
            rows = _fallback(inputs, issued_at=issued_at, starts=starts, reason=fit_error)
        else:
            try:
                predicted = _ask(forecaster, inputs, issued_at=issued_at, starts=starts)
            except ForecastingError as exc:
                reason = f"{name} could not forecast: {exc}"
                rows = _fallback(inputs, issued_at=issued_at, starts=starts, reason=reason)
            else:
                rows = predicted
        checked = _check_rows(rows, name=name, inputs=inputs, issued_at=issued_at, starts=starts)
        frames.append(checked.with_columns(issued_at=pl.lit(issued_at)))
    return frames


def _run_site(
    inputs: _SiteInputs,
    *,
    grid: pl.DataFrame,
    factories: Mapping[str, ForecasterFactory],
    refit_every: timedelta,
    on_progress: Callable[[int], None] | None,
) -> list[pl.DataFrame]:
    issues = [
        (part["issued_at"][0], part["interval_start"])
        for part in grid.partition_by("issued_at", maintain_order=True)
    ]
    blocks = assign_refit_blocks([t for t, _ in issues], refit_every=refit_every)
    frames: list[pl.DataFrame] = []
    for name, factory in factories.items():
        for block in sorted(set(blocks)):
            members = [issue for issue, b in zip(issues, blocks, strict=True) if b == block]
            rows = pl.concat(_run_block(name, factory, inputs, members), how="vertical")
            if inputs.observations_stand_in:
                rows = rows.with_columns(
                    note=pl.concat_str(
                        pl.col("note"), pl.lit(STAND_IN_NOTE), separator="; ", ignore_nulls=True
                    )
                )
            frames.append(
                rows.with_columns(site_id=pl.lit(inputs.site.site_id), model=pl.lit(name))
            )
            if on_progress is not None:
                on_progress(len(members))
    return frames


def build_actuals(
    sessions: pl.DataFrame, *, grid: pl.DataFrame, resolution: timedelta
) -> pl.DataFrame:
    """Return the truth for every interval of ``grid`` (``ACTUALS_SCHEMA``) from all sessions.

    ``energy_kwh`` [kWh] is the demand series of :func:`features.demand_series.build_demand_series`
    (uniform allocation); intervals :func:`features.demand_series.mark_outages` marks missing
    (judged with the 28 days before the grid as reference) are null.
    """
    intervals = grid.select("site_id", "interval_start").unique().sort("site_id", "interval_start")
    if intervals.is_empty():
        return empty_frame(ACTUALS_SCHEMA)
    wanted = intervals["site_id"].unique().to_list()
    series = mark_outages(
        build_demand_series(
            sessions.filter(pl.col("site_id").is_in(wanted)).drop_nulls("plug_out_at"),
            resolution=resolution,
            start=cast("datetime", intervals["interval_start"].min()) - OUTAGE_REFERENCE,
            end=cast("datetime", intervals["interval_start"].max()) + resolution,
        ),
        reference=OUTAGE_REFERENCE,
    )
    truth = series.select(
        "site_id",
        "interval_start",
        pl.when(~pl.col("is_missing")).then(pl.col("energy_kwh")).alias("energy_kwh"),
    )
    return intervals.join(truth, on=["site_id", "interval_start"], how="left").cast(
        pl.Schema(ACTUALS_SCHEMA)
    )


def run_backtest(
    sessions: pl.DataFrame | pl.LazyFrame,
    *,
    sites: Sequence[SiteConfig],
    factories: Mapping[str, ForecasterFactory],
    spec: BacktestSpec,
    weather: pl.DataFrame | None = None,
    observations_stand_in: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> BacktestResult:
    """Backtest every forecaster of ``factories`` on every site, rolling origin.

    Parameters
    ----------
    sessions
        All sessions (``SESSIONS_SCHEMA``), including ones ending after the issue times: the
        engine gives each forecaster only those with ``plug_out_at < issued_at``.
    sites
        Sites to backtest (each forecast in its own time zone).
    factories
        Model name (written to ``model``) to a function building an unfitted forecaster.
    spec
        Issue days, issue time, horizon, resolution and refit cadence.
    weather
        Optional ``WEATHER_SCHEMA`` rows of any sites; each issue sees only rows known before
        it, and each site's features only its own rows (a pooled model reads every pool site's).
    observations_stand_in
        Let weather observations stand in for forecasts (marked in ``note``).
    on_progress
        Called with the number of issues just forecast, for progress bars.

    Returns
    -------
    BacktestResult
        Forecasts [kWh per interval] that passed :func:`check_forecasts`, and the actuals.
    """
    frame = sessions.collect() if isinstance(sessions, pl.LazyFrame) else sessions
    known = _KnownSessions(frame)
    grids, forecasts = [], []
    for site in sites:
        grid = build_grid(site=site, spec=spec)
        inputs = _SiteInputs(
            site=site,
            known=known,
            weather=weather,  # every site's: a pooled model builds the pool sites' rows too
            observations_stand_in=observations_stand_in,
            resolution=spec.resolution,
        )
        forecasts.extend(
            _run_site(
                inputs,
                grid=grid,
                factories=factories,
                refit_every=spec.refit_every,
                on_progress=on_progress,
            )
        )
        grids.append(grid)
    all_grid = pl.concat(grids, how="vertical") if grids else empty_frame(GRID_SCHEMA)
    result = (
        pl.concat(forecasts, how="diagonal_relaxed")
        .select(list(FORECAST_SCHEMA))
        .cast(pl.Schema(FORECAST_SCHEMA))
        if forecasts
        else empty_frame(FORECAST_SCHEMA)
    ).sort("model", "site_id", "issued_at", "interval_start")
    check_forecasts(result, grid=all_grid)
    actuals = build_actuals(frame, grid=all_grid, resolution=spec.resolution)
    return BacktestResult(forecasts=result, actuals=actuals, grid=all_grid)
