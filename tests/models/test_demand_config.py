from __future__ import annotations

from pathlib import Path

import pytest

from forecasting.errors import ConfigError
from models.demand_config import DemandConfig, LightGBMParams, lightgbm_params, load_demand_config
from tests.conftest import REPO_ROOT


def test_repository_config_loads():
    config = load_demand_config(REPO_ROOT / "configs" / "demand.toml")
    assert config.horizon_hours == 48
    assert config.lightgbm.num_threads == 1
    assert config.pooling == "hybrid"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("horizon_hours = 72\n", "horizon_hours", id="horizon-above-48h"),
        pytest.param("typo_days = 3\n", "typo_days", id="unknown-key"),
        pytest.param("[lightgbm]\nlearning_rate = 0\n", "learning_rate", id="zero-learning-rate"),
        pytest.param("resolution_minutes = 25\n", "must divide 60", id="resolution-25min"),
        pytest.param('pooling = "tails"\n', "pooling", id="unknown-pooling"),
        pytest.param(
            "training_days = 20\ncalibration_days = 20\n", "below training_days", id="cal>=train"
        ),
    ],
)
def test_invalid_config_names_file_and_field(tmp_path: Path, text: str, match: str):
    path = tmp_path / "demand.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"(?s)demand.toml.*{match}"):
        load_demand_config(path)


def test_config_is_frozen():
    config = DemandConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.horizon_hours = 24  # type: ignore[misc]


def test_lightgbm_params_are_deterministic():
    params = lightgbm_params(LightGBMParams(seed=7, num_threads=2), alpha=0.9)
    assert params["deterministic"] is True
    assert params["force_row_wise"] is True
    assert (params["seed"], params["num_threads"], params["alpha"]) == (7, 2, 0.9)
