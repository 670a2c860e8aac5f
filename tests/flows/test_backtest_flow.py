"""The backtest flow writes the same output contract as `evcast backtest`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from flows.backtest import backtest
from flows.ingest import ingest_sources
from forecasting.backtest.contract import check_forecasts
from forecasting.config import load_sites
from forecasting.pipeline_config import load_pipeline_config
from forecasting.settings import Settings

SITE = "broxden-park-ride-perth"


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_backtest_flow_writes_contract_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_pipeline: Callable[..., Path]
) -> None:
    monkeypatch.setenv("EVCAST_HOME", str(tmp_path / "home"))
    pipeline = write_pipeline(tmp_path / "config", sites=(SITE,))
    config = load_pipeline_config(pipeline)
    ingest_sources(
        config,
        sites=load_sites(Settings().sites_file),
        ingested_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    out = tmp_path / "out"

    paths = backtest(
        date(2019, 8, 26),
        date(2019, 8, 27),
        out,
        sites=[SITE],
        models=["seasonal_naive", "persistence"],
        config_file=pipeline,
    )

    assert {p.name for p in paths} >= {"forecasts.parquet", "actuals.parquet", "metrics.json"}
    forecasts = pl.read_parquet(out / "forecasts.parquet")
    check_forecasts(forecasts)
    assert set(forecasts["model"].unique()) == {"seasonal_naive", "persistence"}
    assert forecasts["issued_at"].dt.convert_time_zone(
        "Europe/London"
    ).dt.date().unique().sort().to_list() == [
        date(2019, 8, 26),
        date(2019, 8, 27),
    ]
