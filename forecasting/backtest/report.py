"""A backtest report a person can read: one self-contained HTML page (plots as embedded PNGs).

Sections: the run (window, sites, models, intervals scored), notes (how many rows were
fallbacks or stand-ins, by model and note), the overall score table, fan charts of a few sample
days per site, error by horizon step and by local hour of day, per-site skill against the
baselines, and the calibration of the quantiles (nominal vs observed share of actuals at or
below each quantile). Nothing is fetched when the page opens, so it works offline.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

import polars as pl
from matplotlib.dates import DateFormatter, HourLocator
from matplotlib.figure import Figure

from forecasting.backtest.metrics import BASELINES, QUANTILE_LEVELS, BacktestMetrics

FAN_DAYS_PER_SITE: Final = 3
_TABLE_COLUMNS: Final = (
    "model",
    "n",
    "mae",
    "rmse",
    "nmae",
    "pinball",
    "crps",
    "coverage_80",
    "width_80",
    "peak_abs_error",
    *(f"skill_mae_vs_{b}" for b in BASELINES),
    *(f"skill_pinball_vs_{b}" for b in BASELINES),
)
_STYLE: Final = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px}"
    "td{text-align:right}img{max-width:100%}"
)


def _png(figure: Figure, *, tight: bool = True) -> str:
    """Return an ``<img>`` tag holding ``figure`` as a base64 PNG (tight: crop to content)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight" if tight else None)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{encoded}">'


