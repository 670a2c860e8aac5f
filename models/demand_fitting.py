"""The demand model's core fits with one config, and the pooled fit shared by a pool's sites.

:class:`DemandFitter` calls :mod:`models.demand_core` with a config's calibration window.
:meth:`DemandFitter.pooled` builds the training matrices of the pool sites and fits the pooled
model (``"global"``) or the hybrid models (every pool site's P50, the pooled P10/P90 and their
pooled shifts) once per process, through :data:`models.pooled_fits.POOLED_FITS`, so N sites
trained one by one cost one pooled fit, not N.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import polars as pl

from forecasting.config import SiteConfig
from forecasting.errors import SchemaError
from models.demand_config import DemandConfig
from models.demand_core import QuantileBoosters, fit_calibrated, fit_hybrid
from models.demand_matrix import build_training_matrix
from models.pooled_fits import POOLED_FITS, compute_content_fingerprint

Scope = Literal["site", "hybrid", "global"]
"""Which model serves a site: its own, its own P50 with pooled tails, or the pooled one."""


@dataclass(frozen=True)
class DemandFitter:
    """The core fits of one config, its calibration window ending at ``issued_at``."""

    config: DemandConfig
    features: tuple[str, ...]
    issued_at: datetime

    @property
    def calibrate_from(self) -> datetime | None:
        """Start [UTC] of the held-out calibration window; None without one."""
        days = self.config.calibration_days
        return self.issued_at - timedelta(days=days) if days else None

    def calibrated(self, matrix: pl.DataFrame) -> QuantileBoosters:
        """Fit all three quantiles on ``matrix`` (:func:`models.demand_core.fit_calibrated`)."""
        return fit_calibrated(
            matrix,
            features=self.features,
            params=self.config.lightgbm,
            calibrate_from=self.calibrate_from,
            coverage=self.config.interval_coverage,
        )

    def hybrid(self, matrix: pl.DataFrame) -> dict[str, QuantileBoosters]:
        """Fit each site's P50 and pooled P10/P90 (:func:`models.demand_core.fit_hybrid`)."""
        return fit_hybrid(
            matrix,
            features=self.features,
            params=self.config.lightgbm,
            calibrate_from=self.calibrate_from,
            coverage=self.config.interval_coverage,
        )

    def pooled(
        self,
        known: pl.DataFrame,
        *,
        sites: Sequence[SiteConfig],
        scope: Scope,
        weather: pl.DataFrame | None,
    ) -> QuantileBoosters | dict[str, QuantileBoosters]:
        """Fit on the training matrices of ``sites``, once per process for all of them.

        The memo key holds all this fit reads: the known sessions and weather (content
        fingerprints), the fit time, the features, the sites in order, the config and the
        scope. A memoised result is the one this fit would give (deterministic LightGBM).
        """
        key = (
            scope,
            compute_content_fingerprint(known),
            compute_content_fingerprint(weather),
            self.issued_at,
            self.features,
            tuple(s.model_dump_json() for s in sites),
            self.config.model_dump_json(),
        )

        def fit() -> QuantileBoosters | dict[str, QuantileBoosters]:
            matrix = pl.concat(
                [
                    build_training_matrix(
                        known, site=s, issued_at=self.issued_at, config=self.config, weather=weather
                    )
                    for s in sites
                ],
                how="vertical_relaxed",
            )
            return self.hybrid(matrix) if scope == "hybrid" else self.calibrated(matrix)

        return POOLED_FITS.get_or_fit(key, fit)


def select_site_model(
    fitted: QuantileBoosters | Mapping[str, QuantileBoosters], *, site: SiteConfig
) -> QuantileBoosters:
    """Return the site's model: the one fitted, or the site's own of a hybrid fit."""
    if isinstance(fitted, QuantileBoosters):
        return fitted
    model = fitted.get(site.site_id)
    if model is None:
        msg = (
            f"site {site.site_id!r} has no trainable rows in the pooled matrix; "
            "check its sessions and outages or use pooling = 'global'"
        )
        raise SchemaError(msg)
    return model
