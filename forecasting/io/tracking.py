"""MLflow adapter: training runs, the model registry, champion loading with a smoke check.

Everything goes through one :class:`mlflow.MlflowClient` with explicit run ids (the fluent
``mlflow.log_*`` API keeps thread-local state and misbehaves inside Prefect worker threads), and
nothing sets MLflow's global tracking URI. Models are saved with :func:`mlflow.pyfunc.save_model`
into a temporary folder and uploaded as the run's ``model`` artifact, then registered as a new
version of ``evcast-<site_id>-<target>``.

Every call to the store is retried on transient errors (connection refused or reset, timeouts,
5xx answers, a locked SQLite file) with exponential backoff, a bounded number of times, then
fails with :class:`forecasting.errors.StoreError`. MLflow's own HTTP client retries too; bound
it with ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT``.

The stored model and its smoke check are in :mod:`forecasting.io.tracking_model`.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, TypeVar

import mlflow.artifacts
import polars as pl
import requests
import sqlalchemy.exc
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException

from forecasting.errors import StoreError
from forecasting.io.tracking_model import (
    ForecasterModel,
    ModelSmokeCheckError,
    check_model_folder,
    save_forecaster_model,
)

EXPERIMENT: Final = "evcast-training"
CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
MODEL_ARTIFACT: Final = "model"
_PARAM_MAX: Final = 500

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff: waits of ``first_delay_s * 2**k`` [s]."""

    attempts: int = 4
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0


@dataclass(frozen=True)
class Tracking:
    """An MLflow store to log to: client, experiment, and the retry policy of every call."""

    client: MlflowClient
    experiment_id: str
    tracking_uri: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def is_transient(error: BaseException) -> bool:
    """Whether an error (or one it was raised from) is worth retrying: a connection problem."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
        if isinstance(seen, requests.exceptions.RetryError):
            return True
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and (
            seen.connection_invalidated
            or any(w in str(seen).lower() for w in ("locked", "could not connect", "timeout"))
        ):
            return True
        if isinstance(seen, MlflowException) and seen.get_http_status_code() in {429, 502, 503}:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_STORE_ERRORS: Final = (MlflowException, OSError, sqlalchemy.exc.SQLAlchemyError)
"""Errors of the store itself; other exceptions are bugs and propagate unchanged."""


def call_with_retries(
    action: Callable[[], T], *, policy: RetryPolicy, what: str, uri: str = ""
) -> T:
    """Run ``action``, retrying transient errors with backoff.

    Raises :class:`StoreError` when the store still fails after ``policy.attempts`` tries, or
    at once when it refuses the call for another reason (e.g. a missing artifact folder).
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return action()
        except _STORE_ERRORS as exc:
            if not is_transient(exc):
                msg = f"mlflow store {uri!r} failed to {what}: {exc}"
                raise StoreError(msg) from exc
            if attempt == policy.attempts:
                msg = (
                    f"mlflow store {uri!r} did not answer while trying to {what} "
                    f"({policy.attempts} attempts): {exc}; check EVCAST_MLFLOW_TRACKING_URI "
                    "and that the server is up"
                )
                raise StoreError(msg) from exc
            time.sleep(min(policy.first_delay_s * 2 ** (attempt - 1), policy.max_delay_s))
    msg = f"retry policy {policy!r} allows no attempt; use attempts >= 1"
    raise StoreError(msg)


def _call(tracking: Tracking, what: str, action: Callable[[], T]) -> T:
    return call_with_retries(action, policy=tracking.retry, what=what, uri=tracking.tracking_uri)


