"""Shared fixtures: each test gets its own EVCAST_HOME; Prefect and MLflow stay offline, quiet."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from forecasting.io.tracking import Tracking

# Before Prefect or MLflow is imported anywhere: no analytics, no network, quiet logs.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def evcast_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty EVCAST_HOME in a temporary folder, set in the environment."""
    home = tmp_path / "evcast-home"
    monkeypatch.setenv("EVCAST_HOME", str(home))
    return home


@pytest.fixture
def shared_data() -> Path:
    """The shared real data folder; skips the test when it is not beside the repo."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, created once per test session (creation costs seconds)."""
    from mlflow import MlflowClient  # only the tests that use MLflow pay its import

    path = tmp_path_factory.getbasetemp() / "evcast-mlflow-template.db"
    if not path.exists():
        MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking(
    template_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Tracking]:
    """A fresh MLflow store in tmp_path; the working folder is tmp_path, to catch stray ./mlruns."""
    from forecasting.io.tracking import connect_tracking

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow").mkdir()
    shutil.copy(template_db, tmp_path / "mlflow" / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    yield connect_tracking(uri, artifact_root=tmp_path / "mlflow" / "artifacts")
    assert not (tmp_path / "mlruns").exists()
