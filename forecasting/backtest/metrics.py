"""Accuracy of backtest forecasts: point, quantile and interval scores, and skill.

Every score is computed on exactly the intervals that *every* compared model forecast and whose
actual is known (an inner join on ``site_id``, ``issued_at``, ``interval_start``), so models are
compared like for like. Units: energies and errors in [kWh] per interval; ratios [-].

Scores (per model, and per model and group)
-------------------------------------------
``mae``, ``rmse``
    Mean absolute and root mean squared error of ``p50`` [kWh].
``nmae``
    Sum of absolute errors over the sum of actuals [-] (null when the actuals sum to 0).
``pinball_p10``, ``pinball_p50``, ``pinball_p90``, ``pinball``
    Pinball (quantile) loss of each quantile, and their mean [kWh].
``coverage_80``, ``width_80``
    Share of actuals inside ``[p10, p90]`` [-] (nominal 0.8), and the mean width [kWh].
``crps``
    CRPS approximated from the three quantiles: ``2 x`` the mean pinball loss (the quantile
    decomposition of CRPS, integrated on three levels; exact for a point forecast) [kWh].
``calib_p10``, ``calib_p50``, ``calib_p90``
    Observed share of actuals at or below each quantile [-] (nominal 0.1, 0.5, 0.9).
``peak_abs_error``
    Mean over issues of ``|max p50 - max actual|`` within the issue's horizon: the error on the
    daily peak for daily issues [kWh].
``skill_mae_vs_<baseline>``, ``skill_pinball_vs_<baseline>``
    ``1 - score / score of the baseline`` in the same group [-], for each baseline
    (``seasonal_naive``, ``persistence``) present; positive is better than the baseline.

Groups: overall, per site (``site_id``), per horizon ``step`` (0 = first interval of an issue)
and per site-local ``hour`` of day.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import polars as pl
import polars.selectors as cs

QUANTILE_LEVELS: Final[dict[str, float]] = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
BASELINES: Final[tuple[str, ...]] = ("seasonal_naive", "persistence")
_KEYS: Final = ("site_id", "issued_at", "interval_start")


@dataclass(frozen=True)
class BacktestMetrics:
    """Scores of a backtest, overall and by site, horizon step and local hour of day."""

    overall: pl.DataFrame
    by_site: pl.DataFrame
    by_step: pl.DataFrame
    by_hour: pl.DataFrame
    n_intervals: int

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dictionary (the content of ``metrics.json``)."""
        clean = {
            name: frame.with_columns(cs.float().fill_nan(None))
            for name, frame in (
                ("overall", self.overall),
                ("by_site", self.by_site),
                ("by_step", self.by_step),
                ("by_hour", self.by_hour),
            )
        }
        return {
            "models": self.overall["model"].to_list(),
            "n_intervals": self.n_intervals,
            "overall": {row.pop("model"): row for row in clean["overall"].to_dicts()},
            **{name: frame.to_dicts() for name, frame in clean.items() if name != "overall"},
        }


def build_comparison_frame(
    forecasts: pl.DataFrame,
    actuals: pl.DataFrame,
    *,
    resolution: timedelta,
    timezones: Mapping[str, str],
) -> pl.DataFrame:
    """Join forecasts to actuals on the intervals every model forecast and whose actual is known.

    Adds ``actual`` [kWh], ``step`` (horizon step, 0-based) and ``hour`` (site-local hour).
    ``timezones`` maps each site id to its IANA zone.
    """
    n_models = forecasts["model"].n_unique()
    common = (
        forecasts.group_by(_KEYS)
        .agg(pl.col("model").n_unique().alias("n"))
        .filter(pl.col("n") == n_models)
        .drop("n")
    )
    known = actuals.drop_nulls("energy_kwh").select(
        "site_id", "interval_start", pl.col("energy_kwh").alias("actual")
    )
    res_us = resolution // timedelta(microseconds=1)
    zone = pl.col("site_id").replace_strict(dict(timezones), default=None)
    local_hour = pl.coalesce(
        pl.when(zone == tz).then(pl.col("interval_start").dt.convert_time_zone(tz).dt.hour())
        for tz in sorted(set(timezones.values())) or ["UTC"]
    )
    return (
        forecasts.join(common, on=_KEYS, how="semi")
        .join(known, on=["site_id", "interval_start"], how="inner")
        .with_columns(
            step=(
                (pl.col("interval_start") - pl.col("issued_at")).dt.total_microseconds() // res_us
            ).cast(pl.Int32),
            hour=local_hour.cast(pl.Int8),
        )
        .sort("model", *_KEYS)
    )


