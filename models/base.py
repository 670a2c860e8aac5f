"""The contract every forecaster keeps, so backtests, training and serving share one code path.

A forecaster follows scikit-learn's estimator conventions: hyperparameters in ``__init__``,
``fit`` returns ``self``, fitted state in attributes ending in ``_``, and
:class:`forecasting.errors.NotFittedError` from ``predict`` before ``fit``.

Leakage is prevented by the caller, structurally: at an issue time ``issued_at`` the caller
passes only what was known then (sessions with ``plug_out_at < issued_at``, weather forecasts
issued before it). A forecaster must not assume more, and must never read a clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, Self, runtime_checkable

import polars as pl

from forecasting.config import SiteConfig


@runtime_checkable
class Forecaster(Protocol):
    """Quantile forecasts of one site's per-interval charging energy [kWh].

    Attributes
    ----------
    name
        Model name as written to the ``model`` column of forecasts (``"demand"``,
        ``"seasonal_naive"``, ``"persistence"``).
    """

    name: str

    def fit(
        self,
        sessions: pl.DataFrame,
        *,
        site: SiteConfig,
        issued_at: datetime,
        weather: pl.DataFrame | None = None,
    ) -> Self:
        """Learn from the sessions (canonical schema) known at ``issued_at`` [UTC]."""
        ...

    def predict(
        self,
        sessions: pl.DataFrame,
        *,
        site: SiteConfig,
        issued_at: datetime,
        interval_starts: pl.Series,
        weather: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """Forecast the intervals starting at ``interval_starts`` (UTC, all >= ``issued_at``).

        Returns
        -------
        polars.DataFrame
            One row per requested interval, in order: ``interval_start``, ``p10``, ``p50``,
            ``p90`` [kWh per interval] and ``note`` (null, or why the row is a fallback).
        """
        ...
