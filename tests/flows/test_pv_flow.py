"""The nightly flow publishes PV for the sample's PV-only site (SERF East), for real."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from flows.intraday import run_intraday
from flows.nightly import run_nightly
from forecasting.io.forecast_store import open_store, read_latest_run
from forecasting.settings import REPO_ROOT, Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

NIGHT = date(2016, 10, 1)
SITE = "serf-east"
SAMPLE = REPO_ROOT / "data" / "sample"


def _write_solar_pipeline(folder: Path) -> Path:
    """A pipeline ingesting only SERF East weather and PV (no sessions), every site chosen."""
    folder.mkdir(parents=True, exist_ok=True)
    pipeline = folder / "pipeline.toml"
    pipeline.write_text(
        f"""
[[sources]]
path = "{SAMPLE / "weather" / "serf_east_psm3_data.csv"}"
kind = "weather"
format = "psm3"
site = "serf-east"
weather_kind = "observation"

[[sources]]
path = "{SAMPLE / "pv" / "serf_east_15min_ac_power.csv"}"
kind = "pv"
format = "pvdaq"
site = "serf-east"

[forecast]
horizon_hours = 24
sites = []

[retries]
io_retries = 1
backoff_seconds = 0.1
jitter_factor = 0.0
"""
    )
    return pipeline


def test_flows_publish_pv_of_pv_only_site_idempotently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVCAST_HOME", str(tmp_path / "home"))
    settings = Settings()
    pipeline = _write_solar_pipeline(tmp_path / "config")

    first = run_nightly(NIGHT, config_file=pipeline)

    assert first.published == [SITE]
    facts = first.sites[SITE]
    assert facts["trained"] is False
    assert facts["pv_model"] == "solar vfitted_at_issue"
    stored = read_latest_run(open_store(settings.forecast_store_url), SITE)
    assert stored is not None
    publication = stored.publication
    assert publication.issued_at == datetime(2016, 10, 1, tzinfo=UTC)
    assert publication.targets["demand"].fallback_reason is not None
    assert "clear-sky" in (publication.targets["pv"].fallback_reason or "")
    pv = publication.intervals.filter(pl.col("target") == "pv")
    assert pv.height == 24
    cap_kwh = 5.4 + 1e-6  # AC rating [kW] x 1 h intervals, plus the published rounding
    assert pv.filter(
        (pl.col("p10") < 0)
        | (pl.col("p10") > pl.col("p50"))
        | (pl.col("p50") > pl.col("p90"))
        | (pl.col("p90") > cap_kwh)
    ).is_empty()
    assert pv["p50"].sum() > 5.0  # one early-October day of a 5.4 kW system [kWh]
    net = publication.intervals.filter(pl.col("target") == "net").sort("interval_start")
    assert net["p50"].to_list() == (-pv.sort("interval_start")["p50"]).to_list()

    again = run_nightly(NIGHT, config_file=pipeline)

    assert again.published == []
    assert again.sites[SITE]["run_id"] == facts["run_id"]

    later = run_intraday(datetime(2016, 10, 1, 6, tzinfo=UTC), config_file=pipeline, ingest=False)

    assert later.published == [SITE]
    assert later.sites[SITE]["pv_model"] == "solar vfitted_at_issue"
