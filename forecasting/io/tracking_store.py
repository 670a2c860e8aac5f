"""MLflow adapter, the connection: one client per store, and bounded retries of every call.

Everything goes through one :class:`mlflow.MlflowClient` with explicit run ids (the fluent
``mlflow.log_*`` API keeps thread-local state and misbehaves inside Prefect worker threads), and
nothing sets MLflow's global tracking URI.

Every call to the store is retried on transient errors (connection refused or reset, timeouts,
5xx answers, a locked SQLite file) with exponential backoff, a bounded number of times, then
fails with :class:`forecasting.errors.StoreError`. MLflow's own HTTP client retries too; bound
it with ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

import requests
import sqlalchemy.exc
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from forecasting.errors import StoreError

EXPERIMENT: Final = "evcast-training"
MODEL_ARTIFACT: Final = "model"
"""Artifact path of the stored model inside a training run."""

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


def call_store(tracking: Tracking, what: str, action: Callable[[], T]) -> T:
    """Run ``action`` against ``tracking`` with its retry policy (see :func:`call_with_retries`)."""
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
