"""Orchestration overhead of the nightly flow, and per-site training on Dask with 1 and 2 workers.

1. The nightly flow on the bundled sample (``configs/pipeline.toml``, night 2019-08-31) against
   calling the same steps directly in a plain loop (ingest, read, check, train, forecast, build,
   publish), each from an empty EVCAST_HOME, in the same process run. The Prefect server is
   started before timing (its start-up is printed separately): the overhead is what the flow
   engine adds per run (task-run bookkeeping, state changes, futures), not the server.
   The flow runs with a single-thread task runner (the same sequential work as the direct loop:
   the difference is orchestration) and with the default two threads. A discarded warm-up run
   pays the imports first; then ``--repeat`` rounds alternate the three, and the best of each
   is compared (the machine is shared, so single timings are noisy).
2. The same flow with prefect-dask's DaskTaskRunner connected to a LocalCluster of 1 and then 2
   worker processes (``EVCAST_DASK_ADDRESS``). The cluster is started and its workers import the
   task code before timing; the start-up is printed separately (a run with
   ``EVCAST_DASK_WORKERS`` pays it on every run).

Prints measured figures only; asserts nothing about time. Usage (from the repository root):
``.venv/bin/python bench/bench_flows.py [--night 2019-08-31] [--sites a,b] [--skip-dask]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from datetime import time as clock
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="evcast-bench-prefect-"))

REPO = Path(__file__).resolve().parent.parent
PIPELINE = REPO / "configs" / "pipeline.toml"


def _fresh_home(label: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix=f"evcast-bench-{label}-"))
    os.environ["EVCAST_HOME"] = str(home)
    return home


def _ingest_solar(path: Path, *, source: object, settings: object, sites: object) -> None:
    from forecasting.ingest.pv import read_pv
    from forecasting.ingest.weather import read_weather
    from forecasting.io.lake import upsert_table
    from forecasting.io.quarantine import write_quarantine
    from forecasting.schemas import PV_KEY, PV_SCHEMA, WEATHER_KEY, WEATHER_SCHEMA

    site = sites.get(source.site)
    now = datetime.now(UTC)
    if source.kind == "pv":
        read = read_pv(path, site=site, fmt=source.format, ingested_at=now)
        schema, key = PV_SCHEMA, PV_KEY
    else:
        read = read_weather(path, site=site, fmt=source.format, ingested_at=now)
        schema, key = WEATHER_SCHEMA, WEATHER_KEY
    if read.accepted.height:
        upsert_table(settings.lake_dir, source.kind, read.accepted, schema=schema, key=key)
    if read.quarantined.height:
        write_quarantine(settings.quarantine_dir, read.quarantined, content_hash=read.content_hash)


def run_direct(night: date, *, sites: tuple[str, ...]) -> int:
    """The nightly work as plain calls of the same steps, sites one after the other."""
    import polars as pl

    from flows import steps
    from forecasting.config import load_sites
    from forecasting.io.catalog import ingest_session_file, load_site_catalog
    from forecasting.io.forecast_store import open_store, publish_run
    from forecasting.io.lake import read_table
    from forecasting.pipeline_config import load_pipeline_config
    from forecasting.publication.targets import build_publication
    from forecasting.schemas import SESSIONS_SCHEMA, validate_frame
    from forecasting.settings import Settings

    settings = Settings()
    config = load_pipeline_config(PIPELINE)
    issued_at = datetime.combine(night, clock(0), tzinfo=UTC)
    sites_config = load_sites(settings.sites_file)
    for source in config.sources:
        column_map = steps.repo_path(source.column_map) if source.column_map else None
        for path in source.files():
            if source.kind == "sessions":
                ingest_session_file(
                    path,
                    fmt=source.format,
                    settings=settings,
                    sites=sites_config,
                    ingested_at=datetime.now(UTC),
                    column_map=column_map,
                )
            else:
                _ingest_solar(path, source=source, settings=settings, sites=sites_config)
    catalog = load_site_catalog(settings)
    sessions = (
        read_table(settings.lake_dir, "sessions", SESSIONS_SCHEMA)
        .filter(pl.col("plug_out_at") < issued_at)
        .collect()
    )
    validate_frame(sessions, SESSIONS_SCHEMA, name="sessions")
    chosen = steps.select_sites(catalog, sessions, wanted=sites or config.forecast.sites)
    steps.open_tracking(settings)
    for site in chosen:
        steps.train_demand(
            sessions, site=site, issued_at=issued_at, config=config, settings=settings
        )
    engine = open_store(settings.forecast_store_url)
    for site in chosen:
        serving = steps.load_serving_model(
            sessions, site=site, issued_at=issued_at, config=config, settings=settings
        )
        run = steps.build_forecast_run(
            serving, sessions, site=site, issued_at=issued_at, config=config
        )
        publish_run(engine, build_publication(run, site=site), created_at=datetime.now(UTC))
    return len(chosen)


def run_flow(night: date, *, sites: tuple[str, ...], threads: int | None = None) -> int:
    """The nightly flow; ``threads``: a thread pool of that size, else the configured runner."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.nightly import nightly_training, run_nightly

    if threads is None:
        report = run_nightly(night, config_file=PIPELINE, sites=list(sites) or None)
    else:
        flow = nightly_training.with_options(task_runner=ThreadPoolTaskRunner(max_workers=threads))
        report = flow(night=night, config_file=PIPELINE, sites=list(sites) or None)
    return len(report.sites)


