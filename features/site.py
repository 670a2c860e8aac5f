"""Static site features, so one global model can learn across sites of different sizes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from forecasting.config import SiteConfig

RAPID_POWER_KW: Final = 40.0
"""Connectors rated at or above this power [kW] count as rapid (DC); the rest as AC."""

SITE_FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "site_connectors",
    "site_rapid_connectors",
    "site_ac_connectors",
    "site_capacity_kw",
    "site_max_power_kw",
)
"""Columns of :func:`build_site_feature_frame`, in order."""


def compute_site_features(site: SiteConfig) -> dict[str, float | int | None]:
    """Return the static features of a site's charger configuration.

    Returns
    -------
    dict
        ``site_connectors``, ``site_rapid_connectors``, ``site_ac_connectors`` [-];
        ``site_capacity_kw`` [kW] most power all chargers can draw at once and
        ``site_max_power_kw`` [kW] highest rated connector (both None without chargers).
    """
    rapid = sum(g.connectors for g in site.chargers if g.power_kw >= RAPID_POWER_KW)
    return {
        "site_connectors": site.connectors,
        "site_rapid_connectors": rapid,
        "site_ac_connectors": site.connectors - rapid,
        "site_capacity_kw": site.charging_capacity_kw,
        "site_max_power_kw": max((g.power_kw for g in site.chargers), default=None),
    }


def build_site_feature_frame(sites: Sequence[SiteConfig]) -> pl.DataFrame:
    """Return one row per site: ``site_id`` and :data:`SITE_FEATURE_COLUMNS` (see above)."""
    static = [compute_site_features(site) for site in sites]
    types = {"site_capacity_kw": pl.Float64, "site_max_power_kw": pl.Float64}
    return pl.DataFrame(
        [
            pl.Series("site_id", [site.site_id for site in sites], dtype=pl.String),
            *(
                pl.Series(name, [v[name] for v in static], dtype=types.get(name, pl.Int32))
                for name in SITE_FEATURE_COLUMNS
            ),
        ]
    )
