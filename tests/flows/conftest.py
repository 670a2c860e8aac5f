"""Flow tests run for real under one temporary Prefect server (prefect_test_harness).

Each flow run uses its own EVCAST_HOME (lake, MLflow SQLite store, forecast store) and a small
pipeline: the bundled Perth & Kinross sample, one or two sites, a 24 h horizon and the
smallest LightGBM settings, so a nightly run takes seconds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forecasting.settings import REPO_ROOT

# Prefect reads PREFECT_HOME when first imported: keep its files out of the user's home.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="evcast-prefect-home-"))
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

PERTH_SAMPLE = REPO_ROOT / "data" / "sample" / "sessions" / "perth-kinross"

_DEMAND_TOML = """
resolution_minutes = 60
horizon_hours = 24
training_days = 21
calibration_days = 7
min_history_days = 7
settle_hours = 12

[lightgbm]
num_boost_round = 10
num_leaves = 7
min_data_in_leaf = 20
num_threads = 1
"""


def _write_pipeline(folder: Path, *, sites: tuple[str, ...]) -> Path:
    """Write a small pipeline.toml (and the demand config it names) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    demand = folder / "demand.toml"
    demand.write_text(_DEMAND_TOML)
    pipeline = folder / "pipeline.toml"
    pipeline.write_text(
        f"""
[[sources]]
path = "{PERTH_SAMPLE}"
kind = "sessions"
format = "chargeplace"

[forecast]
horizon_hours = 24
sites = {list(sites)!r}

[training]
demand_config = "{demand}"
evaluation_days = 2

[retries]
io_retries = 2
backoff_seconds = 0.1
jitter_factor = 0.0
""".replace("'", '"')
    )
    return pipeline


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server and database for every flow test (start-up: ~10-30 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def write_pipeline() -> Callable[..., Path]:
    """Write a small pipeline.toml for ``sites`` into a folder; return its path."""
    return _write_pipeline
