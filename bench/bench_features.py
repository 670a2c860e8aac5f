"""Feature building: evcast's leakage-safe features against Nixtla's mlforecast preprocessing.

Workload (all Perth & Kinross sites that have sessions in the year, no selection):
- evcast: the hourly demand series of every site (``build_demand_series``) and the training
  matrices of all sites for a year of daily issue times (2018-09-01..2019-08-31, 00:00 UTC) x 24
  hourly steps in one call (``build_feature_matrices``, the multi-site form of
  ``build_feature_matrix``: lags 24/48/168 h, rolling means and maxima, EWM level, all
  as known at each issue time, plus calendar with holidays and site features; no solar geometry,
  which is added for PV sites only and these have none).
- mlforecast (peer): ``MLForecast(...).preprocess`` on the same hourly series over the same year
  plus 28 days of warm-up, with lags 24/48/168 h, rolling means over 24 h/7 d/28 d, rolling maxima
  over 24 h/7 d, an exponentially weighted mean, hour and weekday (one thread; polars, which
  both sides use, is held to one thread too with ``POLARS_MAX_THREADS=1``).
  Its features are the usual one-step-ahead ones and ignore the as-known rule; it is a speed peer.

Each side runs in its own fresh process (spawn), after the sessions are read, 16 times, the
two sides taking turns (who goes first alternates), so each pair of runs sees about the same
load on the shared machine: the first ("cold") run includes one-off costs (numba compilation
for mlforecast, loading numba kernels and holiday calendars for ours); "warm" is the best of
the other 15 (this VM's speed drifts by tens of percent within seconds, so a few runs are not
enough to see either side at its best).
All warm times are printed, and the ratio of each warm pair (median and range).
Peak memory is the rise of the child's peak RSS during a run (so warm runs show only growth
beyond the cold run's peak). Minor page faults of the timed call are printed too: on this VM
each fresh 4 KiB page costs a few microseconds, so memory churn shows up as time.
Nothing is asserted about time. Run: ``.venv/bin/python bench/bench_features.py``.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# one thread on both sides (mlforecast gets num_threads=1); set before polars starts its pool,
# and inherited by the spawned children
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import polars as pl
from perth_data import PERTH, read_perth_sessions

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HOUR = timedelta(hours=1)
YEAR = (datetime(2018, 9, 1, tzinfo=UTC), datetime(2019, 9, 1, tzinfo=UTC))
WARMUP = timedelta(days=28)
WARM_RUNS = 15
SIDES: tuple[str, ...] = ("evcast", "mlforecast")


def site_configs(sessions: pl.DataFrame) -> list:
    """Configured sites as configured; others with coordinates from perth_locations.csv."""
    from forecasting.config import SiteConfig, load_sites, slugify

    sites = load_sites(REPO / "configs" / "sites.toml")
    locations = pl.read_csv(PERTH / "perth_locations.csv")
    where = {slugify(name): (lat, lon) for name, lat, lon in locations.iter_rows()}
    active = sessions.filter(pl.col("plug_in_at").is_between(*YEAR, closed="left"))
    configs = []
    for site_id in sorted(active["site_id"].unique().to_list()):
        configured = sites.get(site_id)
        if configured is not None:
            configs.append(configured)
            continue
        lat, lon = where.get(site_id, (56.4, -3.4))
        configs.append(
            SiteConfig(
                site_id=site_id,
                name=site_id,
                latitude=lat,
                longitude=lon,
                timezone="Europe/London",
                country="GB",
                subdivision="SCT",
            )
        )
    return configs


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def run_evcast(path: str, sites: list) -> tuple[float, float, int, int]:
    """Return (hourly series of all sites [s], training matrices [s], rows, page faults)."""
    from features.demand_series import build_demand_series
    from features.matrix import build_feature_matrices

    sessions = pl.read_parquet(path)
    issues = pl.datetime_range(*YEAR, "1d", closed="left", eager=True, time_zone="UTC")
    start = time.perf_counter()
    build_demand_series(sessions, resolution=HOUR)
    series_seconds = time.perf_counter() - start
    faults, start = _minor_faults(), time.perf_counter()
    matrix = build_feature_matrices(
        sessions, sites=sites, issue_times=issues, horizon=timedelta(days=1), resolution=HOUR
    )
    seconds = time.perf_counter() - start
    return series_seconds, seconds, matrix.height, _minor_faults() - faults


def run_mlforecast(path: str, sites: list) -> tuple[float, float, int, int]:
    """Return (0, preprocess of the same hourly series [s], rows, page faults)."""
    import pandas as pd  # noqa: TID251 - mlforecast boundary (its polars path breaks on polars 2)
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import ExponentiallyWeightedMean, RollingMax, RollingMean
    from sklearn.linear_model import LinearRegression

    from features.demand_series import build_demand_series

    sessions = pl.read_parquet(path)
    wanted = [site.site_id for site in sites]
    series = build_demand_series(
        sessions.filter(pl.col("site_id").is_in(wanted)),
        resolution=HOUR, start=YEAR[0] - WARMUP, end=YEAR[1],
    )  # fmt: skip
    frame = pd.DataFrame(
        {
            "unique_id": series["site_id"].to_numpy(),
            "ds": series["interval_start"].dt.replace_time_zone(None).to_numpy(),
            "y": series["energy_kwh"].to_numpy(),
        }
    )
    faults, start = _minor_faults(), time.perf_counter()
    forecast = MLForecast(
        models=[LinearRegression()],
        freq="h",
        lags=[24, 48, 168],
        lag_transforms={
            1: [
                RollingMean(window_size=24), RollingMean(window_size=168),
                RollingMean(window_size=672), RollingMax(window_size=24),
                RollingMax(window_size=168), ExponentiallyWeightedMean(alpha=0.0285),
            ]
        },
        date_features=["hour", "dayofweek"],
        num_threads=1,
    )  # fmt: skip
    features = forecast.preprocess(frame, dropna=False)
    seconds = time.perf_counter() - start
    return 0.0, seconds, len(features), _minor_faults() - faults


def _child(
    name: str,
    path: str,
    sites: list,
    orders: multiprocessing.Queue,
    results: multiprocessing.Queue,
) -> None:
    work = {"evcast": run_evcast, "mlforecast": run_mlforecast}[name]
    for _ in range(1 + WARM_RUNS):
        orders.get()  # wait for our turn: the other side is idle meanwhile
        before = _peak_rss_mib()
        series_s, total_s, rows, faults = work(path, sites)
        results.put((series_s, total_s, rows, _peak_rss_mib() - before, faults))


Run = tuple[float, float, int, float, int]  # series [s], work [s], rows, RSS rise [MiB], faults


def measure(path: str, sites: list) -> dict[str, list[Run]]:
    """Run both sides in their own processes, taking turns, so each pair shares the load."""
    context = multiprocessing.get_context("spawn")
    children = {}
    for name in SIDES:
        orders, results = context.Queue(), context.Queue()
        process = context.Process(target=_child, args=(name, path, sites, orders, results))
        process.start()
        children[name] = (process, orders, results)
    runs: dict[str, list[Run]] = {name: [] for name in SIDES}
    for index in range(1 + WARM_RUNS):
        for name in SIDES if index % 2 == 0 else SIDES[::-1]:  # alternate who goes first
            _, orders, results = children[name]
            orders.put(index)
            runs[name].append(results.get())
    for process, _, _ in children.values():
        process.join()
    return runs


def main() -> None:
    sessions = read_perth_sessions()
    sites = site_configs(sessions)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "sessions.parquet")
        sessions.write_parquet(path)
        runs = measure(path, sites)
    print(f"sites: {len(sites)}, sessions: {sessions.height}, issue days: 365, steps: 24")
    best = {name: min(runs[name][1:], key=lambda run: run[1]) for name in SIDES}
    for name in SIDES:
        what = "training matrices" if name == "evcast" else "preprocess"
        for label, run in (("cold", runs[name][0]), ("warm", best[name])):
            series_s, work_s, rows, rss, faults = run
            extra = f"; hourly series, 3 years, all sites: {series_s:.3f} s" if series_s else ""
            print(
                f"{name:10s} {label}: {what} {work_s:.3f} s for {rows} rows{extra}; "
                f"peak RSS +{rss:.0f} MiB; {faults} minor page faults"
            )
        warm = sorted(run[1] for run in runs[name][1:])
        print(f"{name:10s} warm runs [s]: " + ", ".join(f"{t:.3f}" for t in warm))
    ours, peer = runs["evcast"], runs["mlforecast"]
    peer_s, ours_s, series_s = best["mlforecast"][1], best["evcast"][1], best["evcast"][0]
    print(
        f"speed ratio (mlforecast time / evcast time): cold {peer[0][1] / ours[0][1]:.2f}x; "
        f"warm best-of {peer_s / ours_s:.2f}x; "
        f"series + matrices {peer_s / (series_s + ours_s):.2f}x"
    )
    pairs = sorted(p[1] / o[1] for o, p in zip(ours[1:], peer[1:], strict=True))
    print(
        "speed ratio of the warm runs taken in turn: median "
        f"{pairs[len(pairs) // 2]:.2f}x, range {pairs[0]:.2f}x to {pairs[-1]:.2f}x"
    )


if __name__ == "__main__":
    main()
