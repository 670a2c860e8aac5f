"""The intraday flow: champion forecasts, and marked baselines when a champion is unusable."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.intraday import floor_issue_time, run_intraday
from forecasting.cli import app
from forecasting.io.forecast_store import open_store, read_latest_run
from forecasting.registry import build_model_name
from forecasting.settings import Settings

TRAINED = "broxden-park-ride-perth"
UNTRAINED = "kinross-park-and-ride-kinross"


@pytest.mark.parametrize(
    ("instant", "every", "expected"),
    [
        pytest.param(
            datetime(2019, 8, 30, 12, 59, 59, tzinfo=UTC),
            timedelta(hours=1),
            datetime(2019, 8, 30, 12, tzinfo=UTC),
            id="hourly",
        ),
        pytest.param(
            datetime(2019, 8, 30, 12, 44, tzinfo=UTC),
            timedelta(minutes=15),
            datetime(2019, 8, 30, 12, 30, tzinfo=UTC),
            id="quarter-hourly",
        ),
    ],
)
def test_floor_issue_time(instant: datetime, every: timedelta, expected: datetime) -> None:
    assert floor_issue_time(instant, every=every) == expected


def _demand_meta(settings: Settings, site_id: str) -> tuple[str, str | None, datetime]:
    stored = read_latest_run(open_store(settings.forecast_store_url), site_id)
    assert stored is not None
    meta = stored.publication.targets["demand"]
    return meta.models["demand"].name, meta.fallback_reason, stored.publication.issued_at


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_intraday_serves_champion_or_marked_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_pipeline: Callable[..., Path]
) -> None:
    monkeypatch.setenv("EVCAST_HOME", str(tmp_path / "home"))
    settings = Settings()
    night = write_pipeline(tmp_path / "night", sites=(TRAINED,))
    args = ["flows", "run", "nightly", "--date", "2019-08-30", "--config", str(night), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output.strip().splitlines()[-1])
    assert facts["sites"][TRAINED]["published"] is True
    assert facts["forecast_store_url"] == settings.forecast_store_url
    assert facts["mlflow_tracking_uri"] == settings.tracking_uri
    both = write_pipeline(tmp_path / "intraday", sites=(TRAINED, UNTRAINED))

    noon = run_intraday(datetime(2019, 8, 30, 12, 20, tzinfo=UTC), config_file=both, ingest=False)

    assert noon.issued_at == datetime(2019, 8, 30, 12, tzinfo=UTC)
    assert _demand_meta(settings, TRAINED) == (build_model_name(TRAINED), None, noon.issued_at)
    name, reason, _ = _demand_meta(settings, UNTRAINED)
    assert name == "seasonal_naive"
    assert reason is not None
    assert "no champion" in reason

    for artifact in (settings.mlflow_dir / "artifacts").rglob("python_model.pkl"):
        artifact.write_bytes(b"not a pickle")  # the stored champion no longer loads

    later = run_intraday(datetime(2019, 8, 30, 13, tzinfo=UTC), config_file=both, ingest=False)

    name, reason, issued = _demand_meta(settings, TRAINED)
    assert (name, issued) == ("seasonal_naive", later.issued_at)
    assert reason is not None
    assert "smoke check" in reason
