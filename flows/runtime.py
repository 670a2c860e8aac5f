"""Where per-site tasks of the flows run.

The task runner is the thread pool by default (no cluster needed),
or prefect-dask's ``DaskTaskRunner`` when ``[runner] kind = "dask"`` in ``configs/pipeline.toml``
or the environment says so: ``EVCAST_DASK_ADDRESS`` (scheduler of an existing cluster, e.g.
``tcp://dask-scheduler.example:8786``) or ``EVCAST_DASK_WORKERS`` (a temporary ``LocalCluster``
of that many worker processes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from forecasting.errors import ConfigError
from forecasting.pipeline_config import RunnerOptions

ADDRESS_ENV: Final = "EVCAST_DASK_ADDRESS"
WORKERS_ENV: Final = "EVCAST_DASK_WORKERS"


def resolve_runner_options(
    options: RunnerOptions, *, environ: Mapping[str, str] | None = None
) -> RunnerOptions:
    """Apply ``EVCAST_DASK_ADDRESS`` / ``EVCAST_DASK_WORKERS`` over the configured runner."""
    env = os.environ if environ is None else environ
    address = env.get(ADDRESS_ENV, "").strip()
    workers = env.get(WORKERS_ENV, "").strip()
    if address:
        return options.model_copy(update={"kind": "dask", "address": address})
    if workers:
        if not workers.isdigit() or int(workers) < 1:
            msg = f"{WORKERS_ENV}={workers!r} is not a positive whole number; unset it or fix it"
            raise ConfigError(msg)
        return options.model_copy(
            update={"kind": "dask", "address": None, "n_workers": int(workers)}
        )
    return options


def build_task_runner(options: RunnerOptions) -> TaskRunner[Any]:
    """Return the task runner of ``options``: threads, an existing Dask cluster or a LocalCluster.

    Parameters
    ----------
    options
        ``kind = "thread"``: a ``ThreadPoolTaskRunner`` of ``max_workers`` threads.
        ``kind = "dask"`` with ``address``: connect to that scheduler; without: start a
        ``distributed.LocalCluster`` of ``n_workers`` processes of ``threads_per_worker`` threads
        for the length of the flow run.
    """
    if options.kind == "thread":
        return ThreadPoolTaskRunner(max_workers=options.max_workers)
    from prefect_dask import DaskTaskRunner  # noqa: PLC0415 -- imports dask, only when asked

    if options.address:
        return DaskTaskRunner(address=options.address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": options.n_workers,
            "threads_per_worker": options.threads_per_worker,
            "processes": True,
            "dashboard_address": None,
        },
    )


def default_task_runner() -> TaskRunner[Any]:
    """Return the runner flows are declared with: threads, or Dask if the environment says so."""
    return build_task_runner(resolve_runner_options(RunnerOptions()))
