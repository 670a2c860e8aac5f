"""Session ingest throughput and peak memory on the three Perth & Kinross files.

Run: ``.venv/bin/python bench/bench_ingest.py [--repeat 3]`` (needs ../shared/data).

Measured in one run, each in a fresh subprocess (so peak RSS belongs to one mode only):

- ``polars read_csv``: the floor, every column read as text, nothing parsed or checked;
- ``read_sessions``: parse, DST rule, validation, duplicates, overlaps (pure, no storage);
- ``ingest + store``: the same plus lake upsert, quarantine and catalog, into an empty home.

Printed: best wall time of ``--repeat`` runs, rows/s, peak RSS (``ru_maxrss``) and the ratios
against the ``read_csv`` floor. Nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PERTH = REPO.parent / "shared" / "data" / "sessions" / "perth-kinross"
FILES = (
    "electricvehiclechargecorrected.csv",
    "sept17toaug18standardisedcorrected.csv",
    "sept18toaug19standardisedcorrected.csv",
)

_CHILD = r"""
import json, resource, sys, tempfile, time
from datetime import UTC, datetime
from pathlib import Path

mode, repeat, files = sys.argv[1], int(sys.argv[2]), [Path(p) for p in sys.argv[3:]]
import polars as pl
from forecasting.config import load_sites
from forecasting.ingest.sessions import read_sessions
from forecasting.io.catalog import ingest_session_file
from forecasting.settings import REPO_ROOT, Settings

sites = load_sites(REPO_ROOT / "configs" / "sites.toml")
now = datetime(2026, 1, 1, tzinfo=UTC)

def once():
    rows = 0
    if mode == "read_csv":
        for f in files:
            rows += pl.read_csv(f, infer_schema=False).height
    elif mode == "read_sessions":
        for f in files:
            read = read_sessions(f, fmt="chargeplace", sites=sites, ingested_at=now)
            rows += read.summary.rows_read
    else:
        with tempfile.TemporaryDirectory() as home:
            settings = Settings(home=Path(home))
            for f in files:
                read, _ = ingest_session_file(
                    f, fmt="chargeplace", settings=settings, sites=sites, ingested_at=now
                )
                rows += read.summary.rows_read
    return rows

times = []
for _ in range(repeat):
    start = time.perf_counter()
    rows = once()
    times.append(time.perf_counter() - start)
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": rows, "seconds": min(times), "peak_mib": peak_kib / 1024}))
"""

MODES = ("read_csv", "read_sessions", "ingest_store")


def _measure(mode: str, repeat: int, files: list[Path]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as home:
        env["EVCAST_HOME"] = home
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, mode, str(repeat), *map(str, files)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = [PERTH / name for name in FILES]
    missing = [f for f in files if not f.exists()]
    if missing:
        sys.exit(f"shared data missing: {missing}")
    results = {mode: _measure(mode, args.repeat, files) for mode in MODES}
    floor = results["read_csv"]
    print(f"Perth & Kinross, 3 files, {floor['rows']:,.0f} rows; best of {args.repeat}")
    print(f"{'mode':15} {'seconds':>8} {'rows/s':>10} {'peak MiB':>9} {'x time':>7} {'x mem':>6}")
    for mode, r in results.items():
        print(
            f"{mode:15} {r['seconds']:8.3f} {r['rows'] / r['seconds']:10,.0f} "
            f"{r['peak_mib']:9.1f} {r['seconds'] / floor['seconds']:7.1f} "
            f"{r['peak_mib'] / floor['peak_mib']:6.2f}"
        )


if __name__ == "__main__":
    main()
