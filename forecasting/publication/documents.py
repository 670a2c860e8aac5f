"""The forecast document served by the API and printed by ``evcast fetch`` (pure).

One document per (run, target, window). Every document states where it came from and how to
read it, so a consumer never has to guess::

    {"schema_version": "1.0", "site_id": ..., "target": "net", "run_id": ...,
     "issued_at": ..., "data_cutoff": ..., "created_at": ..., "expires_at": ..., "stale": false,
     "models": {"demand": {"name": ..., "version": ..., "alias": ...}, "pv": {...}},
     "fallback": {"active": false, "reason": null}, "method": "...",
     "units": {"energy": "kWh", "power": "kW"},
     "interval": {"length_s": 900, "label": "interval-start", "time_zone": "UTC"},
     "window": {"from": ..., "to": ...},
     "intervals": [{"interval_start": ..., "energy_kwh_p10": ..., ..., "power_kw_p90": ...}]}

Timestamps are ISO 8601 UTC with a ``Z`` suffix. Energy is per interval [kWh]; power is the
average over the interval [kW].
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

import polars as pl

from forecasting.publication.contract import QUANTILES, Publication
from forecasting.publication.targets import HEADROOM_METHOD, NET_METHOD, add_power

SCHEMA_VERSION: Final = "1.0"
_METHODS: Final[dict[str, str]] = {"net": NET_METHOD, "headroom": HEADROOM_METHOD}
_ROUND: Final = 6  # decimals kept in documents: 1 mWh / 1 mW, far below forecast error


def format_time(value: datetime) -> str:
    """Format an instant as ISO 8601 UTC with a ``Z`` suffix, second resolution."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_document(document: dict[str, Any]) -> bytes:
    """Serialize a document exactly as the API sends it (compact JSON, UTF-8)."""
    return json.dumps(document, separators=(",", ":")).encode()


def select_window(
    intervals: pl.DataFrame, *, target: str, start: datetime | None, end: datetime | None
) -> pl.DataFrame:
    """Rows of one target whose ``interval_start`` lies in ``[start, end)`` (open if None)."""
    selected = intervals.filter(pl.col("target") == target)
    if start is not None:
        selected = selected.filter(pl.col("interval_start") >= start)
    if end is not None:
        selected = selected.filter(pl.col("interval_start") < end)
    return selected.sort("interval_start")


def _interval_rows(frame: pl.DataFrame, *, resolution_s: int) -> list[dict[str, Any]]:
    powered = add_power(frame, resolution_s=resolution_s)
    return powered.select(
        pl.col("interval_start").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        *(pl.col(q).round(_ROUND).alias(f"energy_kwh_{q}") for q in QUANTILES),
        *(pl.col(f"power_kw_{q}").round(_ROUND) for q in QUANTILES),
    ).to_dicts()


def build_run_header(
    publication: Publication, *, target: str, stale: bool, fallback_reason: str | None
) -> dict[str, Any]:
    """Identity, freshness, models and fallback marker shared by every served document."""
    meta = publication.targets[target]
    reason = fallback_reason or meta.fallback_reason
    created = publication.created_at
    return {
        "schema_version": SCHEMA_VERSION,
        "site_id": publication.site_id,
        "target": target,
        "run_id": publication.run_id,
        "issued_at": format_time(publication.issued_at),
        "data_cutoff": format_time(publication.data_cutoff),
        "created_at": format_time(created) if created else None,
        "expires_at": format_time(publication.expires_at),
        "stale": stale,
        "models": {name: model.as_dict() for name, model in sorted(meta.models.items())},
        "fallback": {"active": reason is not None, "reason": reason},
        "method": _METHODS.get(target),
        "interval": {
            "length_s": publication.resolution_s,
            "label": "interval-start",
            "time_zone": "UTC",
        },
    }


def build_forecast_document(
    publication: Publication,
    *,
    target: str,
    start: datetime | None,
    end: datetime | None,
    stale: bool,
    fallback_reason: str | None = None,
) -> dict[str, Any]:
    """Build the document of one target of a run over ``[start, end)``.

    Parameters
    ----------
    publication
        The run (stored or baseline).
    target
        One of the run's targets (``demand``, ``pv``, ``net``, ``headroom``).
    start, end
        Window on ``interval_start`` [UTC]; None leaves that side open.
    stale
        Whether the run is past its ``expires_at`` at serving time.
    fallback_reason
        Overrides the run's own fallback reason (e.g. when a baseline replaces a stale run).
    """
    frame = select_window(publication.intervals, target=target, start=start, end=end)
    return {
        **build_run_header(
            publication, target=target, stale=stale, fallback_reason=fallback_reason
        ),
        "units": {"energy": "kWh", "power": "kW"},
        "window": {
            "from": format_time(start) if start else None,
            "to": format_time(end) if end else None,
        },
        "intervals": _interval_rows(frame, resolution_s=publication.resolution_s),
    }


def build_document_csv(document: dict[str, Any]) -> str:
    """Render a forecast document's intervals as CSV, each row tagged with site, run, target."""
    columns = ["interval_start"] + [
        f"{kind}_{q}" for kind in ("energy_kwh", "power_kw") for q in QUANTILES
    ]
    frame = pl.DataFrame(
        document["intervals"],
        schema={c: (pl.String() if c == "interval_start" else pl.Float64()) for c in columns},
        orient="row",
    )
    tagged = frame.select(
        pl.lit(document["site_id"]).alias("site_id"),
        pl.lit(document["run_id"]).alias("run_id"),
        pl.lit(document["target"]).alias("target"),
        pl.lit(document["stale"]).alias("stale"),
        pl.lit(document["fallback"]["active"]).alias("fallback"),
        *columns,
    )
    return tagged.write_csv()