def add_pointwise_scores(frame: pl.DataFrame) -> pl.DataFrame:
    """Add per-interval errors [kWh] and indicators to a comparison frame."""
    error = pl.col("actual") - pl.col("p50")
    pinballs = {
        f"pinball_{q}": pl.max_horizontal(
            level * (pl.col("actual") - pl.col(q)), (level - 1) * (pl.col("actual") - pl.col(q))
        )
        for q, level in QUANTILE_LEVELS.items()
    }
    return frame.with_columns(
        abs_error=error.abs(),
        sq_error=error**2,
        covered=pl.col("actual").is_between(pl.col("p10"), pl.col("p90")).cast(pl.Float64),
        width=pl.col("p90") - pl.col("p10"),
        **{f"below_{q}": (pl.col("actual") <= pl.col(q)).cast(pl.Float64) for q in QUANTILE_LEVELS},
        **pinballs,
    ).with_columns(
        pinball=pl.mean_horizontal(list(pinballs)),
        crps=2 * pl.mean_horizontal(list(pinballs)),
    )


def compute_scores(scored: pl.DataFrame, *, by: Sequence[str] = ()) -> pl.DataFrame:
    """Aggregate pointwise scores per model and ``by`` group, with skill against baselines."""
    groups = ["model", *by]
    scores = scored.group_by(groups).agg(
        pl.len().alias("n"),
        pl.mean("abs_error").alias("mae"),
        pl.mean("sq_error").sqrt().alias("rmse"),
        (pl.sum("abs_error") / pl.sum("actual").replace(0.0, None)).alias("nmae"),
        *(pl.mean(f"pinball_{q}") for q in QUANTILE_LEVELS),
        pl.mean("pinball"),
        pl.mean("covered").alias("coverage_80"),
        pl.mean("width").alias("width_80"),
        pl.mean("crps"),
        *(pl.mean(f"below_{q}").alias(f"calib_{q}") for q in QUANTILE_LEVELS),
    )
    if set(by) <= {"site_id"}:
        peaks = (
            scored.group_by(["model", "site_id", "issued_at"])
            .agg((pl.max("p50") - pl.max("actual")).abs().alias("peak_abs_error"))
            .group_by(groups)
            .agg(pl.mean("peak_abs_error"))
        )
        scores = scores.join(peaks, on=groups, how="left")
    else:  # a peak is a property of a whole issue, not of a step or an hour
        scores = scores.with_columns(peak_abs_error=pl.lit(None, pl.Float64))
    return _add_skill(scores, by=by).sort(groups)


def _add_skill(scores: pl.DataFrame, *, by: Sequence[str]) -> pl.DataFrame:
    for baseline in BASELINES:
        reference = scores.filter(pl.col("model") == baseline).select(
            *by, pl.col("mae").alias("_mae_ref"), pl.col("pinball").alias("_pin_ref")
        )
        if reference.is_empty():
            continue
        joined = (
            scores.join(reference, on=list(by), how="left")
            if by
            else scores.join(reference, how="cross")
        )
        scores = joined.with_columns(
            (1 - pl.col("mae") / pl.col("_mae_ref").replace(0.0, None)).alias(
                f"skill_mae_vs_{baseline}"
            ),
            (1 - pl.col("pinball") / pl.col("_pin_ref").replace(0.0, None)).alias(
                f"skill_pinball_vs_{baseline}"
            ),
        ).drop("_mae_ref", "_pin_ref")
    return scores


def compute_backtest_metrics(
    forecasts: pl.DataFrame,
    actuals: pl.DataFrame,
    *,
    resolution: timedelta,
    timezones: Mapping[str, str],
) -> BacktestMetrics:
    """Score every model of a backtest, overall and by site, horizon step and local hour.

    Parameters
    ----------
    forecasts
        Backtest forecasts (``FORECAST_SCHEMA``) [kWh per interval].
    actuals
        ``site_id``, ``interval_start``, ``energy_kwh`` [kWh]; null actuals are not scored.
    resolution
        Interval length, for the horizon step.
    timezones
        Site id to IANA time zone, for the local hour of day.
    """
    scored = add_pointwise_scores(
        build_comparison_frame(forecasts, actuals, resolution=resolution, timezones=timezones)
    )
    n_models = max(scored["model"].n_unique(), 1)
    return BacktestMetrics(
        overall=compute_scores(scored),
        by_site=compute_scores(scored, by=["site_id"]),
        by_step=compute_scores(scored, by=["step"]),
        by_hour=compute_scores(scored, by=["hour"]),
        n_intervals=scored.height // n_models,
    )
