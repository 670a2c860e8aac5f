"""Shared fixtures: each test gets its own EVCAST_HOME; Prefect and MLflow stay offline, quiet."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
