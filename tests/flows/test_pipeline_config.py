"""The pipeline config of the flows (forecasting/pipeline_config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forecasting.errors import ConfigError
from forecasting.pipeline_config import load_pipeline_config
from forecasting.settings import REPO_ROOT


def test_bundled_pipeline_config_loads_and_its_sources_exist() -> None:
    config = load_pipeline_config(REPO_ROOT / "configs" / "pipeline.toml")
    files = [f for source in config.sources for f in source.files()]
    assert files
    assert all(f.is_file() for f in files)
    assert config.schedules.timezone == "Europe/London"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("[forecast]\nhorizon_hours = 0\n", "horizon_hours", id="out-of-bounds"),
        pytest.param("[forecast]\nhorison_hours = 24\n", "horison_hours", id="typo"),
        pytest.param("[schedules]\ntimezone = 'Mars/Olympus'\n", "Mars/Olympus", id="timezone"),
        pytest.param("[schedules]\nnightly_cron = 'nightly'\n", "five numeric", id="cron"),
        pytest.param(
            "[[sources]]\npath = 'w.csv'\nkind = 'weather'\nformat = 'psm3'\n",
            "needs `site",
            id="weather-without-site",
        ),
    ],
)
def test_invalid_pipeline_config_names_file_and_field(
    tmp_path: Path, text: str, match: str
) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_pipeline_config(path)
    assert str(path) in str(info.value)
