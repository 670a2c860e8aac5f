"""Settings of the HTTP API (``EVCAST_API_*`` environment variables)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

StalePolicy = Literal["mark", "baseline"]


class ApiConfig(BaseSettings):
    """How the API serves, limits and caches; defaults suit one site controller per token."""

    model_config = SettingsConfigDict(env_prefix="EVCAST_API_", frozen=True)

    stale_policy: StalePolicy = Field(
        default="mark",
        description=(
            "What to serve once a run is past expires_at: 'mark' serves it with stale=true, "
            "'baseline' serves a daily-profile baseline marked as a fallback. Never silent."
        ),
    )
    max_window_hours: Annotated[
        float, Field(gt=0, le=24 * 31, description="Longest from/to window [h].")
    ] = 24 * 7
    rate_per_s: Annotated[
        float, Field(gt=0, description="Sustained requests per token and worker process [1/s].")
    ] = 50.0
    burst: Annotated[
        int, Field(ge=1, description="Requests a token may make at once, per worker [-].")
    ] = 100
    latest_ttl_s: Annotated[
        float, Field(ge=0, le=60, description="How often the latest run id is looked up again [s].")
    ] = 1.0
    token_cache_s: Annotated[
        float,
        Field(
            ge=0,
            le=60,
            description=(
                "How long a token record is used after it was read, per worker process: a "
                "deleted or re-scoped token keeps working for at most this long [s]."
            ),
        ),
    ] = 5.0
    cache_entries: Annotated[
        int, Field(ge=1, description="Serialized documents kept in memory [-].")
    ] = 512
    audit_flush_s: Annotated[
        float, Field(gt=0, le=60, description="Most time an audit record waits to be written [s].")
    ] = 0.5
    schedule_stack_level: Annotated[
        int, Field(ge=0, description="OCPP stackLevel of the served profile [-].")
    ] = 0
