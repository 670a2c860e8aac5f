"""Validation rules of charging sessions: one function per rule, each with its reason code.

Readers stage a source file as a frame of :data:`STAGED_SCHEMA` (one row per data row, parsed
but unchecked). :func:`validate_staged_sessions` applies the row rules in the order of
:data:`ROW_RULES` (the first rule a row breaks is its reason), drops exact duplicates (counted,
not quarantined), then quarantines the later of two overlapping sessions on one connector
(:mod:`forecasting.ingest.overlap`). Implausibly long sessions are *quarantined*, not flagged: a
kept 300-hour "session" would block its connector and push real sessions into quarantine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import polars as pl

from forecasting.ingest.column_map import DEFAULT_ENERGY_CAP_KWH, DEFAULT_MAX_DURATION_H
from forecasting.schemas import UTC_DATETIME

MISSING_FIELD: Final = "missing_field"
UNPARSEABLE_VALUE: Final = "unparseable_value"
EXCLUDED_SITE: Final = "excluded_site"
UNKNOWN_SITE: Final = "unknown_site"
NONPOSITIVE_ENERGY: Final = "nonpositive_energy"
UNPLUG_BEFORE_PLUGIN: Final = "unplug_before_plugin"
ZERO_DURATION: Final = "zero_duration"
IMPLAUSIBLY_LONG: Final = "implausibly_long"
ENERGY_ABOVE_CAPABILITY: Final = "energy_above_capability"
OVERLAPPING_SESSION: Final = "overlapping_session"

CAPABILITY_MARGIN: Final = 1.05
"""Energy may exceed rated power x plugged-in time by this factor (meter tolerance) [-]."""

TIME_RESOLUTION_H: Final = 1 / 60
"""Sources stamp whole minutes, so a session may have lasted up to one minute longer [h]."""

REQUIRED_FIELDS: Final = ("site_id", "station_id", "plug_in_at", "plug_out_at", "energy_kwh")

STAGED_SCHEMA: Final[dict[str, pl.DataType]] = {
    "row": pl.Int64(),  # 1 = first data row
    "raw": pl.String(),  # the raw row as JSON
    "site_id": pl.String(),
    "site_name": pl.String(),
    "site_timezone": pl.String(),
    "station_id": pl.String(),
    "connector_id": pl.String(),
    "plug_in_at": UTC_DATETIME,
    "plug_out_at": UTC_DATETIME,
    "charging_done_at": UTC_DATETIME,
    "energy_kwh": pl.Float64(),
    "charger_model": pl.String(),
    "user_id": pl.String(),
    "extras": pl.String(),  # JSON object of source fields not mapped to a column, or null
    "flags": pl.List(pl.String()),
    "parse_field": pl.String(),  # first field whose text could not be parsed, or null
    "parse_value": pl.String(),
}
"""A source file as parsed by a reader, before validation."""


@dataclass(frozen=True)
class SessionRules:
    """Parameters of the row rules.

    Attributes
    ----------
    configured_sites
        Site ids in sites.toml.
    strict
        Quarantine rows of other sites (``unknown_site``) instead of discovering them.
    charger_models
        Rated power per connector [kW] by charger model name.
    exclude_sites
        Site ids whose rows are quarantined (``excluded_site``).
    max_duration_h
        Longer sessions are quarantined (``implausibly_long``) [h].
    energy_cap_kwh
        Most energy of one session when the rated power is unknown [kWh].
    """

    configured_sites: frozenset[str]
    strict: bool
    charger_models: Mapping[str, float]
    exclude_sites: frozenset[str] = frozenset()
    max_duration_h: float = DEFAULT_MAX_DURATION_H
    energy_cap_kwh: float = DEFAULT_ENERGY_CAP_KWH


Violation = tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]
"""(row breaks the rule, field, value, detail) of one rule, as expressions."""


def _duration_h() -> pl.Expr:
    return (pl.col("plug_out_at") - pl.col("plug_in_at")).dt.total_seconds() / 3600


def _text(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.String)


def check_unparseable(rules: SessionRules) -> Violation:
    """Flag rows with a field whose text could not be parsed (a date, a number)."""
    detail = pl.format("cannot parse {} value {}", pl.col("parse_field"), pl.col("parse_value"))
    return pl.col("parse_field").is_not_null(), pl.col("parse_field"), pl.col("parse_value"), detail


def check_missing_field(rules: SessionRules) -> Violation:
    """Flag rows whose timestamps, energy, site or station are empty."""
    field = pl.coalesce(pl.when(pl.col(c).is_null()).then(pl.lit(c)) for c in REQUIRED_FIELDS)
    detail = pl.format("{} is empty", field)
    return field.is_not_null(), field, pl.lit(None, pl.String), detail


def check_excluded_site(rules: SessionRules) -> Violation:
    """Flag rows of sites the column map excludes (e.g. an operator's test site)."""
    bad = pl.col("site_id").is_in(list(rules.exclude_sites))
    detail = pl.format("site {} is excluded by the column map", pl.col("site_id"))
    return bad, pl.lit("site_id"), pl.col("site_name"), detail


def check_unknown_site(rules: SessionRules) -> Violation:
    """Flag rows of sites not in sites.toml, when it says ``strict = true``."""
    bad = pl.lit(rules.strict) & ~pl.col("site_id").is_in(list(rules.configured_sites))
    detail = pl.format("site {} is not in sites.toml and strict = true", pl.col("site_id"))
    return bad, pl.lit("site_id"), pl.col("site_name"), detail


def check_nonpositive_energy(rules: SessionRules) -> Violation:
    """Flag rows whose delivered energy is zero or negative [kWh]."""
    detail = pl.lit("energy must be > 0 kWh")
    return pl.col("energy_kwh") <= 0, pl.lit("energy_kwh"), _text("energy_kwh"), detail


def check_unplug_before_plugin(rules: SessionRules) -> Violation:
    """Flag rows unplugged before they were plugged in."""
    bad = pl.col("plug_out_at") < pl.col("plug_in_at")
    detail = pl.format("unplugged before plug-in at {}", pl.col("plug_in_at"))
    return bad, pl.lit("plug_out_at"), _text("plug_out_at"), detail


def check_zero_duration(rules: SessionRules) -> Violation:
    """Flag rows whose plug-in and unplug are the same instant."""
    bad = pl.col("plug_out_at") == pl.col("plug_in_at")
    return bad, pl.lit("plug_out_at"), _text("plug_out_at"), pl.lit("session lasted 0 minutes")


def check_implausibly_long(rules: SessionRules) -> Violation:
    """Flag rows plugged in for longer than ``max_duration_h`` [h]."""
    detail = pl.format(
        "plugged in for {} h, more than {} h", _duration_h().round(1), pl.lit(rules.max_duration_h)
    )
    too_long = _duration_h() > rules.max_duration_h
    return too_long, pl.lit("plug_out_at"), _text("plug_out_at"), detail


def check_energy_above_capability(rules: SessionRules) -> Violation:
    """Flag rows with more energy than the charger could deliver while plugged in.

    Limit [kWh]: rated power [kW] x (duration + one minute of timestamp resolution) [h] x 1.05
    when the charger model is known, else ``energy_cap_kwh``.
    """
    limit = (
        pl.when(pl.col("max_power_kw").is_not_null())
        .then(pl.col("max_power_kw") * (_duration_h() + TIME_RESOLUTION_H) * CAPABILITY_MARGIN)
        .otherwise(pl.lit(rules.energy_cap_kwh))
    )
    detail = pl.format("energy above the {} kWh the charger could deliver", limit.round(2))
    return pl.col("energy_kwh") > limit, pl.lit("energy_kwh"), _text("energy_kwh"), detail


ROW_RULES: Final[tuple[tuple[str, Callable[[SessionRules], Violation]], ...]] = (
    (UNPARSEABLE_VALUE, check_unparseable),
    (MISSING_FIELD, check_missing_field),
    (EXCLUDED_SITE, check_excluded_site),
    (UNKNOWN_SITE, check_unknown_site),
    (NONPOSITIVE_ENERGY, check_nonpositive_energy),
    (UNPLUG_BEFORE_PLUGIN, check_unplug_before_plugin),
    (ZERO_DURATION, check_zero_duration),
    (IMPLAUSIBLY_LONG, check_implausibly_long),
    (ENERGY_ABOVE_CAPABILITY, check_energy_above_capability),
)
"""Row rules in the order they are tried; a row's reason is the first rule it breaks."""


def _reason(violations: Sequence[tuple[str, Violation]]) -> pl.Expr:
    """Return the code of the first rule a row breaks, or null."""
    return pl.coalesce(pl.when(v[0].fill_null(value=False)).then(pl.lit(c)) for c, v in violations)


def _part_of_reason(violations: Sequence[tuple[str, Violation]], part: int) -> pl.Expr:
    """Return part ``part`` (field, value, detail) of the rule named in ``reason``."""
    return pl.coalesce(
        pl.when(pl.col("reason") == code).then(violation[part].cast(pl.String))
        for code, violation in violations
    )


def add_row_violations(staged: pl.DataFrame, *, rules: SessionRules) -> pl.DataFrame:
    """Add ``max_power_kw`` [kW] and ``reason``, ``field``, ``value``, ``detail`` of each row.

    ``reason`` is null for rows that pass every row rule.
    """
    models = dict(rules.charger_models)
    frame = staged.with_columns(
        max_power_kw=pl.col("charger_model").replace_strict(
            models, default=None, return_dtype=pl.Float64
        )
    )
    violations = [(code, check(rules)) for code, check in ROW_RULES]
    return frame.with_columns(reason=_reason(violations)).with_columns(
        field=_part_of_reason(violations, 1),
        value=_part_of_reason(violations, 2),
        detail=_part_of_reason(violations, 3),
    )


def _hash_keys(keys: pl.Series) -> pl.Series:
    return pl.Series(
        [None if k is None else hashlib.sha256(k.encode()).hexdigest()[:20] for k in keys],
        dtype=pl.String,
    )


def add_session_id(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``session_id``: a hash of site, station, connector and plug-in instant.

    Deterministic from the source, so re-ingesting a file yields the same ids (idempotent).
    """
    key = pl.concat_str(
        [
            pl.col("site_id"),
            pl.col("station_id"),
            pl.col("connector_id"),
            pl.col("plug_in_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ"),
        ],
        separator="|",
    )
    return frame.with_columns(session_id=key.map_batches(_hash_keys, return_dtype=pl.String))


DUPLICATE_COLUMNS: Final = (
    "site_id",
    "session_id",
    "plug_out_at",
    "charging_done_at",
    "energy_kwh",
    "user_id",
)
"""Rows equal in all of these are exact duplicates: the first is kept, the rest counted."""


def drop_exact_duplicates(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Keep the first of rows equal in :data:`DUPLICATE_COLUMNS`; return them and the drop count."""
    kept = frame.unique(subset=list(DUPLICATE_COLUMNS), keep="first", maintain_order=True)
    return kept, frame.height - kept.height


def add_attributes(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``attributes``: the ``extras`` JSON object plus ``"flags"`` when a row has flags."""
    flags = pl.concat_str(pl.lit('"flags":["'), pl.col("flags").list.join('","'), pl.lit('"]'))
    with_flags = (
        pl.when(pl.col("extras").is_null())
        .then(pl.concat_str(pl.lit("{"), flags, pl.lit("}")))
        .otherwise(pl.concat_str(pl.lit("{"), flags, pl.lit(","), pl.col("extras").str.slice(1)))
    )
    return frame.with_columns(
        attributes=pl.when(pl.col("flags").list.len() > 0)
        .then(with_flags)
        .otherwise(pl.col("extras"))
    )
