"""Train, evaluate, register and promote one site's model: the code path of ``evcast train``.

Orchestration without Prefect, shared by the CLI and the nightly flow. :func:`train_site` runs,
in this order, and stops at the first error:

1. load the current champion (a failed smoke check counts as no champion, and is recorded);
2. evaluate the challenger recipe and the champion's on the same rolling-origin backtest over
   the held-back period just before ``issued_at`` (:mod:`forecasting.registry`);
3. decide the promotion (:func:`forecasting.registry.decide_promotion`);
4. fit the challenger on every session known at ``issued_at`` and log the run to MLflow;
5. register it as a new model version, tagged with both scores and the decision;
6. only then move an alias: ``champion`` to the new version when it won (and drop
   ``challenger``), else ``challenger`` to it.

So a store that fails part-way (after bounded retries) never leaves an alias pointing at a
version that was not completely logged, registered and tagged.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from typing import Any, Final

import polars as pl
from pydantic import BaseModel

from forecasting.backtest.engine import ForecasterFactory
from forecasting.backtest.grid import BacktestSpec
from forecasting.config import SiteConfig
from forecasting.errors import SchemaError
from forecasting.io.tracking import (
    CHALLENGER,
    CHAMPION,
    LoadedModel,
    Tracking,
    TrainingRecord,
    delete_alias,
    load_model_by_alias,
    log_training_run,
    register_model,
    set_alias,
)
from forecasting.io.tracking_model import ForecasterModel, ModelSmokeCheckError
from forecasting.registry import (
    EvaluationScores,
    PromotionDecision,
    build_evaluation_spec,
    build_model_name,
    compute_frame_fingerprint,
    decide_promotion,
    evaluate_forecasters,
)
from models.base import Forecaster

_FINGERPRINT_IGNORES: Final = ("ingested_at",)


@dataclass(frozen=True)
class TrainingOptions:
    """How a site's model is evaluated and promoted.

    Attributes
    ----------
    target
        Forecast target; part of the registered model name.
    margin
        Relative pinball improvement a challenger needs to become champion [-].
    evaluation_days
        Daily issues in the held-back evaluation period [d].
    issue_time, horizon, resolution, refit_every
        Site-local issue time, forecast length, interval length and refit cadence of the
        evaluation backtest.
    example_days
        History [d] stored with the model as its smoke input.
    """

    target: str = "demand"
    margin: float = 0.02
    evaluation_days: int = 14
    issue_time: time = time(0)
    horizon: timedelta = timedelta(hours=24)
    resolution: timedelta = timedelta(hours=1)
    refit_every: timedelta = timedelta(days=7)
    example_days: int = 35


@dataclass(frozen=True)
class TrainingSummary:
    """What :func:`train_site` did for one site."""

    site_id: str
    model_name: str
    version: str
    run_id: str
    decision: PromotionDecision
    challenger: EvaluationScores
    champion: EvaluationScores | None
    champion_version: str | None
    champion_problem: str | None


def read_hyperparameters(forecaster: Forecaster) -> dict[str, str]:
    """Return a forecaster's hyperparameters, flattened to ``name`` -> string.

    Uses ``get_params()`` when the forecaster has it, else its public attributes that are not
    fitted state (names not ending in ``_``). Pydantic settings are flattened with dots.
    """
    getter = getattr(forecaster, "get_params", None)
    raw = getter() if callable(getter) else vars(forecaster)
    flat: dict[str, str] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if isinstance(value, Mapping):
            for key, item in value.items():
                visit(f"{prefix}.{key}", item)
        else:
            flat[prefix] = str(value)

    for name, value in raw.items():
        if not name.startswith("_") and not name.endswith("_"):
            visit(name, value)
    return flat


def read_feature_importance(forecaster: Forecaster) -> dict[str, float]:
    """Return the importance of each feature [-], empty when the model has none.

    Read from ``feature_importances_`` when it is a mapping, else summed over the LightGBM
    boosters at ``model_.boosters`` (total gain).
    """
    explicit = getattr(forecaster, "feature_importances_", None)
    if isinstance(explicit, Mapping):
        return {str(name): float(value) for name, value in explicit.items()}
    totals: dict[str, float] = defaultdict(float)
    for booster in getattr(getattr(forecaster, "model_", None), "boosters", ()):
        if hasattr(booster, "feature_importance") and hasattr(booster, "feature_name"):
            gains = booster.feature_importance(importance_type="gain")
            for name, gain in zip(booster.feature_name(), gains, strict=True):
                totals[name] += float(gain)
    return dict(totals)


def _load_champion(tracking: Tracking, name: str) -> tuple[LoadedModel | None, str | None]:
    """Return the champion, or None and why it cannot be used (a failed smoke check)."""
    try:
        return load_model_by_alias(tracking, name=name, alias=CHAMPION), None
    except ModelSmokeCheckError as exc:
        return None, str(exc)


def _evaluate_champion(
    champion: LoadedModel, known: pl.DataFrame, *, site: SiteConfig, spec: BacktestSpec
) -> tuple[EvaluationScores | None, str | None]:
    """Score a copy of the champion's forecaster, refit on the same rolling origins."""
    stored = champion.model.forecaster
    try:
        scores = evaluate_forecasters(
            {CHAMPION: lambda _site: copy.deepcopy(stored)}, known, site=site, spec=spec
        )
    except Exception as exc:  # a stored model from older code may fail in any way
        return None, f"champion version {champion.version} could not be evaluated: {exc!r}"
    return scores[CHAMPION], None


