"""Response shapes, for the OpenAPI document (bodies are serialized once and cached, not here)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ModelInfo(BaseModel):
    """Identity of a model that contributed to a target."""

    name: str
    version: str
    alias: str | None


class Fallback(BaseModel):
    """Whether something stood in for the champion model, and why."""

    active: bool
    reason: str | None


class IntervalInfo(BaseModel):
    """How intervals are labelled."""

    length_s: int = Field(description="Interval length [s].")
    label: Literal["interval-start"]
    time_zone: Literal["UTC"]


class RunHeader(BaseModel):
    """Identity and freshness of the run a document comes from."""

    schema_version: str
    site_id: str
    target: Literal["demand", "pv", "net", "headroom"]
    run_id: str = Field(description="Content hash of the run's inputs.")
    issued_at: str
    data_cutoff: str
    created_at: str | None
    expires_at: str
    stale: bool = Field(description="True when served after expires_at.")
    models: dict[str, ModelInfo]
    fallback: Fallback
    method: str | None = Field(description="How net load or headroom quantiles are derived.")
    interval: IntervalInfo


class ForecastRow(BaseModel):
    """One interval: energy [kWh] and average power [kW] quantiles."""

    interval_start: str
    energy_kwh_p10: float
    energy_kwh_p50: float
    energy_kwh_p90: float
    power_kw_p10: float
    power_kw_p50: float
    power_kw_p90: float


class ForecastDocument(RunHeader):
    """A target's forecast over a window."""

    units: dict[str, str]
    window: dict[str, str | None]
    intervals: list[ForecastRow]


class ScheduleDocument(RunHeader):
    """The OCPP 2.0.1 SetChargingProfileRequest built from headroom P10."""

    units: dict[str, str]
    set_charging_profile: dict[str, Any]


class SiteEntry(BaseModel):
    """A site the caller may see."""

    site_id: str
    name: str
    timezone: str
    latest_run_id: str | None
    issued_at: str | None


class SiteList(BaseModel):
    """Sites in the caller's token scope."""

    sites: list[SiteEntry]


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
