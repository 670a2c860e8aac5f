"""Champion/challenger model selection: the promotion rule and its rolling-origin evaluation.

Pure core: functions on polars frames and forecaster objects, no MLflow, files or clock. The
adapter :mod:`forecasting.io.tracking` stores what is decided here; :mod:`forecasting.training`
wires the two together.

Promotion rule
    A challenger becomes champion when there is no usable champion, or when its mean pinball
    loss over the quantiles 0.1, 0.5 and 0.9 [kWh] on the same rolling-origin evaluation is
    lower than the champion's by more than ``margin`` (a fraction: 0.02 = 2 %).
Rolling-origin evaluation
    Challenger and champion run through the same backtest
    (:func:`forecasting.backtest.engine.run_backtest`): daily issue times over a held-back
    period just before the training time, each model refit on the backtest's cadence on the
    sessions known then (``plug_out_at < issued_at``), scored by
    :mod:`forecasting.backtest.metrics` on the intervals whose actual is known (the backtest
    writes every interval of every issue, with a marked fallback where a model fails, so both
    are scored on the same intervals). The champion is evaluated by refitting a copy of its
    stored forecaster (same hyperparameters), so both recipes face the same data.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import polars as pl

from forecasting.backtest.engine import ForecasterFactory, run_backtest
from forecasting.backtest.grid import BacktestSpec
from forecasting.backtest.metrics import (
    add_pointwise_scores,
    build_comparison_frame,
    compute_scores,
)
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError

MODEL_NAME_PREFIX: Final = "evcast-"


@dataclass(frozen=True)
class EvaluationScores:
    """Scores of one forecaster on a rolling-origin evaluation.

    Attributes
    ----------
    pinball
        Mean pinball loss over the quantiles 0.1, 0.5, 0.9 and all intervals [kWh].
    mae
        Mean absolute error of ``p50`` [kWh].
    coverage_80
        Share of actuals inside ``[p10, p90]`` [-].
    intervals
        Number of scored intervals [-].
    fallback_intervals
        Scored intervals the forecaster could not forecast itself (a fallback stood in) [-].
    origins
        Number of issue times [-].
    """

    pinball: float
    mae: float
    coverage_80: float
    intervals: int
    fallback_intervals: int
    origins: int

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """Return the scores as MLflow metric names and values, e.g. ``eval_pinball``."""
        return {
            f"{prefix}_pinball": self.pinball,
            f"{prefix}_mae": self.mae,
            f"{prefix}_coverage_80": self.coverage_80,
            f"{prefix}_intervals": float(self.intervals),
            f"{prefix}_fallback_intervals": float(self.fallback_intervals),
            f"{prefix}_origins": float(self.origins),
        }


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a challenger replaces the champion, why, and the scores compared [kWh]."""

    promote: bool
    reason: str
    challenger_score: float
    champion_score: float | None
    margin: float


def build_model_name(site_id: str, *, target: str = "demand") -> str:
    """Return the registered model name of a site and target, ``evcast-<site_id>-<target>``."""
    return f"{MODEL_NAME_PREFIX}{site_id}-{target}"


def decide_promotion(
    challenger_score: float, champion_score: float | None, *, margin: float
) -> PromotionDecision:
    """Apply the promotion rule to two mean pinball losses [kWh] (lower is better).

    Parameters
    ----------
    challenger_score
        Score of the new model [kWh].
    champion_score
        Score of the champion on the same evaluation [kWh]; None when there is no champion,
        or it could not be loaded or evaluated.
    margin
        Required relative improvement [-], in ``[0, 1)``: the challenger must score strictly
        below ``champion_score * (1 - margin)``.
    """
    if not 0 <= margin < 1:
        msg = f"promotion margin must be in [0, 1), got {margin!r}; use e.g. 0.02 for 2 %"
        raise ConfigError(msg)

    def decided(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promote, reason, challenger_score, champion_score, margin)

    if not math.isfinite(challenger_score):
        reason = f"challenger score {challenger_score!r} is not finite; kept as challenger"
        return decided(False, reason)
    if champion_score is None or not math.isfinite(champion_score):
        reason = "no usable champion to beat; the challenger becomes champion"
        return decided(True, reason)
    threshold = champion_score * (1 - margin)
    if challenger_score < threshold:
        reason = (
            f"challenger pinball {challenger_score:.4f} < {threshold:.4f} "
            f"(champion {champion_score:.4f} less {margin:.1%})"
        )
        return decided(True, reason)
    reason = (
        f"challenger pinball {challenger_score:.4f} does not beat {threshold:.4f} "
        f"(champion {champion_score:.4f} less {margin:.1%})"
    )
    return decided(False, reason)


