"""The output contract of a backtest, and the checks that enforce it.

Files written to the output folder ``DIR`` of ``evcast backtest``
-----------------------------------------------------------------
``forecasts.parquet``
    One row per model, site, issue time and interval (:data:`FORECAST_KEY` is unique):

    ============== ============== ========================================================
    column         type           meaning
    ============== ============== ========================================================
    site_id        String         site id (``SITE_ID_PATTERN``)
    issued_at      Datetime UTC   when the forecast was made; only data known strictly
                                  before it was used
    interval_start Datetime UTC   start of the forecast interval (``>= issued_at``)
    p10, p50, p90  Float64        quantiles of the energy delivered at the site in the
                                  interval [kWh]; ``0 <= p10 <= p50 <= p90``
    model          String         ``"demand"``, ``"seasonal_naive"``, ``"persistence"``,
                                  ``"solar"`` (``--target pv``), ...
    note           String         null, or why the row is a fallback or what stood in for
                                  what (e.g. a longer lag, observations for forecasts)
    ============== ============== ========================================================

    Every model writes every interval of every issue: a model that cannot forecast writes its
    fallback and says so in ``note``; it never skips rows.
``actuals.parquet``
    ``site_id``, ``interval_start``, ``energy_kwh`` [kWh]: the truth for each forecast
    interval, from all sessions (null where the data is marked missing, e.g. an outage).
``metrics.json`` and ``metrics_by_site.csv``
    See :mod:`forecasting.backtest.metrics`.
``report.html``
    Self-contained report (plots embedded as PNG), see :mod:`forecasting.backtest.report`.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from forecasting.errors import SchemaError
from forecasting.schemas import FORECAST_KEY, FORECAST_SCHEMA, UTC_DATETIME, validate_frame

ACTUALS_SCHEMA: Final[dict[str, pl.DataType]] = {
    "site_id": pl.String(),
    "interval_start": UTC_DATETIME,
    "energy_kwh": pl.Float64(),
}
"""The truth per site and interval [kWh] (null where the data is missing)."""

GRID_SCHEMA: Final[dict[str, pl.DataType]] = {
    "site_id": pl.String(),
    "issued_at": UTC_DATETIME,
    "interval_start": UTC_DATETIME,
}
"""The intervals a backtest must forecast: one row per site, issue time and interval."""

_QUANTILES: Final = ("p10", "p50", "p90")


def _first_bad(frame: pl.DataFrame, condition: pl.Expr) -> dict[str, object] | None:
    bad = frame.filter(condition)
    return bad.row(0, named=True) if bad.height else None


def check_forecasts(forecasts: pl.DataFrame, *, grid: pl.DataFrame | None = None) -> None:
    """Raise :class:`SchemaError` when ``forecasts`` breaks the backtest output contract.

    Parameters
    ----------
    forecasts
        Rows in ``FORECAST_SCHEMA``; quantiles [kWh].
    grid
        When given (``GRID_SCHEMA``), every model must forecast exactly these intervals.
    """
    validate_frame(forecasts, FORECAST_SCHEMA, name="backtest forecasts")
    checks = {
        "a null or NaN quantile": pl.any_horizontal(
            pl.col(q).is_null() | pl.col(q).is_nan() for q in _QUANTILES
        ),
        "a negative quantile": pl.col("p10") < 0,
        "crossing quantiles (p10 <= p50 <= p90 expected)": (pl.col("p10") > pl.col("p50"))
        | (pl.col("p50") > pl.col("p90")),
        "issued_at after interval_start": pl.col("issued_at") > pl.col("interval_start"),
        "a duplicate key": pl.struct(FORECAST_KEY).is_duplicated(),
    }
    for problem, condition in checks.items():
        row = _first_bad(forecasts, condition)
        if row is not None:
            msg = f"backtest forecasts have {problem}, e.g. row {row!r}; fix the model named there"
            raise SchemaError(msg)
    if grid is not None:
        _check_complete(forecasts, grid=grid)


def _check_complete(forecasts: pl.DataFrame, *, grid: pl.DataFrame) -> None:
    keys = list(GRID_SCHEMA)
    for (model,), rows in forecasts.partition_by("model", as_dict=True).items():
        missing = grid.join(rows.select(keys), on=keys, how="anti")
        extra = rows.select(keys).join(grid, on=keys, how="anti")
        if missing.height or extra.height:
            example = (missing if missing.height else extra).row(0, named=True)
            kind = "misses" if missing.height else "has extra"
            msg = (
                f"model {model!r} {kind} {max(missing.height, extra.height)} interval(s) of the "
                f"backtest grid, e.g. {example!r}; a model must write a (fallback) row for each"
            )
            raise SchemaError(msg)
