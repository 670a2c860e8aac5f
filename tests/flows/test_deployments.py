"""Deployments as the Prefect server stores them: schedules, time zone, one run at a time, tags."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitStrategy

from flows.deployments import build_deployments
from forecasting.pipeline_config import load_pipeline_config
from forecasting.settings import REPO_ROOT

PIPELINE = REPO_ROOT / "configs" / "pipeline.toml"


@pytest.mark.usefixtures("prefect_server")
def test_deployments_registered_with_schedules_limits_and_tags() -> None:
    config = load_pipeline_config(PIPELINE)
    ids = {d.name: d.apply() for d in build_deployments(config, config_file=PIPELINE)}

    with get_client(sync_client=True) as client:
        stored = {name: client.read_deployment(deployment) for name, deployment in ids.items()}

    expected = {
        "evcast-nightly": ("30 1 * * *", "nightly"),
        "evcast-intraday": ("5 * * * *", "intraday"),
    }
    assert set(stored) == set(expected)
    for name, (cron, tag) in expected.items():
        deployment = stored[name]
        (schedule,) = deployment.schedules
        assert schedule.schedule.cron == cron  # type: ignore[union-attr]
        assert schedule.schedule.timezone == "Europe/London"  # type: ignore[union-attr]
        assert deployment.global_concurrency_limit is not None
        assert deployment.global_concurrency_limit.limit == 1
        assert deployment.concurrency_options is not None
        strategy = deployment.concurrency_options.collision_strategy
        assert strategy == ConcurrencyLimitStrategy.CANCEL_NEW
        assert set(deployment.tags) == {"evcast", tag}
        assert deployment.parameters == {"config_file": str(Path(PIPELINE).resolve())}
