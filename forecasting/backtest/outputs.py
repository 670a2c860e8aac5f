"""Writing a backtest's output folder (the only file I/O of :mod:`forecasting.backtest`).

The files and their columns are the contract of :mod:`forecasting.backtest.contract`. Each file
is written beside its final name and then renamed over it, so a reader never sees half a file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from forecasting.backtest.contract import ACTUALS_SCHEMA
from forecasting.backtest.engine import BacktestResult
from forecasting.backtest.metrics import BacktestMetrics
from forecasting.errors import StoreError
from forecasting.schemas import FORECAST_SCHEMA

OUTPUT_FILES: tuple[str, ...] = (
    "forecasts.parquet",
    "actuals.parquet",
    "metrics.json",
    "metrics_by_site.csv",
    "report.html",
)


def _atomic(target: Path, write: Callable[[Path], object]) -> None:
    staging = target.with_name(f".{target.name}.tmp")
    write(staging)
    staging.replace(target)


def write_backtest_outputs(
    out_dir: Path,
    result: BacktestResult,
    metrics: BacktestMetrics,
    *,
    report_html: str,
    facts: dict[str, object],
) -> list[Path]:
    """Write the five output files into ``out_dir`` (created if needed); return their paths.

    ``facts`` (the run's parameters) are stored in ``metrics.json`` under ``"run"``.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create the output folder {str(out_dir)!r}: {exc}; choose another --out"
        raise StoreError(msg) from exc
    paths = [out_dir / name for name in OUTPUT_FILES]
    forecasts, actuals, metrics_json, by_site_csv, report = paths
    _atomic(forecasts, result.forecasts.select(list(FORECAST_SCHEMA)).write_parquet)
    _atomic(actuals, result.actuals.select(list(ACTUALS_SCHEMA)).write_parquet)
    document = {"run": facts, **metrics.to_dict()}
    _atomic(
        metrics_json,
        lambda p: p.write_text(json.dumps(document, indent=2, default=str, allow_nan=False)),
    )
    _atomic(by_site_csv, metrics.by_site.write_csv)
    _atomic(report, lambda p: p.write_text(report_html, encoding="utf-8"))
    return paths
