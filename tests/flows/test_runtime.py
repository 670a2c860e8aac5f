"""Task-runner selection and the pipeline config, without running flows."""

from __future__ import annotations

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows.runtime import ADDRESS_ENV, WORKERS_ENV, build_task_runner, resolve_runner_options
from forecasting.errors import ConfigError
from forecasting.pipeline_config import RunnerOptions


def test_default_runner_is_threads_and_needs_no_cluster() -> None:
    options = resolve_runner_options(RunnerOptions(), environ={})
    assert isinstance(build_task_runner(options), ThreadPoolTaskRunner)


@pytest.mark.parametrize(
    ("environ", "kind", "address", "workers"),
    [
        pytest.param({}, "thread", None, 2, id="nothing-set"),
        pytest.param(
            {ADDRESS_ENV: "tcp://dask-scheduler.example:8786"},
            "dask",
            "tcp://dask-scheduler.example:8786",
            2,
            id="address",
        ),
        pytest.param({WORKERS_ENV: "3"}, "dask", None, 3, id="local-cluster"),
    ],
)
def test_environment_selects_runner(
    environ: dict[str, str], kind: str, address: str | None, workers: int
) -> None:
    options = resolve_runner_options(RunnerOptions(), environ=environ)
    assert (options.kind, options.address, options.n_workers) == (kind, address, workers)


def test_dask_runner_for_an_existing_cluster_or_a_local_one() -> None:
    remote = build_task_runner(
        RunnerOptions(kind="dask", address="tcp://dask-scheduler.example:8786")
    )
    local = build_task_runner(RunnerOptions(kind="dask", n_workers=2))
    assert isinstance(remote, DaskTaskRunner)
    assert remote.address == "tcp://dask-scheduler.example:8786"
    assert isinstance(local, DaskTaskRunner)
    assert local.cluster_kwargs["n_workers"] == 2


def test_bad_worker_count_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="EVCAST_DASK_WORKERS='two'"):
        resolve_runner_options(RunnerOptions(), environ={WORKERS_ENV: "two"})
