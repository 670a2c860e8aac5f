"""Model names a backtest accepts, and the factories that build a fresh forecaster per site.

``seasonal_naive`` and ``persistence`` are the baselines of :mod:`models.baselines`; ``demand``
is :class:`models.demand.DemandForecaster` configured by ``configs/demand.toml`` (at the
backtest's resolution, with every backtested site in its global-model pool).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Final

from forecasting.backtest.engine import ForecasterFactory
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError
from models.base import Forecaster
from models.baselines import Persistence, SeasonalNaive
from models.demand import DemandForecaster
from models.demand_config import DemandConfig

MODEL_NAMES: Final[tuple[str, ...]] = ("demand", "seasonal_naive", "persistence")
"""Models ``evcast backtest --models`` knows, for the demand target."""


def _demand_factory(
    *, sites: Sequence[SiteConfig], resolution: timedelta, demand_config: DemandConfig | None
) -> ForecasterFactory:
    config = demand_config if demand_config is not None else DemandConfig()
    minutes = resolution // timedelta(minutes=1)
    if config.resolution_minutes != minutes:
        config = config.model_copy(update={"resolution_minutes": minutes})
    pool = tuple(sites)

    def build(site: SiteConfig) -> Forecaster:
        del site  # one configuration for every site; the pool serves the global model
        return DemandForecaster(config, pool_sites=pool)

    return build


def check_model_names(names: Sequence[str]) -> None:
    """Raise :class:`ConfigError` unless ``names`` is a non-empty list of known model names."""
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown or not names:
        msg = f"unknown or no model names {unknown!r}; choose from {list(MODEL_NAMES)!r}"
        raise ConfigError(msg)


def build_factories(
    names: Sequence[str],
    *,
    sites: Sequence[SiteConfig],
    resolution: timedelta,
    demand_config: DemandConfig | None = None,
) -> dict[str, ForecasterFactory]:
    """Return a factory per model name, in the order given.

    Parameters
    ----------
    names
        Model names, each one of :data:`MODEL_NAMES`.
    sites
        Sites of the backtest (the demand model's global pool).
    resolution
        Interval length the models forecast at.
    demand_config
        Settings of the demand model (``configs/demand.toml``); default: its defaults.
    """
    check_model_names(names)
    factories: dict[str, ForecasterFactory] = {}
    for name in names:
        if name == "demand":
            factories[name] = _demand_factory(
                sites=sites, resolution=resolution, demand_config=demand_config
            )
        elif name == "seasonal_naive":
            factories[name] = lambda _site: SeasonalNaive(resolution=resolution)
        else:
            factories[name] = lambda _site: Persistence(resolution=resolution)
    return factories
