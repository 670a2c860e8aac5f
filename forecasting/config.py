"""Domain configuration: sites, chargers, PV systems (``configs/sites.toml``).

Files are TOML, loaded into frozen pydantic models that forbid unknown keys and check bounds,
so a typo in a config fails loudly at load time instead of silently at 3 a.m.
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Annotated, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from forecasting.errors import ConfigError

SITE_ID_PATTERN: Final = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
"""Allow-list for site ids: lowercase letters, digits and inner dashes, at most 64 characters."""

_NON_ALNUM: Final = re.compile(r"[^a-z0-9]+")

ModelT = TypeVar("ModelT", bound=BaseModel)


def slugify(name: str) -> str:
    """Return the site id of a free-text site name.

    Lowercase; every run of non-alphanumeric characters becomes one ``-``; trimmed.
    ``"Broxden Park & Ride, Perth"`` becomes ``"broxden-park-ride-perth"``.
    """
    return _NON_ALNUM.sub("-", name.lower()).strip("-")


class FrozenModel(BaseModel):
    """Base of every config model: immutable, and an unknown key is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def check_timezone(value: str) -> str:
    """Return ``value`` if it is a known IANA time zone; raise ``ValueError`` (for pydantic)."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        msg = f"unknown time zone {value!r}; use an IANA name such as 'Europe/London'"
        raise ValueError(msg) from exc
    return value


class ChargerGroup(FrozenModel):
    """A group of identical chargers at a site."""

    model: str = Field(description="Charger model as named in the session source.")
    power_kw: Annotated[float, Field(gt=0, le=1000, description="Rated power per connector [kW].")]
    connectors: Annotated[
        int, Field(ge=1, le=1000, description="Connectors of this model [-].")
    ] = 1
    simultaneous: Annotated[
        int | None,
        Field(
            ge=1, description="Connectors that can draw at once, if fewer than `connectors` [-]."
        ),
    ] = None


class PVSystem(FrozenModel):
    """A fixed-tilt PV system, described as PVWatts needs it."""

    capacity_kw: Annotated[float, Field(gt=0, description="DC nameplate capacity [kW].")]
    ac_capacity_kw: Annotated[
        float | None, Field(gt=0, description="Inverter AC limit [kW]; default: capacity_kw.")
    ] = None
    tilt: Annotated[float, Field(ge=0, le=90, description="Surface tilt from horizontal [deg].")]
    azimuth: Annotated[
        float, Field(ge=0, lt=360, description="Surface azimuth, clockwise from north [deg].")
    ]
    losses_percent: Annotated[
        float, Field(ge=0, lt=100, description="PVWatts system losses [%].")
    ] = 14.0
    gamma_pdc: Annotated[
        float, Field(ge=-0.01, le=0, description="Power temperature coefficient [1/degC].")
    ] = -0.004
    measured_pv_site: str | None = Field(
        default=None, description="Site id under which measured PV power is stored, if any."
    )

    @property
    def ac_limit_kw(self) -> float:
        """AC rating of the system [kW]: ``ac_capacity_kw``, or the DC capacity when unset."""
        return self.ac_capacity_kw if self.ac_capacity_kw is not None else self.capacity_kw


class SiteConfig(FrozenModel):
    """One charging site."""

    site_id: str = Field(pattern=SITE_ID_PATTERN, description="Stable id, see SITE_ID_PATTERN.")
    name: str
    latitude: Annotated[float, Field(ge=-90, le=90, description="[deg] north.")]
    longitude: Annotated[float, Field(ge=-180, le=180, description="[deg] east.")]
    altitude_m: Annotated[float, Field(ge=-500, le=9000, description="[m] above sea level.")] = 0.0
    timezone: str = Field(description="IANA time zone of the site, e.g. 'Europe/London'.")
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2, for holidays.")
    subdivision: str | None = Field(default=None, description="ISO 3166-2 subdivision, e.g. 'SCT'.")
    grid_limit_kw: Annotated[
        float | None, Field(gt=0, description="Grid connection limit of the site [kW].")
    ] = None
    other_load_kw: Annotated[
        float, Field(ge=0, description="Non-charging site load to reserve [kW].")
    ] = 0.0
    chargers: tuple[ChargerGroup, ...] = ()
    pv: PVSystem | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @property
    def connectors(self) -> int:
        """Number of connectors at the site [-]."""
        return sum(group.connectors for group in self.chargers)

    @property
    def charging_capacity_kw(self) -> float | None:
        """Most power all chargers can draw at once [kW]; None when chargers are unknown."""
        if not self.chargers:
            return None
        return sum(g.power_kw * (g.simultaneous or g.connectors) for g in self.chargers)


class SitesConfig(FrozenModel):
    """All configured sites, and what to do with sites found only in data."""

    strict: bool = Field(
        default=False,
        description="When true, sessions of sites not configured here are quarantined.",
    )
    charger_models: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Rated power per connector [kW] by charger model name, for any site.",
    )
    sites: tuple[SiteConfig, ...] = ()

    def get(self, site_id: str) -> SiteConfig | None:
        """Return the configured site, or None."""
        return next((s for s in self.sites if s.site_id == site_id), None)


def load_toml(path: Path) -> dict[str, object]:
    """Read a TOML file, raising :class:`ConfigError` that names the file on failure."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        msg = f"config file {str(path)!r} does not exist; check the path or EVCAST_CONFIG_DIR"
        raise ConfigError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"config file {str(path)!r} is not valid TOML: {exc}"
        raise ConfigError(msg) from exc


def load_config(path: Path, model: type[ModelT]) -> ModelT:
    """Read the TOML file at ``path`` and validate it as ``model``.

    Raises
    ------
    ConfigError
        The file is missing, is not TOML, or does not fit ``model``; the message names the file
        and, for a misfit, every bad field.
    """
    raw = load_toml(path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        msg = f"config file {str(path)!r} is invalid:\n{exc}"
        raise ConfigError(msg) from exc


def load_sites(path: Path) -> SitesConfig:
    """Load and validate ``sites.toml``."""
    return load_config(path, SitesConfig)
