"""Cut the bundled session sample from ../shared/data (deterministic: fixed rules, no randomness).

Run from the repository root: ``.venv/bin/python data/sample/make_sample.py``.
CSV lines are copied byte for byte (line ends included), so every quirk of the sources stays:
missing ends, negative energies, zero durations, DST-change rows. The ACN slice is the same JSON
objects, re-serialised as compact JSON. See ``README.md`` for sources and licences.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent
SESSIONS = SAMPLE / "sessions"
SHARED = SAMPLE.parent.parent.parent / "shared" / "data" / "sessions"

PERTH_FILE = "sept18toaug19standardisedcorrected.csv"
PERTH_SITES = (
    "Broxden Park & Ride, Perth",
    "Kinross Park and Ride, Kinross",
    "Leslie Street Car Park, Blairgowrie",
)
"""The two busiest sites of 2018-09 to 2019-08 (mixed rapid and 22 kW) and a one-rapid town site."""

ACN_DAYS = tuple(f"{day:02d} May 2021" for day in range(1, 15))
"""ACN sessions plugged in on 1-14 May 2021 (connectionTime is RFC 1123: 'Sat, 01 May 2021 ...')."""

TRONDHEIM_GARAGES = ("Bl2",)
"""The busiest Trondheim garage (a third of all sessions)."""


def _filter_lines(path: Path, *, keep: Callable[[dict[str, str]], bool], delimiter: str) -> bytes:
    """Return the header and the data lines of ``path`` whose parsed row passes ``keep``."""
    lines = path.read_bytes().splitlines(keepends=True)
    header = next(csv.reader(io.StringIO(lines[0].decode("utf-8-sig")), delimiter=delimiter))
    kept = [lines[0]]
    for line in lines[1:]:
        values = next(csv.reader(io.StringIO(line.decode("utf-8")), delimiter=delimiter), [])
        if keep(dict(zip(header, values, strict=False))):
            kept.append(line)
    return b"".join(kept)


def _write(name: str, data: bytes) -> None:
    target = SESSIONS / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    print(f"wrote {target.relative_to(SAMPLE)}: {len(data):,} bytes")


def make_perth() -> None:
    """Rows of :data:`PERTH_SITES` from the 2018-19 export, unmodified."""
    source = SHARED / "perth-kinross" / PERTH_FILE
    data = _filter_lines(source, keep=lambda r: r.get("Site") in PERTH_SITES, delimiter=",")
    _write(f"perth-kinross/{PERTH_FILE}", data)


def make_acn() -> None:
    """ACN sessions plugged in on :data:`ACN_DAYS`, as compact JSON."""
    items = json.loads((SHARED / "acn-caltech-2021" / "acndata_sessions.json").read_text())
    kept = [i for i in items if str(i.get("connectionTime"))[5:16] in ACN_DAYS]
    _write("acn-caltech-2021/acndata_sessions_2021-05-01_14.json", json.dumps(kept).encode())


def make_trondheim() -> None:
    """Rows of :data:`TRONDHEIM_GARAGES`, unmodified."""
    source = SHARED / "trondheim-residential" / "ev_charging_reports.csv"
    data = _filter_lines(
        source, keep=lambda r: r.get("Garage_ID") in TRONDHEIM_GARAGES, delimiter=";"
    )
    _write("trondheim-residential/ev_charging_reports_bl2.csv", data)


if __name__ == "__main__":
    make_perth()
    make_acn()
    make_trondheim()
