"""A site with too little history is forecast by the pooled (cross-site) demand model."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl

from forecasting.backtest.engine import run_backtest
from forecasting.backtest.grid import BacktestSpec
from forecasting.backtest.models import build_factories
from forecasting.config import SiteConfig
from tests.forecasting.backtest.conftest import SessionsFactory


def test_a_young_site_gets_the_pooled_model_not_a_baseline(
    london_site: SiteConfig, make_sessions: SessionsFactory
) -> None:
    young = london_site.model_copy(update={"site_id": "young-site", "name": "Young site"})
    start = datetime(2019, 3, 1, tzinfo=UTC)
    sessions = pl.concat(
        [
            make_sessions(london_site.site_id, start, 120),
            # 10 days of history at the first issue: under min_history_days (56 d)
            make_sessions(young.site_id, start + timedelta(days=110), 10, seed=1),
        ]
    )
    spec = BacktestSpec(start=date(2019, 6, 29), end=date(2019, 6, 29))
    sites = [london_site, young]
    result = run_backtest(
        sessions,
        sites=sites,
        factories=build_factories(["demand"], sites=sites, resolution=spec.resolution),
        spec=spec,
    )
    notes = result.forecasts.filter(pl.col("site_id") == young.site_id)["note"]
    assert notes.null_count() == 0
    assert notes.str.contains("global model").all(), notes.unique().to_list()
    assert not notes.str.contains("seasonal_naive|fallback").any()