def compute_frame_fingerprint(frame: pl.DataFrame, *, ignore: Sequence[str] = ()) -> str:
    """Return a SHA-256 hex digest of a frame's content, independent of its row order.

    Columns named in ``ignore`` (e.g. ``ingested_at``, which changes on re-ingest) are left
    out. The rows are sorted and serialised as CSV, which does not depend on the polars version
    (unlike ``hash_rows``).
    """
    kept = frame.select([c for c in frame.columns if c not in set(ignore)])
    digest = hashlib.sha256("|".join(f"{n}:{t}" for n, t in kept.schema.items()).encode())
    digest.update(kept.sort(kept.columns, nulls_last=True).write_csv().encode())
    return digest.hexdigest()


def build_evaluation_spec(
    issued_at: datetime,
    *,
    site: SiteConfig,
    days: int,
    issue_time: time = time(0),
    horizon: timedelta = timedelta(hours=24),
    resolution: timedelta = timedelta(hours=1),
    refit_every: timedelta = timedelta(days=7),
) -> BacktestSpec:
    """Return the rolling-origin spec of the ``days`` issue days just before ``issued_at``.

    Issues are daily at the site-local ``issue_time``; the last issue day is the latest whose
    forecast horizon ends by ``issued_at``, so every scored interval lies in the held-back
    period before ``issued_at`` (which the final model is then trained on as well).
    """
    if days < 1:
        msg = f"the evaluation needs at least one issue day, got days={days!r}"
        raise ConfigError(msg)
    zone = ZoneInfo(site.timezone)
    last = issued_at.astimezone(zone).date()
    while datetime.combine(last, issue_time, tzinfo=zone) + horizon > issued_at:
        last -= timedelta(days=1)
    return BacktestSpec(
        start=last - timedelta(days=days - 1),
        end=last,
        issue_time=issue_time,
        horizon=horizon,
        resolution=resolution,
        refit_every=refit_every,
    )


def evaluate_forecasters(
    factories: Mapping[str, ForecasterFactory],
    sessions: pl.DataFrame,
    *,
    site: SiteConfig,
    spec: BacktestSpec,
) -> dict[str, EvaluationScores]:
    """Score forecasters side by side on one rolling-origin backtest (see the module docstring).

    Parameters
    ----------
    factories
        A label (e.g. ``"challenger"``, ``"champion"``) to a function building an unfitted
        forecaster for the site.
    sessions
        Sessions of every site (``SESSIONS_SCHEMA``) known when the evaluation runs; at each
        issue time the backtest gives a forecaster only those that ended before it.
    spec
        Issue days, horizon, resolution and refit cadence, e.g. from
        :func:`build_evaluation_spec`.

    Returns
    -------
    dict
        Scores by label, all computed on the intervals every forecaster forecast and whose
        actual is known (not marked missing), by :mod:`forecasting.backtest.metrics`; NaN
        scores when there is no such interval.
    """
    result = run_backtest(sessions, sites=[site], factories=factories, spec=spec)
    scored = add_pointwise_scores(
        build_comparison_frame(
            result.forecasts,
            result.actuals,
            resolution=spec.resolution,
            timezones={site.site_id: site.timezone},
        )
    )
    table = compute_scores(scored).join(
        scored.group_by("model").agg(
            pl.col("note").is_not_null().sum().alias("fallback_intervals"),
            pl.col("issued_at").n_unique().alias("origins"),
        ),
        on="model",
    )
    rows = {row["model"]: row for row in table.to_dicts()}
    return {label: _scores(rows.get(label, {})) for label in factories}


def _scores(row: Mapping[str, Any]) -> EvaluationScores:
    """Build scores from a row of :func:`forecasting.backtest.metrics.compute_scores`."""
    return EvaluationScores(
        pinball=_as_float(row.get("pinball")),
        mae=_as_float(row.get("mae")),
        coverage_80=_as_float(row.get("coverage_80")),
        intervals=int(row.get("n", 0)),
        fallback_intervals=int(row.get("fallback_intervals", 0)),
        origins=int(row.get("origins", 0)),
    )


def _as_float(value: float | None) -> float:
    return math.nan if value is None else float(value)
