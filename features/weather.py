"""Weather features for target intervals, from forecasts issued before the issue time.

What a row for issue time ``T`` and target interval ``i`` may use
----------------------------------------------------------------
The weather forecast valid for ``i`` from the latest forecast run with
``issued_at < T`` (as-of join, exact matches excluded). Observations of ``i`` are not known at
``T`` (they are only known for intervals ending at or before ``T``), so they stand in for a
missing forecast only when ``observations_stand_in`` is set, and such rows carry
``weather_is_observation = True``: a backtest with stand-ins is optimistic and says so.

Weather is averaged per forecast run onto intervals of ``max(resolution, weather_resolution)``
(default :data:`WEATHER_RESOLUTION`), and every target interval takes the weather interval it
lies in: finer weather is averaged, coarser weather covers several target intervals.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import polars as pl

from forecasting.schemas import validate_frame

WEATHER_VALUES: Final[tuple[str, ...]] = (
    "ghi",
    "dni",
    "dhi",
    "temp_air",
    "wind_speed",
    "cloud_cover",
)
"""Weather quantities carried into the features, with pvlib's names (units in schemas)."""

WEATHER_FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    *WEATHER_VALUES,
    "weather_lead_h",
    "weather_is_observation",
)
"""Columns added by :func:`add_weather_features`, in order."""

WEATHER_RESOLUTION: Final = timedelta(hours=1)
"""Default interval length of weather rows (hourly, as most weather forecasts)."""

_REQUIRED: Final = {
    "site_id": pl.String(),
    "interval_start": pl.Datetime("us", "UTC"),
    "kind": pl.String(),
    "issued_at": pl.Datetime("us", "UTC"),
}


def _on_grid(weather: pl.DataFrame, *, step: timedelta) -> pl.DataFrame:
    """Average each forecast run (and the observations) onto intervals of ``step``."""
    return (
        weather.with_columns(pl.col("interval_start").dt.truncate(step))
        .group_by("kind", "issued_at", "interval_start")
        .agg(pl.col(c).mean() for c in WEATHER_VALUES)
    )


def add_weather_features(
    frame: pl.DataFrame,
    *,
    weather: pl.DataFrame,
    resolution: timedelta,
    observations_stand_in: bool = False,
    weather_resolution: timedelta = WEATHER_RESOLUTION,
) -> pl.DataFrame:
    """Add the weather forecast for each row's target interval, as issued before ``issued_at``.

    Parameters
    ----------
    frame
        Target rows of one site: ``issued_at``, ``interval_start`` (UTC).
    weather
        That site's weather (``forecasting.schemas.WEATHER_SCHEMA``): forecasts and, optionally,
        observations. Rows of other sites must be filtered out by the caller.
    resolution
        Interval length of the target grid.
    observations_stand_in
        Use the observation of the target interval when no forecast was issued before
        ``issued_at`` (backtests without a forecast archive). Marked in the output.
    weather_resolution
        Interval length of the weather. Weather is averaged per forecast run onto intervals of
        ``max(resolution, weather_resolution)``, and each target interval takes the one it
        lies in. A fixed setting, not inferred from the rows, so that rows issued after
        ``issued_at`` cannot change how earlier ones are matched.

    Returns
    -------
    polars.DataFrame
        ``frame`` (same row order) plus ``ghi``, ``dni``, ``dhi`` [W/m^2], ``temp_air`` [degC],
        ``wind_speed`` [m/s], ``cloud_cover`` [%], ``weather_lead_h`` [h] (target start minus
        the forecast's issue time; null for observations) and ``weather_is_observation``.
    """
    validate_frame(weather, _REQUIRED, name="weather")
    for column in WEATHER_VALUES:
        if column not in weather.columns:
            weather = weather.with_columns(pl.lit(None, dtype=pl.Float64).alias(column))
    step = max(resolution, weather_resolution)
    gridded = _on_grid(weather, step=step)
    key = pl.col("interval_start").dt.truncate(step).alias("_weather_start")
    rows = frame.with_columns(key, pl.int_range(pl.len()).alias("_row")).sort("issued_at")
    forecasts = (
        gridded.filter(pl.col("kind") == "forecast")
        .drop_nulls("issued_at")
        .select(
            pl.col("interval_start").alias("_weather_start"),
            pl.col("issued_at").alias("_weather_issued_at"),
            *WEATHER_VALUES,
        )
        .sort("_weather_issued_at")
    )
    joined = rows.join_asof(
        forecasts,
        left_on="issued_at",
        right_on="_weather_issued_at",
        by="_weather_start",
        strategy="backward",
        allow_exact_matches=False,
    )
    lead = (pl.col("interval_start") - pl.col("_weather_issued_at")).dt.total_seconds() / 3600
    joined = joined.with_columns(
        lead.alias("weather_lead_h"), pl.lit(False).alias("weather_is_observation")
    )
    if observations_stand_in:
        joined = _fill_with_observations(joined, gridded)
    return joined.sort("_row").drop("_row", "_weather_start", "_weather_issued_at")


def _fill_with_observations(joined: pl.DataFrame, gridded: pl.DataFrame) -> pl.DataFrame:
    observations = gridded.filter(pl.col("kind") == "observation").select(
        pl.col("interval_start").alias("_weather_start"),
        *(pl.col(c).alias(f"_obs_{c}") for c in WEATHER_VALUES),
    )
    stand_in = pl.col("_weather_issued_at").is_null() & pl.col("_obs_present")
    return (
        joined.join(
            observations.with_columns(pl.lit(True).alias("_obs_present")),
            on="_weather_start",
            how="left",
        )
        .with_columns(
            *(
                pl.when(stand_in).then(pl.col(f"_obs_{c}")).otherwise(pl.col(c)).alias(c)
                for c in WEATHER_VALUES
            ),
            stand_in.fill_null(False).alias("weather_is_observation"),
        )
        .drop(*(f"_obs_{c}" for c in WEATHER_VALUES), "_obs_present")
    )
