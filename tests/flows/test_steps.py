"""Site-level steps of the flows, tested directly (no Prefect)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_series_equal

from flows.steps import build_interval_starts, choose_demand_config, select_sites
from forecasting.config import SiteConfig, load_config
from forecasting.errors import UnknownSiteError
from forecasting.pipeline_config import PipelineConfig
from forecasting.schemas import UTC_DATETIME
from forecasting.settings import REPO_ROOT
from models.demand_config import DemandConfig
from tests.support import LAB_SITE, weekly_sessions

A = SiteConfig(site_id="a", name="A", latitude=56.0, longitude=-3.0, timezone="Europe/London")
B = SiteConfig(site_id="b", name="B", latitude=56.0, longitude=-3.0, timezone="Europe/London")
SESSIONS = pl.DataFrame({"site_id": ["b", "b"]})


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        pytest.param((), [B], id="sites-with-sessions"),
        pytest.param(("a",), [A], id="asked-for"),
    ],
)
def test_select_sites(wanted: tuple[str, ...], expected: list[SiteConfig]) -> None:
    assert select_sites([A, B], SESSIONS, wanted=wanted) == expected


def test_select_unknown_site_names_it() -> None:
    with pytest.raises(UnknownSiteError, match=r"\['zz'\]"):
        select_sites([A, B], SESSIONS, wanted=("zz",))


def test_interval_starts_cover_horizon_from_issue_time() -> None:
    issued = datetime(2019, 3, 31, tzinfo=UTC)  # a DST day in Europe/London: still 24 UTC hours
    starts = build_interval_starts(
        issued, horizon=timedelta(hours=24), resolution=timedelta(hours=1)
    )
    expected = pl.Series(
        "interval_start", [issued + timedelta(hours=h) for h in range(24)], dtype=UTC_DATETIME
    )
    assert_series_equal(starts, expected)


def test_demand_search_runs_only_when_configured(tmp_path: Path) -> None:
    demand_file = tmp_path / "demand.toml"
    text = (REPO_ROOT / "configs" / "demand.toml").read_text()
    demand_file.write_text(re.sub(r"(?m)^n_trials = \d+", "n_trials = 3", text))  # a small budget
    base = load_config(REPO_ROOT / "configs" / "pipeline.toml", PipelineConfig)
    training = base.training.model_copy(update={"demand_config": demand_file})
    sessions = weekly_sessions(120)
    issued = datetime(2024, 4, 20, tzinfo=UTC)

    def choose(*, search: bool) -> DemandConfig:
        options = training.model_copy(update={"search": search})
        config = base.model_copy(update={"training": options})
        return choose_demand_config(sessions, site=LAB_SITE, issued_at=issued, config=config)

    plain, tuned = choose(search=False), choose(search=True)
    assert plain == load_config(demand_file, DemandConfig)
    assert tuned.lightgbm != plain.lightgbm, "the search should have changed the parameters"
    assert tuned.model_copy(update={"lightgbm": plain.lightgbm}) == plain