def connect_tracking(
    tracking_uri: str,
    *,
    artifact_root: Path,
    experiment: str = EXPERIMENT,
    retry: RetryPolicy | None = None,
) -> Tracking:
    """Open the MLflow store at ``tracking_uri`` and make sure the experiment exists.

    A new experiment keeps its artifacts under ``artifact_root`` (e.g. EVCAST_HOME/mlflow/
    artifacts), so nothing is written to ``./mlruns``. For a ``sqlite:///`` URI the folder of
    the database file is created.
    """
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    policy = retry if retry is not None else RetryPolicy()
    found = call_with_retries(
        lambda: client.get_experiment_by_name(experiment),
        policy=policy,
        what=f"read experiment {experiment!r}",
        uri=tracking_uri,
    )
    if found is not None:
        return Tracking(client, found.experiment_id, tracking_uri, policy)
    artifact_root.mkdir(parents=True, exist_ok=True)
    experiment_id = call_with_retries(
        lambda: client.create_experiment(
            experiment, artifact_location=artifact_root.resolve().as_uri()
        ),
        policy=policy,
        what=f"create experiment {experiment!r}",
        uri=tracking_uri,
    )
    return Tracking(client, experiment_id, tracking_uri, policy)


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
    run = _call(
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
    _call(tracking, "finish the run", lambda: client.set_terminated(run_id, status="FINISHED"))
    return run_id


def _log_run_content(tracking: Tracking, run_id: str, record: TrainingRecord) -> None:
    client = tracking.client
    stamp = int(record.issued_at.timestamp() * 1000)
    params = [Param(k, str(v)[:_PARAM_MAX]) for k, v in sorted(record.params.items())]
    metrics = [Metric(k, float(v), stamp, 0) for k, v in sorted(record.metrics.items())]
    for start in range(0, max(len(params), len(metrics)), 100):
        chunk_params, chunk_metrics = params[start : start + 100], metrics[start : start + 100]
        _call(
            tracking,
            "log params and metrics",
            functools.partial(client.log_batch, run_id, metrics=chunk_metrics, params=chunk_params),
        )
    features = {"features": list(record.features), "importance": dict(record.importance)}
    _call(tracking, "log features", lambda: client.log_dict(run_id, features, "features.json"))
    if record.importance:
        figure = build_importance_figure(record.importance)
        _call(
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
        _call(
            tracking,
            "upload the model",
            lambda: client.log_artifacts(run_id, str(folder), MODEL_ARTIFACT),
        )


def register_model(
    tracking: Tracking,
    *,
    name: str,
    run_id: str,
    tags: Mapping[str, str],
    model_tags: Mapping[str, str],
) -> str:
    """Register the run's ``model`` artifact as a new version of ``name``; return the version.

    The registered model is created on first use, tagged with ``model_tags`` (``site_id``,
    ``target``); ``tags`` go on the version. No alias is set here: see :func:`set_alias`.
    """
    client = tracking.client
    if _find_registered_model(tracking, name) is None:
        _call(
            tracking,
            f"create registered model {name!r}",
            lambda: client.create_registered_model(name, tags=dict(model_tags)),
        )
    run = _call(tracking, f"read run {run_id!r}", lambda: client.get_run(run_id))
    source = f"{run.info.artifact_uri}/{MODEL_ARTIFACT}"
    version = _call(
        tracking,
        f"create a version of {name!r}",
        lambda: client.create_model_version(name, source, run_id=run_id, tags=dict(tags)),
    )
    return str(version.version)


def _find_registered_model(tracking: Tracking, name: str) -> RegisteredModel | None:
    found = _call(
        tracking,
        f"find registered model {name!r}",
        lambda: tracking.client.search_registered_models(filter_string=f"name = '{name}'"),
    )
    return found[0] if found else None


def read_aliases(tracking: Tracking, name: str) -> dict[str, str]:
    """Return the aliases of a registered model (alias to version); empty when it is absent."""
    model = _find_registered_model(tracking, name)
    if model is None:
        return {}
    return {alias: str(version) for alias, version in model.aliases.items()}


def set_alias(tracking: Tracking, *, name: str, alias: str, version: str) -> None:
    """Point ``alias`` of registered model ``name`` at ``version``."""
    _call(
        tracking,
        f"set alias {alias!r} of {name!r} to version {version}",
        lambda: tracking.client.set_registered_model_alias(name, alias, version),
    )


def delete_alias(tracking: Tracking, *, name: str, alias: str) -> None:
    """Remove ``alias`` from registered model ``name``, if it is set."""
    if alias in read_aliases(tracking, name):
        _call(
            tracking,
            f"delete alias {alias!r} of {name!r}",
            lambda: tracking.client.delete_registered_model_alias(name, alias),
        )


def get_version(tracking: Tracking, *, name: str, version: str) -> ModelVersion:
    """Return a model version (tags, run id, source)."""
    return _call(
        tracking,
        f"read version {version} of {name!r}",
        lambda: tracking.client.get_model_version(name, version),
    )


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version that passed its smoke check."""

    name: str
    version: str
    alias: str
    run_id: str
    model: ForecasterModel
    tags: Mapping[str, str]


def load_model_by_alias(tracking: Tracking, *, name: str, alias: str) -> LoadedModel | None:
    """Load the version ``alias`` points at and check it forecasts its stored smoke input.

    Returns None when ``name`` has no such alias. Raises :class:`ModelSmokeCheckError` when
    the version cannot be downloaded or loaded, or its smoke forecast is not one finite,
    ordered, non-negative row per interval (the caller falls back to a marked baseline), and
    :class:`StoreError` when the store does not answer.
    """
    version_id = read_aliases(tracking, name).get(alias)
    if version_id is None:
        return None
    version = get_version(tracking, name=name, version=version_id)
    where = f"model {name!r} version {version_id} ({alias})"
    with tempfile.TemporaryDirectory(prefix="evcast-load-") as tmp:
        try:
            local = _call(
                tracking,
                f"download {where}",
                lambda: mlflow.artifacts.download_artifacts(
                    artifact_uri=version.source, dst_path=tmp, tracking_uri=tracking.tracking_uri
                ),
            )
        except StoreError as exc:
            if is_transient(exc):
                raise
            msg = f"{where} cannot be downloaded: {exc}; serve the baseline and retrain it"
            raise ModelSmokeCheckError(msg) from exc
        wrapped = check_model_folder(Path(local), where=where)
    return LoadedModel(name, version_id, alias, str(version.run_id), wrapped, dict(version.tags))


@dataclass(frozen=True)
class VersionSummary:
    """One aliased model version and its scores (mean pinball loss [kWh])."""

    version: str
    run_id: str
    model_kind: str | None
    trained_at: str | None
    score: float | None
    champion_score: float | None
    promotion: str | None


@dataclass(frozen=True)
class ModelSummary:
    """A registered model (one site and target) with its champion and challenger."""

    name: str
    site_id: str | None
    target: str | None
    champion: VersionSummary | None
    challenger: VersionSummary | None


def _float_tag(tags: Mapping[str, str], key: str) -> float | None:
    value = tags.get(key)
    return None if value in (None, "", "None") else float(value)


def _summarise_version(tracking: Tracking, name: str, version: str | None) -> VersionSummary | None:
    if version is None:
        return None
    found = get_version(tracking, name=name, version=version)
    tags = dict(found.tags)
    return VersionSummary(
        version=version,
        run_id=str(found.run_id),
        model_kind=tags.get("model_kind"),
        trained_at=tags.get("issued_at"),
        score=_float_tag(tags, "eval_pinball"),
        champion_score=_float_tag(tags, "champion_eval_pinball"),
        promotion=tags.get("promotion"),
    )


def list_models(tracking: Tracking, *, prefix: str) -> list[ModelSummary]:
    """Every registered model whose name starts with ``prefix``, with champion and challenger."""
    models: list[RegisteredModel] = []
    token: str | None = None
    while True:
        page = _call(
            tracking,
            "list registered models",
            functools.partial(
                tracking.client.search_registered_models,
                filter_string=f"name LIKE '{prefix}%'",
                page_token=token,
            ),
        )
        models.extend(page)
        token = page.token
        if not token:
            break
    summaries = []
    for model in sorted(models, key=lambda m: m.name):
        aliases = {alias: str(version) for alias, version in model.aliases.items()}
        summaries.append(
            ModelSummary(
                name=model.name,
                site_id=model.tags.get("site_id"),
                target=model.tags.get("target"),
                champion=_summarise_version(tracking, model.name, aliases.get(CHAMPION)),
                challenger=_summarise_version(tracking, model.name, aliases.get(CHALLENGER)),
            )
        )
    return summaries
