"""The HTML report and the output folder, on a small real backtest of synthetic sessions."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from forecasting.backtest.engine import BacktestResult, run_backtest
from forecasting.backtest.grid import BacktestSpec
from forecasting.backtest.metrics import BacktestMetrics, compute_backtest_metrics
from forecasting.backtest.models import build_factories
from forecasting.backtest.outputs import OUTPUT_FILES, write_backtest_outputs
from forecasting.backtest.report import build_report_html
from forecasting.config import SiteConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def backtest(london_site: SiteConfig, make_sessions) -> tuple[BacktestResult, BacktestMetrics]:
    sessions = make_sessions(london_site.site_id, datetime(2019, 5, 1, tzinfo=UTC), days=40)
    spec = BacktestSpec(start=date(2019, 6, 1), end=date(2019, 6, 4))
    factories = build_factories(
        ["seasonal_naive", "persistence"], sites=[london_site], resolution=spec.resolution
    )
    result = run_backtest(sessions, sites=[london_site], factories=factories, spec=spec)
    marked = result.forecasts.with_columns(
        note=pl.when(pl.col("interval_start") == pl.col("issued_at"))
        .then(pl.lit("<stand-in> & co"))
        .otherwise(pl.col("note"))
    )
    result = BacktestResult(forecasts=marked, actuals=result.actuals, grid=result.grid)
    metrics = compute_backtest_metrics(
        result.forecasts,
        result.actuals,
        resolution=timedelta(hours=1),
        timezones={london_site.site_id: london_site.timezone},
    )
    return result, metrics


def test_the_report_is_self_contained_with_every_plot(
    backtest: tuple[BacktestResult, BacktestMetrics],
) -> None:
    result, metrics = backtest
    page = build_report_html(
        result.forecasts,
        result.actuals,
        metrics,
        title="t <1>",
        facts={"start": "2019-06-01"},
        timezones={"test-site": "Europe/London"},
    )
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    # calibration, error by step, error by hour, skill per site, one fan chart for the site
    assert len(images) == 5
    assert all(base64.b64decode(i).startswith(PNG_MAGIC) for i in images)
    assert re.search(r"(src|href)=\"(?!data:)", page) is None  # nothing fetched when opened
    for heading in ("Calibration", "Error by horizon step", "Skill per site", "Sample days"):
        assert f"<h2>{heading}" in page
    assert "t &lt;1&gt;" in page
    assert "&lt;stand-in&gt; &amp; co" in page  # notes are counted and escaped


def test_the_output_folder_holds_the_five_files(
    backtest: tuple[BacktestResult, BacktestMetrics], tmp_path: Path
) -> None:
    result, metrics = backtest
    out = tmp_path / "new" / "folder"
    paths = write_backtest_outputs(
        out, result, metrics, report_html="<html></html>", facts={"models": "a,b"}
    )
    assert [p.name for p in paths] == list(OUTPUT_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)  # no temporary left
    document = json.loads((out / "metrics.json").read_text())
    assert document["run"] == {"models": "a,b"}
    assert document["n_intervals"] == metrics.n_intervals == result.grid.height
    by_site = pl.read_csv(out / "metrics_by_site.csv")
    assert by_site["model"].to_list() == ["persistence", "seasonal_naive"]
    assert pl.read_parquet(out / "forecasts.parquet").equals(result.forecasts)