def timed(label: str, action: Callable[[], int], *, fresh: bool = True) -> float:
    if fresh:
        _fresh_home(label.split(",", maxsplit=1)[0].replace(" ", "-"))
    start = time.perf_counter()
    count = action()
    seconds = time.perf_counter() - start
    print(f"  {label:28} {seconds:8.1f} s  ({count} sites)")
    return seconds


def _warm_worker() -> None:
    """Import what the per-site tasks need, so timings exclude worker start-up."""
    import flows.tasks  # noqa: F401


def bench_dask(night: date, *, sites: tuple[str, ...]) -> None:
    from distributed import Client, LocalCluster

    from flows.runtime import ADDRESS_ENV

    print("per-site training and forecasting on DaskTaskRunner (LocalCluster of processes):")
    figures = {}
    for workers in (1, 2):
        _fresh_home(f"dask-{workers}")  # before the workers spawn
        start = time.perf_counter()
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            client.run(_warm_worker)
            print(
                f"  cluster of {workers} started and warmed in {time.perf_counter() - start:.1f} s"
            )
            os.environ[ADDRESS_ENV] = cluster.scheduler_address
            figures[workers] = timed(
                f"dask, {workers} worker(s)", lambda: run_flow(night, sites=sites), fresh=False
            )
        os.environ.pop(ADDRESS_ENV)
    print(f"  speed-up 2 workers vs 1: {figures[1] / figures[2]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--night", type=date.fromisoformat, default=date(2019, 8, 31))
    parser.add_argument("--sites", default="", help="Comma-separated site ids; default: all.")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--repeat", type=int, default=2, help="Timed rounds; best is kept.")
    args = parser.parse_args()
    sites = tuple(s for s in args.sites.split(",") if s)

    start = time.perf_counter()
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):
        print(f"prefect import + temporary server start-up: {time.perf_counter() - start:.1f} s")
        print(f"nightly on the bundled sample, night {args.night} (empty EVCAST_HOME each):")
        timed("warm-up (imports), discarded", lambda: run_direct(args.night, sites=sites))
        direct, flow, pool = [], [], []
        for _ in range(args.repeat):
            direct.append(
                timed("direct calls (no Prefect)", lambda: run_direct(args.night, sites=sites))
            )
            flow.append(
                timed(
                    "nightly flow, 1 thread", lambda: run_flow(args.night, sites=sites, threads=1)
                )
            )
            pool.append(
                timed(
                    "nightly flow, 2 threads", lambda: run_flow(args.night, sites=sites, threads=2)
                )
            )
        best = {"direct": min(direct), "flow": min(flow), "pool": min(pool)}
        print(f"  best of {args.repeat}: direct {best['direct']:.1f} s, flow {best['flow']:.1f} s")
        overhead = 100 * (best["flow"] / best["direct"] - 1)
        print(f"  orchestration overhead: {overhead:+.1f} % (goal: under 15 %)")
        print(f"  flow with 2 threads vs direct: {best['direct'] / best['pool']:.2f}x faster")
        if not args.skip_dask:
            bench_dask(args.night, sites=sites)


if __name__ == "__main__":
    main()