def _table(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.iter_rows():
        cells = "".join(
            f"<td>{value:.3f}</td>"
            if isinstance(value, float)
            else f"<td>{html.escape(str(value))}</td>"
            for value in row
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _sample_issues(forecasts: pl.DataFrame, site_id: str) -> list[datetime]:
    """Return the first, middle and last issue time of a site (a few sample days)."""
    issues: list[datetime] = (
        forecasts.filter(pl.col("site_id") == site_id)["issued_at"].unique().sort().to_list()
    )
    if not issues:
        return []
    picks = {0, len(issues) // 2, len(issues) - 1}
    return [issues[i] for i in sorted(picks)][:FAN_DAYS_PER_SITE]


def plot_fan_charts(
    forecasts: pl.DataFrame, actuals: pl.DataFrame, *, site_id: str, model: str, zone: str
) -> str:
    """Fan chart of ``model`` (P10-P90 band, P50) with the actuals and the other models' P50.

    Draws the first, middle and last issue of the site, against site-local wall-clock time.
    """
    issues = _sample_issues(forecasts, site_id)
    figure = Figure(figsize=(3.6 * max(len(issues), 1), 2.4))
    axes = list(figure.subplots(1, max(len(issues), 1), squeeze=False, sharey=True)[0])
    site = forecasts.filter(pl.col("site_id") == site_id).join(
        actuals, on=["site_id", "interval_start"], how="left"
    )
    for axis, issued_at in zip(axes, issues, strict=False):
        issue = site.filter(pl.col("issued_at") == issued_at).with_columns(
            local=pl.col("interval_start").dt.convert_time_zone(zone).dt.replace_time_zone(None)
        )
        main = issue.filter(pl.col("model") == model)
        x = main["local"].to_numpy()
        axis.fill_between(x, main["p10"].to_numpy(), main["p90"].to_numpy(), alpha=0.3)
        axis.plot(x, main["p50"].to_numpy(), label=f"{model} P50 (band P10-P90)")
        for (other,), rows in (
            issue.filter(pl.col("model") != model).partition_by("model", as_dict=True).items()
        ):
            axis.plot(rows["local"].to_numpy(), rows["p50"].to_numpy(), lw=0.8, label=f"{other}")
        axis.plot(x, main["energy_kwh"].to_numpy(), "k.", markersize=3, label="actual")
        local_issue = issued_at.astimezone(ZoneInfo(zone))
        axis.set_title(f"{site_id}, issued {local_issue:%Y-%m-%d %H:%M %Z}", fontsize=7)
        axis.xaxis.set_major_locator(HourLocator(byhour=(0, 6, 12, 18)))
        axis.xaxis.set_major_formatter(DateFormatter("%H:%M"))
        axis.tick_params(labelsize=6)
    axes[0].set_ylabel("kWh per interval", fontsize=7)
    axes[0].legend(fontsize=5)
    figure.subplots_adjust(left=0.06, right=0.99, bottom=0.12, top=0.88, wspace=0.08)
    return _png(figure, tight=False)  # cropping draws the figure twice; fans are many


def plot_error_by(scores: pl.DataFrame, *, column: str, label: str) -> str:
    """MAE and mean pinball loss of each model by ``column`` (horizon step or local hour)."""
    figure = Figure(figsize=(10, 3))
    left, right = figure.subplots(1, 2)
    for (model,), rows in scores.sort(column).partition_by("model", as_dict=True).items():
        left.plot(rows[column].to_list(), rows["mae"].to_list(), marker=".", label=str(model))
        right.plot(rows[column].to_list(), rows["pinball"].to_list(), marker=".", label=str(model))
    for axis, title in ((left, "MAE [kWh]"), (right, "mean pinball loss [kWh]")):
        axis.set_xlabel(label)
        axis.set_title(title, fontsize=9)
    left.legend(fontsize=7)
    return _png(figure)


def plot_site_skill(by_site: pl.DataFrame) -> str | None:
    """Bar chart of each model's MAE skill against each baseline, per site."""
    columns = [f"skill_mae_vs_{b}" for b in BASELINES if f"skill_mae_vs_{b}" in by_site.columns]
    if not columns:
        return None
    sites = by_site["site_id"].unique().sort().to_list()
    models = by_site["model"].unique().sort().to_list()
    figure = Figure(figsize=(6 * len(columns), 0.3 * len(sites) + 1.5))
    axes = list(figure.subplots(1, len(columns), squeeze=False)[0])
    for axis, column in zip(axes, columns, strict=True):
        height = 0.8 / max(len(models), 1)
        for i, model in enumerate(models):
            if column.endswith(f"_vs_{model}"):
                continue  # a baseline against itself
            rows = by_site.filter(pl.col("model") == model)
            lookup = dict(zip(rows["site_id"].to_list(), rows[column].to_list(), strict=True))
            positions = [s + i * height for s in range(len(sites))]
            axis.barh(positions, [lookup.get(s) or 0.0 for s in sites], height=height, label=model)
        axis.set_yticks([s + 0.4 - height / 2 for s in range(len(sites))], sites, fontsize=6)
        axis.axvline(0, color="k", linewidth=0.8)
        axis.set_title(f"{column} [-] (right of 0 is better)", fontsize=9)
    axes[0].legend(fontsize=7)
    return _png(figure)


def plot_calibration(overall: pl.DataFrame) -> str:
    """Nominal vs observed share of actuals at or below P10, P50 and P90, per model."""
    figure = Figure(figsize=(4, 4))
    axis = figure.subplots()
    nominal = list(QUANTILE_LEVELS.values())
    for row in overall.iter_rows(named=True):
        observed = [row[f"calib_{q}"] for q in QUANTILE_LEVELS]
        axis.plot(nominal, observed, marker="o", label=row["model"])
    axis.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfect")
    axis.set_xlabel("nominal quantile level [-]")
    axis.set_ylabel("observed share of actuals below [-]")
    axis.legend(fontsize=7)
    return _png(figure)


def build_report_html(
    forecasts: pl.DataFrame,
    actuals: pl.DataFrame,
    metrics: BacktestMetrics,
    *,
    title: str,
    facts: Mapping[str, object],
    timezones: Mapping[str, str] | None = None,
    fan_model: str | None = None,
) -> str:
    """Return the report as one self-contained HTML document.

    Parameters
    ----------
    forecasts, actuals
        The backtest output frames [kWh per interval].
    metrics
        Scores from :func:`forecasting.backtest.metrics.compute_backtest_metrics`.
    title
        Page title.
    facts
        Shown as the "run" table (window, resolution, refit cadence, ...).
    timezones
        Site id to IANA time zone, for the local time axis of the fan charts (default: UTC).
    fan_model
        Model drawn as a fan (the others as P50 lines); default: ``demand`` when present,
        else the first model.
    """
    models = forecasts["model"].unique().sort().to_list()
    fan = fan_model or ("demand" if "demand" in models else next(iter(models), ""))
    notes = (
        forecasts.filter(pl.col("note").is_not_null())
        .group_by("model", "note")
        .len()
        .sort("model", "len", descending=[False, True])
    )
    overall = metrics.overall.select(c for c in _TABLE_COLUMNS if c in metrics.overall.columns)
    parts = [
        f"<h1>{html.escape(title)}</h1><h2>Run</h2>",
        _table(pl.DataFrame({"fact": list(facts), "value": [str(v) for v in facts.values()]})),
        f"<p>{metrics.n_intervals} intervals scored per model (those every model forecast "
        "and whose actual is known). Energies in kWh per interval.</p>",
        "<h2>Notes (fallbacks and stand-ins)</h2>",
        _table(notes) if notes.height else "<p>No row is a fallback or a stand-in.</p>",
        "<h2>Scores</h2>",
        _table(overall),
        "<h2>Calibration</h2>",
        plot_calibration(metrics.overall),
        "<h2>Error by horizon step</h2>",
        plot_error_by(metrics.by_step, column="step", label="horizon step [intervals]"),
        "<h2>Error by hour of day (site-local)</h2>",
        plot_error_by(metrics.by_hour, column="hour", label="hour of day [h]"),
        "<h2>Skill per site</h2>",
        plot_site_skill(metrics.by_site) or "<p>No baseline in this backtest.</p>",
        "<h2>Sample days</h2>",
    ]
    for site_id in forecasts["site_id"].unique().sort().to_list():
        zone = (timezones or {}).get(site_id, "UTC")
        parts.append(plot_fan_charts(forecasts, actuals, site_id=site_id, model=fan, zone=zone))
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
