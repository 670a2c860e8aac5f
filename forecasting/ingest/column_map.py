"""Column maps: how a tabular session source names its columns (``configs/sources/<name>.toml``).

A column map lets the generic ``csv`` reader load any session CSV or Parquet file by column
*name*: which column holds the plug-in time, how datetimes and decimals are written, which time
zone the naive local times are in, and how site ids are made. The ChargePlace Scotland reader
is the same reader with the bundled map ``configs/sources/chargeplace.toml``.
"""

from __future__ import annotations

import zoneinfo
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from forecasting.config import SITE_ID_PATTERN, load_toml
from forecasting.errors import ConfigError
from forecasting.settings import REPO_ROOT

SOURCES_DIR: Final = REPO_ROOT / "configs" / "sources"
"""Folder of the bundled column maps."""

DEFAULT_MAX_DURATION_H: Final = 48.0
"""Sessions plugged in longer than this are quarantined as implausibly long [h]."""

DEFAULT_ENERGY_CAP_KWH: Final = 150.0
"""Most energy one session may deliver when the charger's rated power is unknown [kWh]."""

Columns = tuple[str, ...]
"""One source column, or several joined with a space (e.g. a date and a time column)."""


class ColumnMap(BaseModel):
    """How to read one tabular session source."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Short name of the source, e.g. 'trondheim'.")
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    decimal: Literal[".", ","] = Field(default=".", description="Decimal mark of numbers.")
    datetime_format: str = Field(description="strftime format of local date-times.")
    timezone: str = Field(description="IANA zone of the naive local times in the file.")
    null_values: tuple[str, ...] = Field(default=("",), description="Strings meaning 'no value'.")
    site: Columns | None = Field(default=None, description="Column(s) naming the site.")
    site_id: str | None = Field(
        default=None, pattern=SITE_ID_PATTERN, description="Constant site id of every row."
    )
    site_id_prefix: str = Field(default="", description="Prefix of site ids made from `site`.")
    site_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Slugified site name -> site id, for sources that spell a site several ways.",
    )
    exclude_sites: tuple[str, ...] = Field(
        default=(), description="Site ids whose rows are quarantined (test sites)."
    )
    station_id: Columns
    connector_id: Columns | None = Field(default=None, description="Default: connector '1'.")
    plug_in_at: Columns
    plug_out_at: Columns
    charging_done_at: Columns | None = None
    energy_kwh: str = Field(description="Column of delivered energy [kWh].")
    user_id: str | None = None
    charger_model: str | None = Field(
        default=None, description="Column naming the charger model (see charger_models)."
    )
    latitude: Annotated[
        float | None, Field(ge=-90, le=90, description="[deg] north of sites discovered here.")
    ] = None
    longitude: Annotated[
        float | None, Field(ge=-180, le=180, description="[deg] east of sites discovered here.")
    ] = None
    max_duration_h: Annotated[
        float, Field(gt=0, description="Longer sessions are quarantined [h].")
    ] = DEFAULT_MAX_DURATION_H
    energy_cap_kwh: Annotated[
        float, Field(gt=0, description="Energy cap when the rated power is unknown [kWh].")
    ] = DEFAULT_ENERGY_CAP_KWH

    @model_validator(mode="before")
    @classmethod
    def _one_column_as_tuple(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        multi = ("site", "station_id", "connector_id", "plug_in_at", "plug_out_at")
        return {
            k: (v,) if k in {*multi, "charging_done_at"} and isinstance(v, str) else v
            for k, v in data.items()
        }

    @model_validator(mode="after")
    def _site_column_or_constant(self) -> ColumnMap:
        if (self.site is None) == (self.site_id is None):
            msg = "a column map needs exactly one of `site` (a column) or `site_id` (a constant)"
            raise ValueError(msg)
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"unknown time zone {self.timezone!r}; use an IANA name such as 'Europe/Oslo'"
            raise ValueError(msg) from exc
        return self

    @property
    def required_columns(self) -> list[str]:
        """Source columns that must be present in a file read with this map."""
        groups = [self.site or (), self.station_id, self.connector_id or ()]
        groups += [self.plug_in_at, self.plug_out_at, (self.energy_kwh,)]
        return list(dict.fromkeys(c for group in groups for c in group))

    @property
    def optional_columns(self) -> list[str]:
        """Source columns read when present."""
        names = [*(self.charging_done_at or ()), self.user_id, self.charger_model]
        return [c for c in dict.fromkeys(names) if c is not None]


def load_column_map(path: Path) -> ColumnMap:
    """Load and validate a column map TOML file.

    Raises
    ------
    ConfigError
        When the file is missing, is not TOML, or does not describe a valid map.
    """
    raw = load_toml(path)
    try:
        return ColumnMap.model_validate(raw)
    except ValidationError as exc:
        msg = f"column map {str(path)!r} is invalid:\n{exc}"
        raise ConfigError(msg) from exc


def bundled_column_map(name: str) -> ColumnMap:
    """Return a column map shipped in ``configs/sources/``, e.g. ``"chargeplace"``."""
    return load_column_map(SOURCES_DIR / f"{name}.toml")
