"""OCPP 2.0.1 charging profile for a site's load balancer, from the headroom forecast (pure).

The payload is a ``SetChargingProfileRequest``: ``evseId = 0`` (the whole charging station,
i.e. the site's load balancer acting as one station) and a ``ChargingStationMaxProfile`` of
kind ``Absolute`` whose ``chargingSchedulePeriod`` limits are the headroom P10 [W] (rounded
down to whole watts: OCPP allows at most one decimal, and rounding down stays on the safe side).
Consecutive intervals with the same limit are merged into one period; at most 1024 periods.
It is validated against the JSON schema shipped with the ``ocpp`` package.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, Final

import jsonschema
import polars as pl

from forecasting.errors import SchemaError
from forecasting.publication.contract import Publication
from forecasting.publication.documents import build_run_header, format_time, select_window

MAX_PERIODS: Final = 1024
SCHEMA_RESOURCE: Final = ("ocpp.v201", "schemas/SetChargingProfileRequest.json")


@cache
def _validator() -> jsonschema.protocols.Validator:
    package, name = SCHEMA_RESOURCE
    schema = json.loads(resources.files(package).joinpath(name).read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def validate_charging_profile(payload: dict[str, Any]) -> None:
    """Raise :class:`SchemaError` unless ``payload`` is a valid OCPP 2.0.1 SetChargingProfile."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(payload))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        msg = f"charging profile is not valid OCPP 2.0.1 at {where!r}: {error.message}"
        raise SchemaError(msg)


def _periods(limits_w: list[int], *, resolution_s: int) -> list[dict[str, int]]:
    periods: list[dict[str, int]] = []
    for index, limit in enumerate(limits_w):
        if periods and periods[-1]["limit"] == limit:
            continue
        periods.append({"startPeriod": index * resolution_s, "limit": limit})
    return periods


def build_charging_profile(
    headroom: pl.DataFrame,
    *,
    resolution_s: int,
    profile_id: int,
    stack_level: int = 0,
) -> dict[str, Any]:
    """Build a validated ``SetChargingProfileRequest`` from headroom quantiles.

    Parameters
    ----------
    headroom
        Consecutive intervals, sorted: ``interval_start`` [UTC] and ``p10`` energy the site may
        give to charging per interval [kWh].
    resolution_s
        Interval length [s].
    profile_id
        Charging profile id; reuse the same id so a new profile replaces the previous one.
    stack_level
        OCPP stack level [-]; higher levels take precedence.
    """
    if headroom.is_empty():
        msg = "no headroom intervals in the requested window; widen the window or publish a run"
        raise SchemaError(msg)
    frame = headroom.sort("interval_start").head(MAX_PERIODS)
    hours = resolution_s / 3600.0
    limits = (frame["p10"] / hours * 1000.0).floor().cast(pl.Int64).to_list()
    start: datetime = frame["interval_start"][0]
    duration = frame.height * resolution_s
    payload: dict[str, Any] = {
        "evseId": 0,
        "chargingProfile": {
            "id": profile_id,
            "stackLevel": stack_level,
            "chargingProfilePurpose": "ChargingStationMaxProfile",
            "chargingProfileKind": "Absolute",
            "validFrom": format_time(start),
            "validTo": format_time(start + timedelta(seconds=duration)),
            "chargingSchedule": [
                {
                    "id": profile_id,
                    "startSchedule": format_time(start),
                    "duration": duration,
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": _periods(limits, resolution_s=resolution_s),
                }
            ],
        },
    }
    validate_charging_profile(payload)
    return payload


def compute_profile_id(site_id: str) -> int:
    """Return a stable positive 28-bit profile id per site (a new profile replaces the last)."""
    return int(hashlib.sha256(site_id.encode()).hexdigest()[:7], 16)


def build_schedule_document(
    publication: Publication,
    *,
    now: datetime,
    stale: bool,
    fallback_reason: str | None = None,
    stack_level: int = 0,
) -> dict[str, Any]:
    """Wrap the profile of the headroom from the interval containing ``now`` [UTC] onwards.

    The document carries the same header as forecast documents (run id, freshness, models,
    fallback marker) and the OCPP payload under ``set_charging_profile``.
    """
    step = timedelta(seconds=publication.resolution_s)
    headroom = select_window(publication.intervals, target="headroom", start=now - step, end=None)
    current = headroom.filter(
        pl.col("interval_start") + pl.duration(seconds=publication.resolution_s) > now
    )
    payload = build_charging_profile(
        current,
        resolution_s=publication.resolution_s,
        profile_id=compute_profile_id(publication.site_id),
        stack_level=stack_level,
    )
    return {
        **build_run_header(
            publication, target="headroom", stale=stale, fallback_reason=fallback_reason
        ),
        "units": {"limit": "W"},
        "set_charging_profile": payload,
    }
