"""``evcast backtest`` end to end: the bundled sample ingested by the CLI, then backtested."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

import forecasting.cli  # noqa: F401  (registers every command on the app)
from forecasting.backtest.contract import ACTUALS_SCHEMA, check_forecasts
from forecasting.cli.app import app
from forecasting.errors import ConfigError, UnknownSiteError
from forecasting.schemas import FORECAST_SCHEMA
from forecasting.settings import REPO_ROOT, Settings

PERTH = (
    REPO_ROOT
    / "data"
    / "sample"
    / "sessions"
    / "perth-kinross"
    / "sept18toaug19standardisedcorrected.csv"
)
SITE = "leslie-street-car-park-blairgowrie"


def invoke(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output, result.exception


@pytest.mark.slow
def test_backtest_of_the_sample_writes_the_contract_and_logs_to_mlflow(
    evcast_home: Path, tmp_path: Path
) -> None:
    if not PERTH.exists():
        pytest.skip(f"bundled sample not found at {PERTH}")
    code, output, _ = invoke("ingest", "sessions", str(PERTH), "--format", "chargeplace")
    assert code == 0, output
    out = tmp_path / "bt"
    code, output, error = invoke(
        "backtest", "--start", "2019-03-30", "--end", "2019-04-01", "--site", SITE,
        "--models", "demand,seasonal_naive,persistence", "--out", str(out), "--json",
    )  # fmt: skip
    assert code == 0, (output, error)
    summary = json.loads(output.strip().splitlines()[-1])
    assert sorted(p.name for p in out.iterdir()) == [
        "actuals.parquet", "forecasts.parquet", "metrics.json", "metrics_by_site.csv",
        "report.html",
    ]  # fmt: skip

    forecasts = pl.read_parquet(out / "forecasts.parquet")
    assert forecasts.schema == pl.Schema(FORECAST_SCHEMA)
    check_forecasts(forecasts)  # types, ordering, duplicates, issued_at <= interval_start
    per_model = forecasts.group_by("model").len().sort("model")
    # 2019-03-31 is the spring-forward day: 24 + 23 + 24 local hours per model
    assert per_model.to_dicts() == [
        {"model": m, "len": 71} for m in ("demand", "persistence", "seasonal_naive")
    ]
    actuals = pl.read_parquet(out / "actuals.parquet")
    assert actuals.schema == pl.Schema(ACTUALS_SCHEMA)
    assert actuals.height == 71

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models"] == ["demand", "persistence", "seasonal_naive"]
    assert metrics["run"]["sites"] == SITE
    assert set(metrics["overall"]["demand"]) >= {"mae", "pinball", "crps", "coverage_80"}
    assert pl.read_csv(out / "metrics_by_site.csv")["site_id"].unique().to_list() == [SITE]
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") >= 5
    # opens offline: no external reference (base64 image data may contain "http" by chance)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?https?:""", report)

    client = MlflowClient(tracking_uri=Settings().tracking_uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.metrics["demand/mae"] == pytest.approx(metrics["overall"]["demand"]["mae"])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"report.html"}
    assert not (Path.cwd() / "mlruns").exists()


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        pytest.param(["--site", "nowhere"], UnknownSiteError, "nowhere", id="unknown-site"),
        pytest.param(["--target", "pv"], ConfigError, "run `evcast ingest pv` first", id="no-pv"),
        pytest.param(["--target", "wind"], ConfigError, "is not one of", id="unknown-target"),
        pytest.param(["--target", "pv", "--models", "demand"], ConfigError, "PV model", id="pv-m"),
        pytest.param(["--horizon", "1 week"], ConfigError, "positive duration", id="bad-horizon"),
        pytest.param(["--models", "arima"], ConfigError, "unknown or no model", id="bad-model"),
        pytest.param([], ConfigError, "run `evcast ingest sessions` first", id="empty-lake"),
    ],
)
def test_bad_requests_are_refused_with_a_hint(
    evcast_home: Path, tmp_path: Path, args: list[str], error: type[Exception], match: str
) -> None:
    code, _, exception = invoke(
        "backtest", "--start", "2019-06-01", "--end", "2019-06-02", "--out", str(tmp_path),
        "--no-mlflow", *args,
    )  # fmt: skip
    assert code != 0
    assert isinstance(exception, error)
    assert match in str(exception)


@pytest.mark.slow
def test_a_discovered_site_is_backtested_in_its_own_time_zone(
    evcast_home: Path, tmp_path: Path
) -> None:
    sample = REPO_ROOT / "data" / "sample" / "sessions" / "trondheim-residential"
    column_map = REPO_ROOT / "configs" / "sources" / "trondheim.toml"
    if not sample.is_dir() or not column_map.exists():
        pytest.skip("Trondheim sample or its column map is missing")
    code, output, _ = invoke(
        "ingest", "sessions", *map(str, sorted(sample.glob("*.csv"))), "--format", "csv",
        "--column-map", str(column_map),
    )  # fmt: skip
    assert code == 0, output
    out = tmp_path / "bt"
    code, output, error = invoke(
        "backtest", "--start", "2019-11-01", "--end", "2019-11-02", "--out", str(out),
        "--models", "seasonal_naive,persistence", "--no-mlflow",
    )  # fmt: skip
    assert code == 0, (output, error)
    forecasts = pl.read_parquet(out / "forecasts.parquet")
    assert forecasts["site_id"].unique().to_list() == ["trondheim-bl2"]  # not in sites.toml
    local = forecasts["issued_at"].dt.convert_time_zone("Europe/Oslo")
    assert set(local.dt.hour().to_list()) == {0}  # local midnight issues
    assert forecasts.height == 2 * 2 * 24
