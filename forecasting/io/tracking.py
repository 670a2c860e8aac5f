"""MLflow adapter: training runs, the model registry, champion loading with a smoke check.

This module logs training runs (params, metrics, features, importance plot, the model saved with
:func:`mlflow.pyfunc.save_model` into a temporary folder and uploaded as the run's ``model``
artifact). It also re-exports the rest of the adapter, so callers import from here:

- the connection and retries: :mod:`forecasting.io.tracking_store`;
- the registry, aliases, loading and listing: :mod:`forecasting.io.tracking_registry`;
- the stored model and its smoke check: :mod:`forecasting.io.tracking_model`.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl
from matplotlib.figure import Figure
from mlflow.entities import Metric, Param

from forecasting.io.tracking_model import ForecasterModel, save_forecaster_model
from forecasting.io.tracking_registry import (
    CHALLENGER,
    CHAMPION,
    LoadedModel,
    ModelSummary,
    VersionSummary,
    delete_alias,
    get_version,
    list_models,
    load_model_by_alias,
    read_aliases,
    register_model,
    set_alias,
)
from forecasting.io.tracking_store import (
    EXPERIMENT,
    MODEL_ARTIFACT,
    RetryPolicy,
    Tracking,
    call_store,
    call_with_retries,
    connect_tracking,
    is_transient,
)

_PARAM_MAX: Final = 500

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "EXPERIMENT",
    "MODEL_ARTIFACT",
    "LoadedModel",
    "ModelSummary",
    "RetryPolicy",
    "Tracking",
    "TrainingRecord",
    "VersionSummary",
    "build_importance_figure",
    "call_with_retries",
    "connect_tracking",
    "delete_alias",
    "get_version",
    "is_transient",
    "list_models",
    "load_model_by_alias",
    "log_training_run",
    "read_aliases",
    "register_model",
    "set_alias",
]


@dataclass(frozen=True)
class TrainingRecord:
    """Everything one training run logs.

    Attributes
    ----------
    model
        The fitted forecaster wrapped for MLflow.
    params
        Hyperparameters and data facts (window, fingerprint, evaluation spec), as strings.
    metrics
        Scores on the held-back period and the promotion outcome (``promoted`` 1 or 0).
    tags
        Run tags (``site_id``, ``target``, ``promotion_reason``, ...).
    features
        Feature columns of the model, in order; empty for models without features.
    importance
        Importance per feature (e.g. LightGBM gain); empty when the model has none.
    example
        Smoke input stored with the model: sessions known at ``issued_at``.
    issued_at, horizon
        Example params of the pyfunc model.
    """

    model: ForecasterModel
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    features: Sequence[str]
    importance: Mapping[str, float]
    example: pl.DataFrame
    issued_at: datetime
    horizon: timedelta


def build_importance_figure(importance: Mapping[str, float], *, top: int = 25) -> Figure:
    """Return a horizontal bar chart of the ``top`` most important features (no pyplot)."""
    ranked = sorted(importance.items(), key=lambda item: item[1])[-top:]
    figure = Figure(figsize=(7, 0.3 * len(ranked) + 1.2), layout="constrained")
    axes = figure.add_subplot()
    axes.barh([name for name, _ in ranked], [value for _, value in ranked], color="#3b6ea5")
    axes.set_xlabel("importance (total gain) [-]")
    axes.set_title("feature importance")
    return figure


def log_training_run(tracking: Tracking, record: TrainingRecord, *, run_name: str) -> str:
    """Log one training run (params, metrics, tags, features, importance plot, model).

    Returns the run id. On failure the run is marked ``FAILED`` (when the store still answers)
    and the error propagates; nothing is registered.
    """
    client = tracking.client
    run = call_store(
        tracking,
        "create a run",
        lambda: client.create_run(
            tracking.experiment_id, run_name=run_name, tags=dict(record.tags)
        ),
    )
    run_id = run.info.run_id
    try:
        _log_run_content(tracking, run_id, record)
    except BaseException:
        with contextlib.suppress(Exception):  # the store may be failing: keep the first error
            client.set_terminated(run_id, status="FAILED")
        raise
    call_store(tracking, "finish the run", lambda: client.set_terminated(run_id, status="FINISHED"))
    return run_id


def _log_run_content(tracking: Tracking, run_id: str, record: TrainingRecord) -> None:
    client = tracking.client
    stamp = int(record.issued_at.timestamp() * 1000)
    params = [Param(k, str(v)[:_PARAM_MAX]) for k, v in sorted(record.params.items())]
    metrics = [Metric(k, float(v), stamp, 0) for k, v in sorted(record.metrics.items())]
    for start in range(0, max(len(params), len(metrics)), 100):
        chunk_params, chunk_metrics = params[start : start + 100], metrics[start : start + 100]
        call_store(
            tracking,
            "log params and metrics",
            functools.partial(client.log_batch, run_id, metrics=chunk_metrics, params=chunk_params),
        )
    features = {"features": list(record.features), "importance": dict(record.importance)}
    call_store(tracking, "log features", lambda: client.log_dict(run_id, features, "features.json"))
    if record.importance:
        figure = build_importance_figure(record.importance)
        call_store(
            tracking,
            "log the importance plot",
            lambda: client.log_figure(run_id, figure, "feature_importance.png"),
        )
    with tempfile.TemporaryDirectory(prefix="evcast-model-") as tmp:
        folder = Path(tmp) / MODEL_ARTIFACT
        save_forecaster_model(
            record.model,
            folder,
            example=record.example,
            issued_at=record.issued_at,
            horizon=record.horizon,
        )
        call_store(
            tracking,
            "upload the model",
            lambda: client.log_artifacts(run_id, str(folder), MODEL_ARTIFACT),
        )
