"""What a forecast run to publish looks like, and how its run id is derived (pure).

Input contract (what the nightly flow hands to :func:`forecasting.io.forecast_store.publish_run`
through :func:`forecasting.publication.targets.build_publication`):

* ``site_id``: a configured site id (see :data:`forecasting.config.SITE_ID_PATTERN`);
* ``issued_at``: when the forecast was made, tz-aware UTC;
* ``data_cutoff``: the latest instant of data the models saw, tz-aware UTC, ``<= issued_at``;
* ``resolution``: the interval length (e.g. 15 minutes); intervals are labelled by their start;
* ``targets``: ``"demand"`` (required) and ``"pv"`` (optional: omit it for a site without PV),
  each a :class:`TargetForecast` whose frame has ``interval_start`` (UTC), ``p10``, ``p50``,
  ``p90`` as energy per interval [kWh] (:data:`forecasting.schemas.FORECAST_SCHEMA` minus the
  site and issue columns), the :class:`ModelIdentity` that made it, and a fallback reason or None;
* ``expires_at``: optional; when the run stops being current (default ``issued_at`` + 6 h).

The run id is a content hash of all of that plus the site's grid limit and other load, so the
same inputs always give the same run id and publishing them twice stores nothing new.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

import polars as pl

from forecasting.errors import SchemaError
from forecasting.schemas import UTC_DATETIME

InputTarget = Literal["demand", "pv"]
Target = Literal["demand", "pv", "net", "headroom"]
TARGETS: Final[tuple[str, ...]] = ("demand", "pv", "net", "headroom")
DEFAULT_VALIDITY: Final = timedelta(hours=6)
QUANTILES: Final[tuple[str, ...]] = ("p10", "p50", "p90")
PUBLISHED_DECIMALS: Final = 6
"""Publishers round quantiles to 1e-6 of their unit, so that float summation-order noise of a
rerun cannot change a run's content hash (and so publish a duplicate run)."""
TARGET_FRAME_SCHEMA: Final[dict[str, pl.DataType]] = {
    "interval_start": UTC_DATETIME,
    "p10": pl.Float64(),
    "p50": pl.Float64(),
    "p90": pl.Float64(),
}
"""Columns of one target's forecast: quantiles of energy per interval [kWh]."""


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made a forecast, e.g. an MLflow registered model name, version and alias."""

    name: str
    version: str
    alias: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """Return the identity as a JSON-ready mapping."""
        return {"name": self.name, "version": self.version, "alias": self.alias}


@dataclass(frozen=True)
class TargetForecast:
    """One input target of a run: quantiles of energy per interval [kWh] and who made them."""

    frame: pl.DataFrame
    model: ModelIdentity
    fallback_reason: str | None = None


@dataclass(frozen=True)
class ForecastRun:
    """A forecast run to publish, before derived targets are computed (see module docstring)."""

    site_id: str
    issued_at: datetime
    data_cutoff: datetime
    resolution: timedelta
    targets: Mapping[str, TargetForecast]
    expires_at: datetime | None = None


@dataclass(frozen=True)
class TargetMeta:
    """What a served target is built from: contributing models and the fallback reason."""

    models: Mapping[str, ModelIdentity]
    fallback_reason: str | None = None


@dataclass(frozen=True)
class Publication:
    """A run ready to store: every served target as energy quantiles per interval [kWh].

    ``intervals`` has ``target``, ``interval_start``, ``p10``, ``p50``, ``p90``; for
    ``headroom`` the quantiles are the energy the site may give to charging per interval.
    """

    run_id: str
    site_id: str
    issued_at: datetime
    data_cutoff: datetime
    expires_at: datetime
    resolution_s: int
    grid_limit_kw: float | None
    other_load_kw: float
    targets: Mapping[str, TargetMeta]
    intervals: pl.DataFrame
    created_at: datetime | None = field(default=None, compare=False)


def _require_utc(value: datetime, *, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() != timedelta(0):
        msg = f"{name} must be timezone-aware UTC, got {value!r}; pass datetime(..., tzinfo=UTC)"
        raise SchemaError(msg)


def check_run(run: ForecastRun) -> None:
    """Validate the input contract; raise :class:`SchemaError` naming the bad field."""
    for name in ("issued_at", "data_cutoff"):
        _require_utc(getattr(run, name), name=name)
    if run.data_cutoff > run.issued_at:
        msg = f"data_cutoff {run.data_cutoff!r} is after issued_at {run.issued_at!r}; swap them"
        raise SchemaError(msg)
    if run.resolution <= timedelta(0) or run.resolution % timedelta(seconds=1):
        msg = f"resolution must be a positive whole number of seconds, got {run.resolution!r}"
        raise SchemaError(msg)
    unknown = sorted(set(run.targets) - {"demand", "pv"})
    if "demand" not in run.targets or unknown:
        msg = f"run targets must be 'demand' and optionally 'pv', got {sorted(run.targets)!r}"
        raise SchemaError(msg)
    for target, forecast in run.targets.items():
        check_target_frame(forecast.frame, target=target, resolution=run.resolution)


def check_target_frame(frame: pl.DataFrame, *, target: str, resolution: timedelta) -> None:
    """Check one target frame: columns, no nulls or NaN, ordered quantiles, a regular grid."""
    missing = [c for c in TARGET_FRAME_SCHEMA if c not in frame.columns]
    if missing or frame.is_empty():
        msg = (
            f"{target} forecast must have rows and columns {list(TARGET_FRAME_SCHEMA)!r}; "
            f"missing {missing!r}, got {frame.columns!r} with {frame.height} rows"
        )
        raise SchemaError(msg)
    if frame.schema["interval_start"] != UTC_DATETIME:
        msg = f"{target} interval_start is {frame.schema['interval_start']}; cast to UTC datetime"
        raise SchemaError(msg)
    quantiles = [pl.col(q).cast(pl.Float64) for q in QUANTILES]
    invalid = (
        pl.any_horizontal([q.is_null() | q.is_nan() for q in quantiles])
        | (quantiles[0] > quantiles[1])
        | (quantiles[1] > quantiles[2])
    )
    bad = frame.filter(invalid)
    if bad.height:
        msg = (
            f"{target} forecast has null, NaN or unordered quantiles (need p10 <= p50 <= p90) "
            f"at interval_start {bad['interval_start'][0]!r}; fix the model output"
        )
        raise SchemaError(msg)
    starts = frame["interval_start"].sort()
    step = starts.diff().drop_nulls().unique()
    if step.len() > 1 or (step.len() == 1 and step[0] != resolution):
        msg = f"{target} intervals are not a gap-free grid of {resolution}; got steps {step!r}"
        raise SchemaError(msg)


def _canonical_frame(frame: pl.DataFrame) -> dict[str, list[object]]:
    ordered = frame.sort("interval_start")
    return {
        "interval_start": ordered["interval_start"].dt.epoch("us").to_list(),
        **{q: ordered[q].cast(pl.Float64).to_list() for q in QUANTILES},
    }


def compute_run_id(run: ForecastRun, *, grid_limit_kw: float | None, other_load_kw: float) -> str:
    """Return the content hash (32 hex digits of SHA-256) of a run's inputs."""
    payload = {
        "site_id": run.site_id,
        "issued_at": run.issued_at.isoformat(),
        "data_cutoff": run.data_cutoff.isoformat(),
        "expires_at": run.expires_at.isoformat() if run.expires_at else None,
        "resolution_s": int(run.resolution.total_seconds()),
        "grid_limit_kw": grid_limit_kw,
        "other_load_kw": other_load_kw,
        "targets": {
            name: {
                "model": t.model.as_dict(),
                "fallback_reason": t.fallback_reason,
                "frame": _canonical_frame(t.frame),
            }
            for name, t in sorted(run.targets.items())
        },
    }
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]
