"""Per-site training and forecasting on a real Dask cluster of two workers.

Threaded workers (``processes=False``) keep the test fast: worker processes would each import
Prefect, MLflow and LightGBM anew (a minute on a busy 2-core machine). Tasks still go through
the Dask scheduler and prefect-dask; ``bench/bench_flows.py`` runs process workers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from distributed import Client, LocalCluster, get_task_stream

from flows.nightly import run_nightly
from flows.runtime import ADDRESS_ENV

SITES = ("broxden-park-ride-perth", "kinross-park-and-ride-kinross")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_nightly_runs_site_tasks_on_dask_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_pipeline: Callable[..., Path]
) -> None:
    monkeypatch.setenv("EVCAST_HOME", str(tmp_path / "home"))  # before workers spawn
    pipeline = write_pipeline(tmp_path / "config", sites=SITES)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        monkeypatch.setenv(ADDRESS_ENV, cluster.scheduler_address)
        workers = set(client.scheduler_info()["workers"])
        with get_task_stream(client) as stream:
            report = run_nightly(date(2019, 8, 30), config_file=pipeline)

    assert sorted(report.published) == sorted(SITES)
    assert all(report.sites[s]["trained"] for s in SITES)
    # mapped per site: train, forecast, publish: 3 tasks x 2 sites
    assert len(stream.data) >= 6
    assert {record["worker"] for record in stream.data} <= workers