def _spec(issued_at: datetime, *, site: SiteConfig, options: TrainingOptions) -> BacktestSpec:
    return build_evaluation_spec(
        issued_at,
        site=site,
        days=options.evaluation_days,
        issue_time=options.issue_time,
        horizon=options.horizon,
        resolution=options.resolution,
        refit_every=options.refit_every,
    )


def select_known_sessions(
    sessions: pl.DataFrame, *, site: SiteConfig, issued_at: datetime
) -> pl.DataFrame:
    """Sessions of ``site`` that ended before ``issued_at``; raise when there are none."""
    known = sessions.filter(
        (pl.col("site_id") == site.site_id) & (pl.col("plug_out_at") < issued_at)
    )
    if known.is_empty():
        msg = (
            f"site {site.site_id!r} has no sessions that ended before {issued_at.isoformat()!r}; "
            "ingest its sessions first (`evcast ingest sessions`) or pass a later --issued-at"
        )
        raise SchemaError(msg)
    return known


def train_site(
    sessions: pl.DataFrame,
    *,
    site: SiteConfig,
    forecaster_factory: ForecasterFactory,
    tracking: Tracking,
    issued_at: datetime,
    options: TrainingOptions | None = None,
) -> TrainingSummary:
    """Train a challenger on the data known at ``issued_at``, evaluate, register, promote.

    Parameters
    ----------
    sessions
        Sessions (``SESSIONS_SCHEMA``) of every site; only those that ended before
        ``issued_at`` are used. The forecaster sees all sites' (a pooled model learns from the
        others); the data window and fingerprint logged are the site's own.
    site
        The site to train.
    forecaster_factory
        Builds a fresh unfitted forecaster for the site (any :class:`models.base.Forecaster`).
    tracking
        The MLflow store (:func:`forecasting.io.tracking.connect_tracking`).
    issued_at
        Training time [UTC]: the end of the known data; evaluation ends by it.
    options
        Evaluation and promotion settings; default :class:`TrainingOptions`.
    """
    options = options or TrainingOptions()
    known = select_known_sessions(sessions, site=site, issued_at=issued_at)
    known_all = sessions.filter(pl.col("plug_out_at") < issued_at)
    name = build_model_name(site.site_id, target=options.target)
    champion, problem = _load_champion(tracking, name)
    spec = _spec(issued_at, site=site, options=options)
    challenger = evaluate_forecasters(
        {CHALLENGER: forecaster_factory}, known_all, site=site, spec=spec
    )[CHALLENGER]
    champion_scores = None
    if champion is not None:
        champion_scores, problem = _evaluate_champion(champion, known_all, site=site, spec=spec)
    decision = decide_promotion(
        challenger.pinball,
        None if champion_scores is None else champion_scores.pinball,
        margin=options.margin,
    )
    fitted = forecaster_factory(site).fit(known_all, site=site, issued_at=issued_at)
    summary = TrainingSummary(
        site_id=site.site_id,
        model_name=name,
        version="",
        run_id="",
        decision=decision,
        challenger=challenger,
        champion=champion_scores,
        champion_version=None if champion is None else champion.version,
        champion_problem=problem,
    )
    return _publish(
        fitted,
        known,
        summary=summary,
        tracking=tracking,
        site=site,
        issued_at=issued_at,
        options=options,
    )


def _scores_text(scores: EvaluationScores | None) -> str:
    return "" if scores is None else repr(scores.pinball)


def _tags(summary: TrainingSummary, *, model_kind: str, target: str) -> dict[str, str]:
    """Tags of the run and of the model version: who, what, both scores and the decision."""
    tags = {
        "site_id": summary.site_id,
        "target": target,
        "model_kind": model_kind,
        "eval_pinball": _scores_text(summary.challenger),
        "eval_mae": repr(summary.challenger.mae),
        "champion_eval_pinball": _scores_text(summary.champion),
        "champion_version": summary.champion_version or "",
        "promotion": CHAMPION if summary.decision.promote else CHALLENGER,
        "promotion_reason": summary.decision.reason,
    }
    if summary.champion_problem:
        tags["champion_problem"] = summary.champion_problem[:4000]
    return tags


def _params(
    forecaster: Forecaster,
    known: pl.DataFrame,
    *,
    issued_at: datetime,
    options: TrainingOptions,
    site: SiteConfig,
) -> dict[str, str]:
    spec = _spec(issued_at, site=site, options=options)
    facts = {
        "issued_at": issued_at.isoformat(),
        "data_start": str(known["plug_in_at"].min()),
        "data_end": str(known["plug_out_at"].max()),
        "sessions": str(known.height),
        "eval_start": spec.start.isoformat(),
        "eval_end": spec.end.isoformat(),
        "eval_issue_time": spec.issue_time.isoformat(),
        "horizon_hours": str(spec.horizon / timedelta(hours=1)),
        "resolution_minutes": str(spec.resolution / timedelta(minutes=1)),
        "refit_every_days": str(spec.refit_every / timedelta(days=1)),
        "margin": str(options.margin),
    }
    hyper = {f"model.{k}": v for k, v in read_hyperparameters(forecaster).items()}
    return facts | hyper


def _publish(
    fitted: Forecaster,
    known: pl.DataFrame,
    *,
    summary: TrainingSummary,
    tracking: Tracking,
    site: SiteConfig,
    issued_at: datetime,
    options: TrainingOptions,
) -> TrainingSummary:
    """Log the run, register the version, and move the alias last."""
    tags = _tags(summary, model_kind=fitted.name, target=options.target)
    metrics = summary.challenger.as_metrics("eval") | {"promoted": float(summary.decision.promote)}
    if summary.champion is not None:
        metrics |= summary.champion.as_metrics("champion_eval")
    tags["data_fingerprint"] = compute_frame_fingerprint(known, ignore=_FINGERPRINT_IGNORES)
    tags["issued_at"] = issued_at.isoformat()
    params = _params(fitted, known, issued_at=issued_at, options=options, site=site)
    params["data_fingerprint"] = tags["data_fingerprint"]
    record = TrainingRecord(
        model=ForecasterModel(fitted, site=site, resolution=options.resolution),
        params=params,
        metrics=metrics,
        tags=tags,
        features=tuple(getattr(fitted, "features_", ())),
        importance=read_feature_importance(fitted),
        example=known.filter(
            pl.col("plug_in_at") >= issued_at - timedelta(days=options.example_days)
        ),
        issued_at=issued_at,
        horizon=options.horizon,
    )
    run_id = log_training_run(tracking, record, run_name=f"{site.site_id}-{issued_at:%Y%m%dT%H%MZ}")
    version = register_model(
        tracking,
        name=summary.model_name,
        run_id=run_id,
        tags=tags,
        model_tags={"site_id": site.site_id, "target": options.target},
    )
    if summary.decision.promote:
        set_alias(tracking, name=summary.model_name, alias=CHAMPION, version=version)
        delete_alias(tracking, name=summary.model_name, alias=CHALLENGER)
    else:
        set_alias(tracking, name=summary.model_name, alias=CHALLENGER, version=version)
    return replace(summary, version=version, run_id=run_id)
